"""One subject: find its files, read every present modality, and hold the model inputs.

Subject folder layout (self-contained, BIDS-like; any modality may be missing)::

    sub-<id>/
      anat/sub-<id>_T1w.nii.gz                     sMRI
      func/sub-<id>_task-rest_bold.nii.gz          fMRI, 4-D run ...
      func/sub-<id>_task-rest_timeseries.npy|.tsv  ... or an ROI table + .json sidecar (preferred if both)
      clinical/sub-<id>_note.txt                   free text and/or
      clinical/sub-<id>_clinical.json              structured fields (both: JSON summary first, then note)
      genetics/sub-<id>_apoe.txt                   genotype, else *.vcf[.gz], else *.fa / *.fasta

Sessions (BIDS / Clinica layout): a session folder ``sub-<id>/ses-<label>/`` holds the same
subfolders (``anat/sub-<id>_ses-<label>_T1w.nii.gz`` ...) and is one subject (one visit).
A modality absent from the session folder is taken from the participant folder itself
(e.g. ``sub-<id>/genetics/`` written once per person), never from another session. A
participant folder with exactly one ``ses-*`` folder reads that session; one with several
is an error naming them (load one session folder; a cohort makes one sample per session,
:mod:`.cohort`). A session without a clinical JSON gets its structured clinical fields from
its row of ``sub-<id>_sessions.tsv`` (:mod:`.session_notes`). When a folder holds several
candidates for one modality the first in the order above (then sorted by name) is used and a
warning lists the others.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ..errors import InputDataError
from ..modality import ALL_MODALITIES, Modality
from .clinical import check_note_text, read_clinical
from .config import PreprocessConfig
from .fileio import atomic_path, file_sha256
from .fmri import read_fmri, sidecar_path
from .genetics import check_sequences, parse_genetics_text, read_genetics
from .session_notes import session_table_fields
from .smri import SmriGeometry, read_smri

__all__ = ["Subject", "load_subject", "find_subject_files", "SubjectFiles", "CACHE_VERSION", "is_session_folder",
           "default_subject_id"]

#: Bump when a reader's output changes, to invalidate on-disk caches.
CACHE_VERSION = 1

_PATTERNS: dict[Modality, tuple[tuple[str, ...], ...]] = {
    # tuples of glob patterns in priority order (relative to the subject / session folder)
    Modality.SMRI: (("anat/*_T1w.nii.gz", "anat/*_T1w.nii"),),
    Modality.FMRI: (("func/*_timeseries.npy", "func/*_timeseries.tsv"), ("func/*_bold.nii.gz", "func/*_bold.nii")),
    Modality.GENETICS: (
        ("genetics/*_apoe.txt",),
        ("genetics/*.vcf", "genetics/*.vcf.gz"),
        ("genetics/*.fa", "genetics/*.fasta", "genetics/*.fa.gz", "genetics/*.fasta.gz"),
    ),
}


@dataclass
class SubjectFiles:
    """The files found in a subject folder for each modality (``None`` = absent)."""

    smri: Path | None = None
    fmri: Path | None = None
    clinical_note: Path | None = None
    clinical_json: Path | None = None
    genetics: Path | None = None
    warnings: list[str] = field(default_factory=list)
    #: The participant's ``sub-<id>_sessions.tsv`` and the session's clinical fields from it.
    clinical_table: Path | None = None
    clinical_fields: dict[str, Any] | None = None

    def has(self, modality: Modality) -> bool:
        """Whether a file for ``modality`` was found."""
        if modality is Modality.CLINICAL:
            return self.clinical_note is not None or self.clinical_json is not None or bool(self.clinical_fields)
        return getattr(self, modality.value) is not None


def is_session_folder(folder: "str | Path") -> bool:
    """Whether ``folder`` is a BIDS session folder (``sub-<id>/ses-<label>``)."""
    folder = Path(folder)
    return folder.name.startswith("ses-") and folder.parent.name.startswith("sub-")


def default_subject_id(folder: "str | Path") -> str:
    """``sub-<id>_ses-<label>`` for a session folder, else the folder name."""
    folder = Path(folder)
    return f"{folder.parent.name}_{folder.name}" if is_session_folder(folder) else folder.name


def _search_roots(folder: Path) -> list[Path]:
    """The session folder (if any) first, then the participant folder."""
    if is_session_folder(folder):
        return [folder, folder.parent]
    sessions = sorted(p for p in folder.glob("ses-*") if p.is_dir())
    if len(sessions) > 1:
        names = ", ".join(p.name for p in sessions[:6]) + (" ..." if len(sessions) > 6 else "")
        raise InputDataError(
            f"holds {len(sessions)} sessions ({names}); give one session folder, e.g. {sessions[0]}", folder)
    return sessions + [folder]


def _first(roots: list[Path], groups: tuple[tuple[str, ...], ...], what: str, warnings: list[str]) -> Path | None:
    for root in roots:
        for group in groups:
            hits = sorted({p for pattern in group for p in root.glob(pattern) if p.is_file() and not p.name.startswith(".")})
            if hits:
                if len(hits) > 1:
                    others = ", ".join(h.name for h in hits[1:])
                    warnings.append(f"{what}: using {hits[0].name}; also found {others}")
                return hits[0]
    return None


def find_subject_files(folder: "str | Path") -> SubjectFiles:
    """Locate each modality's input file in a subject folder (see the module docstring)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputDataError("subject folder not found", folder)
    warnings: list[str] = []
    roots = _search_roots(folder)
    files = SubjectFiles(warnings=warnings)
    files.smri = _first(roots, _PATTERNS[Modality.SMRI], "sMRI", warnings)
    files.fmri = _first(roots, _PATTERNS[Modality.FMRI], "fMRI", warnings)
    files.clinical_note = _first(roots, (("clinical/*_note.txt",),), "clinical note", warnings)
    files.clinical_json = _first(roots, (("clinical/*_clinical.json",),), "clinical JSON", warnings)
    files.genetics = _first(roots, _PATTERNS[Modality.GENETICS], "genetics", warnings)
    if files.clinical_json is None and is_session_folder(roots[0]):
        found = session_table_fields(roots[0])
        if found is not None:
            files.clinical_fields, files.clinical_table = found
    return files


