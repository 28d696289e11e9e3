"""What the clinical notes of a set of samples contained: recorded in a bundle, said by the report.

The record (``note_fields`` in ``bundle.json``)::

    {"notes": 40,                                   samples with clinical text
     "fields": {"age": 40, "sex": 40, "mmse": 38, "free_text": 12},   samples per field
     "left_out": ["cdr_global", "cdr_sb", "mmse"]}  PreprocessConfig.clinical_exclude

Field names are those of :mod:`.clinical` (``free_text``: a free-text note was added).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from .clinical import FREE_TEXT

__all__ = ["note_field_summary", "note_fields_text"]


def note_field_summary(subjects: Sequence[Any], left_out: Sequence[str] = ()) -> dict[str, Any]:
    """Count, over loaded subjects, the notes and the samples whose note holds each field."""
    counts: dict[str, int] = {}
    for subject in subjects:
        for name in dict.fromkeys(getattr(subject, "clinical_fields", None) or []):
            counts[name] = counts.get(name, 0) + 1
    notes = sum(1 for s in subjects if getattr(s, "clinical", None) is not None)
    return {"notes": notes, "fields": counts, "left_out": list(left_out)}


def note_fields_text(record: "Mapping[str, Any] | None") -> str:
    """One line: ``"40 notes: age, sex, mmse (38); free text in 12; left out: cdr_sb, mmse"``."""
    if not record:
        return "not recorded"
    notes = int(record.get("notes") or 0)
    fields = dict(record.get("fields") or {})
    free = fields.pop(FREE_TEXT, 0)
    shown = ", ".join(name if n == notes else f"{name} ({n})" for name, n in fields.items()) or "no structured fields"
    parts = [f"{notes} notes: {shown}"]
    if free:
        parts.append(f"free text in {free}")
    left_out = list(record.get("left_out") or [])
    parts.append(f"left out: {', '.join(left_out)}" if left_out else "nothing left out")
    return "; ".join(parts)
