"""A cohort: participants, their visits (one sample each), labels, task selection and bulk loading.

Layouts (BIDS; the second is what Clinica and ClinicaDL use)::

    <root>/participants.tsv          participant_id [, diagnosis, age, sex, ...]
    <root>/sub-<id>/anat/...         a participant folder without sessions: one sample

    <root>/sub-<id>/ses-M000/anat/sub-<id>_ses-M000_T1w.nii.gz
    <root>/sub-<id>/ses-M012/...     one sample per session folder (see :mod:`.subject`)
    <root>/sub-<id>/genetics/...     optional, shared by the participant's sessions
    <root>/sub-<id>/sub-<id>_sessions.tsv   optional clinical columns per visit (:mod:`.session_notes`)

A sample's id is the participant id for a participant without sessions and
``sub-<id>_ses-<label>`` for a session; its *group* is its participant, and every split
keeps a group on one side (:mod:`anchorad_core.training.splits`).

Labels come from ``participants.tsv`` (column ``diagnosis``; every session of a participant
gets its label) or, per session, from a ClinicaDL-style label table given as ``labels``
(:mod:`.label_table`); then the table's rows that have a folder are the samples and
``participants.tsv`` is optional. ``participant_id`` follows BIDS (``sub-<id>``; a bare ``<id>`` is accepted when
the folder is ``sub-<id>``). A diagnosis may be empty or ``n/a`` for unlabelled samples
(they are never part of a task). Validation errors name the table at fault.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..errors import CancelledError, InputDataError
from ..progress import SILENT, Progress
from .config import PreprocessConfig
from .label_table import parse_diagnoses, read_label_table, read_tsv
from .subject import Subject, load_subject
from .task import Task, label_is_a

__all__ = ["Cohort", "load_cohort", "default_cache_dir"]

#: ``progress(done, total, subject_id)``; a ``tqdm`` bar (anything with ``update``) also works.


def default_cache_dir(root: "str | Path") -> Path:
    """The default preprocessing cache of a cohort: ``<root>/derivatives/anchorad-cache``."""
    return Path(root) / "derivatives" / "anchorad-cache"


@dataclass
class Cohort:
    """Participants, their samples (visits) and the samples' folders.

    Attributes
    ----------
    root : Path
    participants : pandas.DataFrame
        ``participants.tsv``, index ``participant_id`` (empty when a label table replaces it);
        a ``diagnosis`` column holds canonical labels or ``None``.
    samples : pandas.DataFrame
        One row per sample, index the sample id; columns ``participant`` (the participant
        folder name, the sample's group), ``session_id`` (``None`` without sessions) and
        ``diagnosis`` (canonical label or ``None``).
    folders : dict
        sample id -> its folder (session folder or participant folder).
    labels_tsv : Path or None
        The label table the diagnoses come from (``None``: ``participants.tsv``).
    unmatched : list of str
        ``sub-<id>/ses-<label>`` rows of the label table without a folder in the cohort (a
        table derived from all visits lists visits that were never imaged); skipped.
    """

    root: Path
    participants: pd.DataFrame
    samples: pd.DataFrame
    folders: dict[str, Path]
    labels_tsv: Path | None = None
    unmatched: list[str] = field(default_factory=list)

    @property
    def tsv(self) -> Path:
        """The table the labels come from (the label table, else ``participants.tsv``)."""
        return self.labels_tsv if self.labels_tsv is not None else self.root / "participants.tsv"

    @property
    def ids(self) -> list[str]:
        """Sample ids in table order (sessions of a participant sorted)."""
        return list(self.samples.index)

    def label(self, sample_id: str) -> str | None:
        """Diagnosis label of a sample (``None`` if unlabelled)."""
        value = self.samples.at[sample_id, "diagnosis"]
        return None if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)

    def participant(self, sample_id: str) -> str:
        """The participant (group) of a sample."""
        return str(self.samples.at[sample_id, "participant"])

    def groups(self, ids: Sequence[str]) -> list[str]:
        """The participant of each sample of ``ids``."""
        return [self.participant(sid) for sid in ids]

    @property
    def labels_present(self) -> list[str]:
        """Distinct labels in the cohort (sorted)."""
        return sorted({lab for lab in self.samples["diagnosis"] if isinstance(lab, str)})

    def counts(self) -> dict[str, int]:
        """Samples per label."""
        return {str(k): int(v) for k, v in self.samples["diagnosis"].value_counts().items()}

    def task_subjects(self, task: "Task | str") -> tuple[list[str], np.ndarray]:
        """Samples of a task and their targets.

        Returns
        -------
        ids : list of str
        y : ndarray of int64 (0 = ``task.negative``, 1 = ``task.positive``)

        Raises
        ------
        InputDataError
            If a class of the task matches no sample (naming the label table and the labels
            it has).
        """
        task = Task.parse(task)
        labels = self.labels_present
        for cls in task.classes:
            if not any(label_is_a(lab, cls) for lab in labels):
                raise InputDataError(
                    f"task {task.name}: no participant has diagnosis {cls!r} "
                    f"(labels present: {', '.join(labels) or 'none'})",
                    self.tsv,
                )
        ids: list[str] = []
        y: list[int] = []
        for pid in self.ids:
            t = task.target(self.label(pid))
            if t is not None:
                ids.append(pid)
                y.append(t)
        return ids, np.asarray(y, dtype=np.int64)

    def subject_folder(self, sample_id: str) -> Path:
        """Folder of one sample (its session folder, or the participant folder without sessions)."""
        try:
            return self.folders[sample_id]
        except KeyError:
            raise InputDataError(f"sample {sample_id!r} is not listed", self.tsv) from None

    def load_subject(self, sample_id: str, config: PreprocessConfig | None = None, **kwargs: Any) -> Subject:
        """Load one sample (keyword arguments go to :func:`~.subject.load_subject`)."""
        return load_subject(self.subject_folder(sample_id), config, subject_id=sample_id, **kwargs)

    def load_subjects(
        self,
        ids: Sequence[str] | None = None,
        config: PreprocessConfig | None = None,
        *,
        progress: Progress = SILENT,
        stage: str = "loading subjects",
        cache_dir: "str | Path | None" = None,
        on_error: str = "raise",
        workers: int = 1,
        **kwargs: Any,
    ) -> list[Subject]:
        """Load many samples (all by default), in order.

        Parameters
        ----------
        ids : sequence of str, optional
        config : PreprocessConfig, optional
        progress : Progress
            Told ``(stage, done, total)`` after each subject; its cancel check is polled
            between subjects and stops loading with :class:`~anchorad_core.errors.CancelledError`.
        stage : str
            The stage name the progress reports.
        cache_dir : str or Path, optional
            Preprocessing cache (see :func:`default_cache_dir`); ``None`` = no cache.
        on_error : {"raise", "missing"}
            See :func:`~.subject.load_subject`.
        workers : int
            Threads reading subjects in parallel (NumPy, zlib and torch release the GIL).
        """
        ids = list(self.ids if ids is None else ids)
        total = len(ids)
        for pid in ids:
            self.subject_folder(pid)

        def one(pid: str) -> Subject:
            return self.load_subject(pid, config, cache_dir=cache_dir, on_error=on_error, **kwargs)

        def stop_if_cancelled(done: int) -> None:
            if progress.cancelled is not None and progress.cancelled():
                raise CancelledError(f"loading cancelled after {done} of {total} subjects")

        out: list[Subject] = []
        if workers <= 1:
            for i, pid in enumerate(ids):
                stop_if_cancelled(i)
                out.append(one(pid))
                progress.update(stage, i + 1, total)
            return out
        stop = threading.Event()

        def guarded(pid: str) -> Subject | None:
            if stop.is_set():
                return None
            return one(pid)

        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(guarded, pid) for pid in ids]
            try:
                for i, (pid, fut) in enumerate(zip(ids, futures)):
                    stop_if_cancelled(i)
                    subject = fut.result()
                    assert subject is not None
                    out.append(subject)
                    progress.update(stage, i + 1, total)
            except BaseException:
                stop.set()
                for fut in futures:
                    fut.cancel()
                raise
        return out


def _resolve_folder(root: Path, pid: str) -> Path | None:
    for name in (pid, f"sub-{pid}"):
        p = root / name
        if p.is_dir():
            return p
    return None


def _sessions(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("ses-*") if p.is_dir())


def _read_participants(tsv: Path, need_diagnosis: bool) -> pd.DataFrame:
    """``participants.tsv`` validated (ids non-empty and unique; ``diagnosis`` canonical if present)."""
    if not tsv.is_file():
        if need_diagnosis:
            raise InputDataError("cohort has no participants.tsv (columns participant_id, diagnosis)", tsv)
        return pd.DataFrame(index=pd.Index([], name="participant_id"))
    df = read_tsv(tsv, "participants.tsv")
    needed = ("participant_id", "diagnosis") if need_diagnosis else ("participant_id",)
    for col in needed:
        if col not in df.columns:
            hint = "" if col == "participant_id" else " Per-session labels come from a label table (--labels)."
            raise InputDataError(
                f"participants.tsv has no {col!r} column (columns: {', '.join(df.columns)}); "
                f"is it tab-separated?{hint}",
                tsv,
            )
    if df.empty:
        raise InputDataError("participants.tsv lists no participants", tsv)
    df["participant_id"] = df["participant_id"].str.strip()
    empty = [i + 2 for i, v in enumerate(df["participant_id"]) if not v]
    if empty:
        raise InputDataError(f"empty participant_id on line(s) {', '.join(map(str, empty[:10]))}", tsv)
    dup = sorted(df["participant_id"][df["participant_id"].duplicated()].unique())
    if dup:
        raise InputDataError(f"duplicate participant_id(s): {', '.join(dup[:10])}", tsv)
    if "diagnosis" in df.columns:
        df["diagnosis"] = pd.Series(parse_diagnoses(df["diagnosis"], tsv), index=df.index, dtype=object)
    return df.set_index("participant_id", drop=True)


def _missing_error(missing: list[str], what: str, root: Path, table: Path) -> InputDataError:
    more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
    return InputDataError(f"{len(missing)} {what} under {root}: {', '.join(missing[:10])}{more}", table)


def _samples_of_participants(root: Path, participants: pd.DataFrame, tsv: Path) -> tuple[pd.DataFrame, dict[str, Path]]:
    """One sample per session folder of each participant (the participant folder if it has none)."""
    rows: list[dict[str, Any]] = []
    folders: dict[str, Path] = {}
    missing: list[str] = []
    for pid, diagnosis in zip(participants.index, participants["diagnosis"]):
        folder = _resolve_folder(root, pid)
        if folder is None:
            missing.append(pid)
            continue
        sessions: list[Path | None] = [*_sessions(folder)] or [None]  # None: no session folders
        for ses in sessions:
            sid = f"{folder.name}_{ses.name}" if ses is not None else pid
            rows.append({"sample_id": sid, "participant": folder.name,
                         "session_id": ses.name if ses is not None else None, "diagnosis": diagnosis})
            folders[sid] = ses if ses is not None else folder
    if missing:
        raise _missing_error(missing, "participant(s) have no subject folder", root, tsv)
    return _sample_table(rows, tsv), folders


def _samples_of_label_table(root: Path, table: Path) -> tuple[pd.DataFrame, dict[str, Path], list[str]]:
    """One sample per row of a label table whose folder exists; the rows without one."""
    labels = read_label_table(table)
    rows: list[dict[str, Any]] = []
    folders: dict[str, Path] = {}
    missing: list[str] = []
    for pid, ses, diagnosis in zip(labels["participant_id"], labels["session_id"], labels["diagnosis"]):
        folder = _resolve_folder(root, pid)
        target = None if folder is None else (folder / ses if ses is not None else folder)
        if folder is None or target is None or not target.is_dir():
            missing.append(f"{pid}/{ses}" if ses is not None else pid)
            continue
        sid = f"{folder.name}_{ses}" if ses is not None else pid
        rows.append({"sample_id": sid, "participant": folder.name, "session_id": ses, "diagnosis": diagnosis})
        folders[sid] = target
    if not rows:
        raise _missing_error(missing, "listed session(s), none with a folder", root, table)
    return _sample_table(rows, table), folders, missing


def _sample_table(rows: list[dict[str, Any]], table: Path) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["sample_id", "participant", "session_id", "diagnosis"], dtype=object)
    dup = sorted(df["sample_id"][df["sample_id"].duplicated()].unique())
    if dup:
        raise InputDataError(f"the same folder is listed twice: {', '.join(dup[:10])}", table)
    return df.set_index("sample_id", drop=True)


def load_cohort(root: "str | Path", labels: "str | Path | None" = None) -> Cohort:
    """Read and validate a cohort root.

    Parameters
    ----------
    root : str or Path
        The cohort (BIDS) folder.
    labels : str or Path, optional
        A ClinicaDL-style label table (participant_id, session_id, diagnosis); its rows are
        the samples. Default: ``participants.tsv``'s ``diagnosis``, every session of a
        participant a sample with the participant's label.

    Raises
    ------
    InputDataError
        ``participants.tsv`` missing (without ``labels``) or unreadable, without
        ``participant_id`` / ``diagnosis`` columns, with empty or duplicate ids, or listing
        participants without folders; a malformed label table, or one none of whose
        sessions has a folder (rows without a folder are otherwise skipped and listed in
        :attr:`Cohort.unmatched`).
    """
    root = Path(root)
    if not root.is_dir():
        raise InputDataError("cohort folder not found", root)
    tsv = root / "participants.tsv"
    participants = _read_participants(tsv, need_diagnosis=labels is None)
    if labels is None:
        samples, folders = _samples_of_participants(root, participants, tsv)
        return Cohort(root=root, participants=participants, samples=samples, folders=folders)
    table = Path(labels)
    samples, folders, unmatched = _samples_of_label_table(root, table)
    return Cohort(root=root, participants=participants, samples=samples, folders=folders, labels_tsv=table,
                  unmatched=unmatched)