@dataclass
class Subject:
    """A subject's preprocessed inputs, one optional entry per modality.

    Attributes
    ----------
    subject_id : str
        BIDS participant id (the folder name, e.g. ``sub-001``).
    folder : Path or None
        The subject folder (``None`` for a subject typed into the GUI).
    smri : ndarray (cube, cube, cube) float32 or None
    fmri : ndarray (ROI, frames) float32 or None
    clinical : str or None
    genetics : list of str or None
    sources : dict
        Modality -> file (or ``"override: ..."``) that fed it.
    smri_geometry : SmriGeometry or None
        Maps the cube back to the native T1 (:func:`~anchorad_core.data.smri.cube_to_native`).
    fmri_info : dict
        How the fMRI series was made (atlas, frames, window, missing ROIs).
    warnings : list of str
        Non-fatal issues (ignored files, truncated sequences, modalities dropped on error).
    config : PreprocessConfig
        The preprocessing used.
    clinical_fields : list of str
        What the clinical text contains: the structured fields rendered (template order)
        and ``"free_text"`` when a free-text note was added; empty for pasted text.
    """

    subject_id: str
    folder: Path | None = None
    smri: np.ndarray | None = None
    fmri: np.ndarray | None = None
    clinical: str | None = None
    genetics: list[str] | None = None
    sources: dict[Modality, str] = field(default_factory=dict)
    smri_geometry: SmriGeometry | None = None
    fmri_info: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    config: PreprocessConfig = field(default_factory=PreprocessConfig)
    clinical_fields: list[str] = field(default_factory=list)

    def get(self, modality: "Modality | str") -> Any:
        """The input of ``modality`` (``None`` if missing)."""
        return getattr(self, Modality.parse(modality).value)

    def has(self, modality: "Modality | str") -> bool:
        """Whether ``modality`` is present."""
        return self.get(modality) is not None

    @property
    def present(self) -> tuple[Modality, ...]:
        """Present modalities, canonical order."""
        return tuple(m for m in ALL_MODALITIES if self.get(m) is not None)

    @property
    def missing(self) -> tuple[Modality, ...]:
        """Missing modalities, canonical order."""
        return tuple(m for m in ALL_MODALITIES if self.get(m) is None)

    def summary(self) -> dict[str, Any]:
        """JSON-ready description (no arrays): id, present/missing, sources, warnings."""
        return {
            "subject_id": self.subject_id,
            "folder": str(self.folder) if self.folder else None,
            "present": [m.value for m in self.present],
            "missing": [m.value for m in self.missing],
            "sources": {m.value: s for m, s in self.sources.items()},
            "warnings": list(self.warnings),
        }


