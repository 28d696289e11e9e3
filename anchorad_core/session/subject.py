"""A subject as the session opens it: its files and their text, and checks of typed text (no preprocessing)."""
from __future__ import annotations

import gzip
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import AnchorADError, InputDataError
from ..modality import ALL_MODALITIES, Modality

if TYPE_CHECKING:
    from ..data import SubjectFiles

__all__ = ["OpenedSubject", "read_subject", "describe_genetics", "describe_note", "subject_inputs",
           "MAX_PREFILL_BYTES"]

#: Largest genetics file read into :attr:`OpenedSubject.genetics_text`.
MAX_PREFILL_BYTES = 2_000_000


@dataclass
class OpenedSubject:
    """A subject folder as opened: its files and their text (cheap; no preprocessing)."""

    folder: Path
    files: "SubjectFiles | None" = None  # None: not looked at (the CLI leaves it to the diagnosis)
    clinical_text: str | None = None  # the note (rendered from the structured fields when there are)
    genetics_text: str | None = None  # the genetics file as text, when it is a small text file
    genetics_note: str = ""  # why genetics_text is None although a file exists
    warnings: list[str] = field(default_factory=list)

    @property
    def subject_id(self) -> str:
        """The folder name (``sub-...``)."""
        return self.folder.name

    def has(self, modality: "Modality | str") -> bool:
        """Whether the folder has a file of ``modality`` (``True`` when the files were not looked at)."""
        return self.files is None or bool(self.files.has(Modality.parse(modality)))


def read_subject(folder: "str | Path") -> OpenedSubject:
    """Find a subject's files and read its clinical text and genetics text (no preprocessing).

    Raises
    ------
    InputDataError
        Not a folder, or no AnchorAD data in it, or an unreadable clinical file.
    """
    from ..data import find_subject_files, read_clinical

    folder = Path(folder).expanduser()
    files = find_subject_files(folder)
    if not any(files.has(m) for m in ALL_MODALITIES):
        raise InputDataError(
            "not an AnchorAD subject folder: no anat/*_T1w.nii[.gz], func/, clinical/ or genetics/ files found",
            folder,
        )
    warnings = list(files.warnings)
    clinical = None
    if files.clinical_note is not None or files.clinical_json is not None or files.clinical_fields:
        clinical = read_clinical(files.clinical_note, files.clinical_json, warnings,  # a session: its table row too
                                 table_fields=files.clinical_fields, table_path=files.clinical_table)
    genetics, note = None, ""
    if files.genetics is not None:
        path = files.genetics
        if path.stat().st_size > MAX_PREFILL_BYTES:
            note = f"{path.name} is large; it is used as is (paste text to replace it)"
        else:
            try:
                raw = gzip.open(path).read() if path.name.lower().endswith(".gz") else path.read_bytes()
                genetics = raw.decode("utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                note = f"{path.name} could not be shown as text ({exc}); it is used as is"
    return OpenedSubject(folder, files, clinical, genetics, note, warnings)


def describe_genetics(text: str) -> tuple[bool, str, list[str]]:
    """Check pasted genetics text with the core parser.

    Returns
    -------
    ok : bool
    message : str
        What was understood (``APOE genotype E3/E4 -> 2 sequences of 581 bases``) or the problem.
    warnings : list of str
    """
    from ..data import parse_apoe_genotype, parse_genetics_text

    stripped = (text or "").strip()
    if not stripped:
        return True, "empty: genetics will be treated as missing", []
    warnings: list[str] = []
    try:
        sequences = parse_genetics_text(stripped, warnings=warnings)
    except AnchorADError as exc:
        return False, exc.problem, warnings
    except Exception as exc:  # a parser bug must not break typing
        return False, f"{type(exc).__name__}: {exc}", warnings
    lengths = sorted({len(s) for s in sequences})
    size = f"{lengths[0]} bases" if len(lengths) == 1 else f"{lengths[0]}-{lengths[-1]} bases"
    plural = "s" if len(sequences) != 1 else ""
    if stripped.startswith(">"):
        kind = "FASTA"
    elif stripped.startswith("##fileformat=VCF") or stripped.startswith("#CHROM"):
        kind = "VCF"
    else:
        kind = "DNA"
        if len(stripped) <= 40 and re.search(r"[234]", stripped):
            try:
                genotype = parse_apoe_genotype(stripped)
                kind = f"APOE genotype {_genotype_text(genotype)}"
            except AnchorADError:
                pass
    return True, f"{kind} -> {len(sequences)} sequence{plural} of {size}", warnings


def _genotype_text(genotype: Any) -> str:
    if isinstance(genotype, (tuple, list)):
        return "/".join(f"E{str(a).lstrip('eE')}" for a in genotype)
    return str(genotype)


def describe_note(text: str) -> tuple[bool, str]:
    """Check a typed clinical note: ``(ok, "N words" or the problem)``."""
    from ..data.clinical import check_note_text

    stripped = (text or "").strip()
    if not stripped:
        return True, "empty: clinical text will be treated as missing"
    try:
        check_note_text(stripped)
    except AnchorADError as exc:
        return False, exc.problem
    return True, f"{len(stripped.split())} words"


def subject_inputs(folder: "str | Path | None", overrides: "dict[str, Any] | None") -> dict[str, Any]:
    """What a diagnosis is computed from (folder and edited inputs), comparable with ``==``."""
    return {"folder": str(Path(folder).expanduser().resolve()) if folder is not None else None,
            "overrides": dict(overrides or {})}


