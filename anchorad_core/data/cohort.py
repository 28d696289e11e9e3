"""A cohort: ``participants.tsv`` plus subject folders, with task selection and bulk loading.

Layout (BIDS-like)::

    <root>/participants.tsv      participant_id, diagnosis [, age, sex, ... optional columns]
    <root>/sub-<id>/...          one folder per participant (see :mod:`.subject`)

``participant_id`` follows BIDS (``sub-<id>``; a bare ``<id>`` is accepted when the folder is
``sub-<id>``). ``diagnosis`` may be empty or ``n/a`` for unlabelled subjects (they are never
part of a task). Validation errors name ``participants.tsv``.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from ..errors import CancelledError, InputDataError
from .config import PreprocessConfig
from .subject import Subject, load_subject
from .task import Task, canonical_label, label_is_a

__all__ = ["Cohort", "load_cohort", "default_cache_dir", "ProgressCallback"]

#: ``progress(done, total, subject_id)``; a ``tqdm`` bar (anything with ``update``) also works.
ProgressCallback = Callable[[int, int, str], Any]

_NA = {"", "n/a", "na", "nan", "none", "unknown"}


def default_cache_dir(root: "str | Path") -> Path:
    """The default preprocessing cache of a cohort: ``<root>/derivatives/anchorad-cache``."""
    return Path(root) / "derivatives" / "anchorad-cache"


def _report(progress: Any, done: int, total: int, sid: str) -> None:
    if progress is None:
        return
    if callable(progress):
        progress(done, total, sid)
    elif hasattr(progress, "update"):  # tqdm and friends
        progress.update(1)


@dataclass
class Cohort:
    """Participants and their folders.

    Attributes
    ----------
    root : Path
    participants : pandas.DataFrame
        One row per participant, index ``participant_id``; column ``diagnosis`` holds the
        canonical label or ``None``.
    folders : dict
        participant_id -> subject folder.
    """

    root: Path
    participants: pd.DataFrame
    folders: dict[str, Path]

    @property
    def tsv(self) -> Path:
        """Path of ``participants.tsv``."""
        return self.root / "participants.tsv"

    @property
    def ids(self) -> list[str]:
        """Participant ids in file order."""
        return list(self.participants.index)

    def label(self, participant_id: str) -> str | None:
        """Diagnosis label of a participant (``None`` if unlabelled)."""
        value = self.participants.at[participant_id, "diagnosis"]
        return None if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)

    @property
    def labels_present(self) -> list[str]:
        """Distinct labels in the cohort (sorted)."""
        return sorted({lab for lab in self.participants["diagnosis"] if isinstance(lab, str)})

    def counts(self) -> dict[str, int]:
        """Participants per label."""
        return {k: int(v) for k, v in self.participants["diagnosis"].value_counts().items()}

    def task_subjects(self, task: "Task | str") -> tuple[list[str], np.ndarray]:
        """Participants of a task and their targets.

        Returns
        -------
        ids : list of str
        y : ndarray of int64 (0 = ``task.negative``, 1 = ``task.positive``)

        Raises
        ------
        InputDataError
            If a class of the task matches no participant (naming participants.tsv and the
            labels it has).
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

    def subject_folder(self, participant_id: str) -> Path:
        """Folder of one participant."""
        try:
            return self.folders[participant_id]
        except KeyError:
            raise InputDataError(f"participant {participant_id!r} is not listed", self.tsv) from None

    def load_subject(self, participant_id: str, config: PreprocessConfig | None = None, **kwargs: Any) -> Subject:
        """Load one participant (keyword arguments go to :func:`~.subject.load_subject`)."""
        return load_subject(self.subject_folder(participant_id), config, subject_id=participant_id, **kwargs)

    def load_subjects(
        self,
        ids: Sequence[str] | None = None,
        config: PreprocessConfig | None = None,
        *,
        progress: "ProgressCallback | Any | None" = None,
        cancel: Callable[[], bool] | None = None,
        cache_dir: "str | Path | None" = None,
        on_error: str = "raise",
        workers: int = 1,
        **kwargs: Any,
    ) -> list[Subject]:
        """Load many participants (all by default), in order.

        Parameters
        ----------
        ids : sequence of str, optional
        config : PreprocessConfig, optional
        progress : callable or tqdm-like, optional
            ``progress(done, total, subject_id)`` after each subject, or an object with
            ``update(n)`` such as ``tqdm(total=len(ids))``.
        cancel : callable, optional
            Polled between subjects; when it returns True loading stops with
            :class:`~anchorad_core.errors.CancelledError`.
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

        out: list[Subject] = []
        if workers <= 1:
            for i, pid in enumerate(ids):
                if cancel is not None and cancel():
                    raise CancelledError(f"loading cancelled after {i} of {total} subjects")
                out.append(one(pid))
                _report(progress, i + 1, total, pid)
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
                    if cancel is not None and cancel():
                        raise CancelledError(f"loading cancelled after {i} of {total} subjects")
                    subject = fut.result()
                    assert subject is not None
                    out.append(subject)
                    _report(progress, i + 1, total, pid)
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


def load_cohort(root: "str | Path") -> Cohort:
    """Read and validate a cohort root.

    Raises
    ------
    InputDataError
        ``participants.tsv`` missing or unreadable, without ``participant_id`` /
        ``diagnosis`` columns, with empty or duplicate ids, or listing participants whose
        folders do not exist.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputDataError("cohort folder not found", root)
    tsv = root / "participants.tsv"
    if not tsv.is_file():
        raise InputDataError("cohort has no participants.tsv (columns participant_id, diagnosis)", tsv)
    try:
        df = pd.read_csv(tsv, sep="\t", dtype=str, keep_default_na=False, encoding="utf-8")
    except UnicodeDecodeError:
        raise InputDataError("participants.tsv is not valid UTF-8", tsv) from None
    except Exception as exc:
        raise InputDataError(f"cannot read participants.tsv as a tab-separated table ({exc})", tsv) from None
    df.columns = [str(c).strip() for c in df.columns]
    for col in ("participant_id", "diagnosis"):
        if col not in df.columns:
            raise InputDataError(
                f"participants.tsv has no {col!r} column (columns: {', '.join(df.columns)}); "
                "is it tab-separated?",
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
    df["diagnosis"] = [None if v.strip().lower() in _NA else canonical_label(v) for v in df["diagnosis"]]
    bad = [v for v in df["diagnosis"] if isinstance(v, str) and "-" in v]
    if bad:
        raise InputDataError(f"diagnosis labels must not contain '-': {', '.join(sorted(set(bad))[:5])}", tsv)
    folders: dict[str, Path] = {}
    missing: list[str] = []
    for pid in df["participant_id"]:
        folder = _resolve_folder(root, pid)
        if folder is None:
            missing.append(pid)
        else:
            folders[pid] = folder
    if missing:
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise InputDataError(
            f"{len(missing)} participant(s) have no subject folder under {root}: {', '.join(missing[:10])}{more}", tsv
        )
    df = df.set_index("participant_id", drop=True)
    return Cohort(root=root, participants=df, folders=folders)