# ----------------------------------------------------------------------------- cache
def _cache_key(modality: Modality, files: list[Path], config: PreprocessConfig) -> str:
    h = hashlib.sha256()
    h.update(f"v{CACHE_VERSION}:{modality.value}:".encode())
    fields_ = PreprocessConfig.SMRI_FIELDS if modality is Modality.SMRI else PreprocessConfig.FMRI_FIELDS
    h.update(config.fingerprint(*fields_).encode())
    for f in files:
        h.update(f.name.encode())
        h.update(file_sha256(f).encode())
    return h.hexdigest()[:32]


def _cached(
    modality: Modality,
    files: list[Path],
    config: PreprocessConfig,
    cache_dir: Path | None,
    subject_id: str,
    compute: Callable[[], tuple[np.ndarray, dict[str, Any]]],
) -> tuple[np.ndarray, dict[str, Any]]:
    if cache_dir is None:
        return compute()
    key = _cache_key(modality, files, config)
    target = Path(cache_dir) / subject_id / f"{modality.value}-{key}.npz"
    if target.is_file():
        try:
            with np.load(target, allow_pickle=False) as z:
                return np.array(z["array"]), json.loads(str(z["meta"]))
        except Exception:
            target.unlink(missing_ok=True)  # corrupt cache entry: recompute
    array, meta = compute()
    try:
        with atomic_path(target) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, array=array, meta=np.array(json.dumps(meta)))
    except OSError:
        pass  # a cache is optional
    return array, meta


# ----------------------------------------------------------------------------- loading
def _read_modality(
    modality: Modality, files: SubjectFiles, config: PreprocessConfig, subject: Subject, cache_dir: Path | None
) -> None:
    if modality is Modality.SMRI:
        t1_path = files.smri
        assert t1_path is not None

        def compute() -> tuple[np.ndarray, dict[str, Any]]:
            cube, geom = read_smri(t1_path, config)
            return cube, geom.to_dict()

        cube, meta = _cached(modality, [t1_path], config, cache_dir, subject.subject_id, compute)
        subject.smri = cube
        subject.smri_geometry = SmriGeometry.from_dict(meta)
        subject.sources[modality] = str(t1_path)
    elif modality is Modality.FMRI:
        bold_path = files.fmri
        assert bold_path is not None
        deps = [bold_path]
        side = sidecar_path(bold_path)
        if side.is_file():
            deps.append(side)
        series, info = _cached(modality, deps, config, cache_dir, subject.subject_id,
                               lambda: read_fmri(bold_path, config))
        subject.fmri = series
        subject.fmri_info = info
        if info.get("missing_rois"):
            subject.warnings.append(f"fMRI: {len(info['missing_rois'])} atlas ROIs outside the run's field of view were set to 0")
        subject.sources[modality] = str(bold_path)
    elif modality is Modality.CLINICAL:
        rendered: list[str] = []
        subject.clinical = read_clinical(files.clinical_note, files.clinical_json, subject.warnings,
                                         table_fields=files.clinical_fields, table_path=files.clinical_table,
                                         exclude=config.clinical_exclude, rendered=rendered)
        subject.clinical_fields = rendered
        table = f"{files.clinical_table} (row {subject.folder.name if subject.folder else '?'})" \
            if files.clinical_json is None and files.clinical_fields else None
        used = [str(p) for p in (files.clinical_json, table, files.clinical_note) if p is not None]
        subject.sources[modality] = " + ".join(used)
    else:
        path = files.genetics
        assert path is not None
        subject.genetics = read_genetics(path, config, subject.warnings)
        subject.sources[modality] = str(path)


def _apply_override(modality: Modality, value: Any, config: PreprocessConfig, subject: Subject, cache_dir: Path | None) -> None:
    if modality is Modality.CLINICAL and isinstance(value, str):
        subject.clinical = check_note_text(value)
        subject.sources[modality] = "override: pasted text"
    elif modality is Modality.GENETICS and isinstance(value, str):
        subject.genetics = parse_genetics_text(value, config, subject.warnings)
        subject.sources[modality] = "override: pasted text"
    elif modality is Modality.GENETICS and isinstance(value, (list, tuple)):
        subject.genetics = check_sequences([str(v) for v in value], config, None, subject.warnings)
        subject.sources[modality] = "override: sequences"
    elif isinstance(value, Path) or (isinstance(value, str) and modality in (Modality.SMRI, Modality.FMRI)):
        path = Path(value)
        files = SubjectFiles()
        if modality is Modality.CLINICAL:
            if path.name.lower().endswith(".json"):
                files.clinical_json = path
            else:
                files.clinical_note = path
        else:
            setattr(files, modality.value, path)
        if not path.is_file():
            raise InputDataError(f"{modality.title} file not found", path)
        _read_modality(modality, files, config, subject, cache_dir)
    else:
        raise InputDataError(f"unsupported override for {modality.title}: {type(value).__name__}")


def load_subject(
    folder: "str | Path | None",
    config: PreprocessConfig | None = None,
    overrides: Mapping["Modality | str", Any] | None = None,
    *,
    subject_id: str | None = None,
    modalities: "tuple[Modality, ...] | list[Modality | str] | None" = None,
    cache_dir: "str | Path | None" = None,
    on_error: str = "raise",
) -> Subject:
    """Read and preprocess every available modality of one subject.

    Parameters
    ----------
    folder : str or Path or None
        The subject folder (``sub-<id>/``); ``None`` when everything comes from ``overrides``.
    config : PreprocessConfig, optional
        Preprocessing (default: ``PreprocessConfig()``).
    overrides : mapping, optional
        Modality -> replacement input, e.g. from the GUI:
        ``clinical``: pasted note text; ``genetics``: pasted text (genotype such as ``E3/E4``,
        FASTA, VCF or DNA; see :func:`~anchorad_core.data.genetics.parse_genetics_text`) or a
        list of sequences; any modality: a :class:`~pathlib.Path` to a file to read instead;
        ``None``: treat the modality as missing.
    subject_id : str, optional
        Defaults to the folder name.
    modalities : sequence of Modality, optional
        Only read these (others are left missing).
    cache_dir : str or Path, optional
        Cache preprocessed sMRI/fMRI arrays here, keyed on the file hashes and the config.
    on_error : {"raise", "missing"}
        ``"missing"`` turns a bad file into a missing modality plus a warning (cohort loading);
        ``"raise"`` raises :class:`~anchorad_core.errors.InputDataError`.

    Returns
    -------
    Subject
    """
    config = config or PreprocessConfig()
    if on_error not in ("raise", "missing"):
        raise ValueError("on_error must be 'raise' or 'missing'")
    wanted = tuple(Modality.parse(m) for m in modalities) if modalities is not None else ALL_MODALITIES
    overrides = {Modality.parse(k): v for k, v in (overrides or {}).items()}
    folder_path = Path(folder) if folder is not None else None
    if folder_path is not None:
        files = find_subject_files(folder_path)
        sid = subject_id or default_subject_id(folder_path)
        if not any(files.has(m) for m in ALL_MODALITIES) and not any(v is not None for v in overrides.values()):
            problem = (
                "no input file of any modality found (expected anat/*_T1w.nii[.gz], "
                "func/*_bold.nii[.gz] or func/*_timeseries.npy|tsv, clinical/*_note.txt or "
                "clinical/*_clinical.json, genetics/*_apoe.txt, *.vcf[.gz] or *.fa[sta])"
            )
            if on_error == "raise":
                raise InputDataError(problem, folder_path)
            files.warnings.append(problem)
    else:
        files = SubjectFiles()
        sid = subject_id or "subject"
    subject = Subject(subject_id=sid, folder=folder_path, config=config, warnings=list(files.warnings))
    cache = Path(cache_dir) if cache_dir is not None else None
    for modality in ALL_MODALITIES:
        if modality not in wanted:
            continue
        try:
            if modality in overrides:
                if overrides[modality] is not None:
                    _apply_override(modality, overrides[modality], config, subject, cache)
            elif files.has(modality):
                _read_modality(modality, files, config, subject, cache)
        except InputDataError as exc:
            if on_error == "raise":
                raise
            setattr(subject, modality.value, None)
            subject.sources.pop(modality, None)
            if modality is Modality.CLINICAL:
                subject.clinical_fields = []
            subject.warnings.append(f"{modality.title} left out: {exc}")
    return subject
