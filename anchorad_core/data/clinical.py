"""Clinical text: a free-text note and/or structured fields rendered by a fixed template.

Files (subject folder ``clinical/``):

* ``sub-<id>_note.txt`` - free text, UTF-8 (a BOM is allowed). Empty or non-UTF-8 files are
  an error.
* ``sub-<id>_clinical.json`` - a JSON object of structured fields, rendered to text by
  :func:`render_clinical_note` with this FIXED template (fields that are absent are skipped)::

      Age: 72 years. Sex: female. Education: 16 years.
      MMSE: 27/30 (normal range). MoCA: 24/30. CDR-SB: 1.5 (questionable impairment).
      CDR global: 0.5 (very mild dementia). ADAS-Cog 11: 9/70. ADAS-Cog 13: 14/85. FAQ: 2/30.
      Complaints (2): misplaces objects; word-finding difficulty.
      <Other field>: <value>.          (remaining fields, alphabetical, one line each)

  Known fields and their checks: ``age`` (0-120), ``sex`` (``M``/``F``/``male``/``female``/
  ``other``), ``education_years`` (0-30), ``mmse`` (0-30), ``moca`` (0-30), ``cdr_sb``
  (0-18), ``cdr_global`` (0-3), ``adas11`` (0-70), ``adas13`` (0-85), ``faq`` (0-30),
  ``complaints`` (a string or a list of strings). Any other field is rendered as
  ``Field name: value.`` (strings, numbers, booleans or lists of them). Fields that would
  leak the label (``diagnosis``, ``dx``, ``label``, ``group``, ``research_group``) and
  identifiers (``participant_id``, ``subject_id``) are NOT rendered; a warning says so.
  Fields named in ``exclude`` (:attr:`PreprocessConfig.clinical_exclude`, e.g. the scores
  that define the diagnosis: :data:`DIAGNOSTIC_SCORES`) are left out silently.

The same template renders notes from visit-table rows (:mod:`.session_notes`).

Scores carry their standard interpretation band in words after the number (MMSE: 27-30
normal range, 24-26 borderline, 20-23 mild impairment, 10-19 moderate impairment, 0-9
severe impairment; CDR-SB staging of O'Bryant et al. 2008: 0 no impairment, 0.5-2.5
questionable impairment, 3-4 very mild dementia, 4.5-9 mild dementia, 9.5-15.5 moderate
dementia, 16-18 severe dementia). A band is a fixed function of its number, so it adds no
information; it gives a text encoder, which reads "23" and "28" as unrelated word pieces, an
ordinal vocabulary it already knows. CDR global uses the CDR's own stages (0 no dementia,
0.5 very mild, 1 mild, 2 moderate, 3 severe dementia). Likewise the complaints line states how many there are,
so a model that reads numbers (the text backbone's number readout) can use the count.

When both files exist, **both are used**: the rendered structured summary comes first, then
a blank line, then the free-text note. Text a user pastes in the GUI (``overrides``) replaces
both.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

from ..errors import InputDataError
from .fileio import read_text_utf8

__all__ = ["read_note", "read_clinical_json", "render_clinical_note", "read_clinical", "check_note_text",
           "DIAGNOSTIC_SCORES", "FREE_TEXT", "canonical_field"]

_EXCLUDED = {"diagnosis", "dx", "label", "group", "research_group", "participant_id", "subject_id"}
_RANGES = {
    "age": (0.0, 120.0),
    "education_years": (0.0, 30.0),
    "mmse": (0.0, 30.0),
    "moca": (0.0, 30.0),
    "cdr_sb": (0.0, 18.0),
    "cdr_global": (0.0, 3.0),
    "adas11": (0.0, 70.0),
    "adas13": (0.0, 85.0),
    "faq": (0.0, 30.0),
}
#: The scores the clinical diagnosis is largely made from (MMSE, CDR): ``--note-exclude diagnostic``.
DIAGNOSTIC_SCORES: tuple[str, ...] = ("mmse", "cdr_sb", "cdr_global")
#: The name a free-text note goes by in the record of what notes contained.
FREE_TEXT = "free_text"
_SEX = {"m": "male", "male": "male", "man": "male", "f": "female", "female": "female", "woman": "female",
        "o": "other", "other": "other", "x": "other"}
_KNOWN = set(_RANGES) | {"sex", "complaints"}


def check_note_text(text: str, path: "str | Path | None" = None) -> str:
    """Validate note text (non-empty) and normalise line endings; returns the stripped text."""
    if not isinstance(text, str):
        raise InputDataError(f"clinical text must be a string, got {type(text).__name__}", path)
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    if not text:
        raise InputDataError("clinical note is empty", path)
    return text


def read_note(path: "str | Path") -> str:
    """Read a free-text clinical note (UTF-8)."""
    return check_note_text(read_text_utf8(path, "clinical note"), path)


def read_clinical_json(path: "str | Path") -> dict[str, Any]:
    """Read and validate a structured clinical JSON file."""
    text = read_text_utf8(path, "clinical JSON")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputDataError(f"invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})", path) from None
    if not isinstance(data, dict):
        raise InputDataError("clinical JSON must be an object of fields, e.g. {\"age\": 72, \"mmse\": 27}", path)
    if not data:
        raise InputDataError("clinical JSON has no fields", path)
    return data


def _number(name: str, value: Any, path: "str | Path | None") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise InputDataError(f"field {name!r} must be a number, got {value!r}", path)
    lo, hi = _RANGES[name]
    if not lo <= float(value) <= hi:
        raise InputDataError(f"field {name!r} = {value!r} is outside the plausible range {lo:g}-{hi:g}", path)
    return float(value)


def _fmt(x: float) -> str:
    return f"{x:g}"


#: (lowest score of the band, words); bands in descending order.
MMSE_BANDS: tuple[tuple[float, str], ...] = (
    (27, "normal range"), (24, "borderline"), (20, "mild impairment"), (10, "moderate impairment"),
    (0, "severe impairment"))
CDR_SB_BANDS: tuple[tuple[float, str], ...] = (
    (16, "severe dementia"), (9.5, "moderate dementia"), (4.5, "mild dementia"), (3, "very mild dementia"),
    (0.5, "questionable impairment"), (0, "no impairment"))
CDR_GLOBAL_BANDS: tuple[tuple[float, str], ...] = (
    (3, "severe dementia"), (2, "moderate dementia"), (1, "mild dementia"), (0.5, "very mild dementia"),
    (0, "no dementia"))


def score_band(value: float, bands: tuple[tuple[float, str], ...]) -> str:
    """Words of the band ``value`` falls in (the first band whose lower bound it reaches)."""
    for lowest, words in bands:
        if value >= lowest:
            return words
    return bands[-1][1]


def _value_text(name: str, value: Any, path: "str | Path | None") -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        if not math.isfinite(float(value)):
            raise InputDataError(f"field {name!r} is not a finite number", path)
        return _fmt(float(value))
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (list, tuple)):
        return "; ".join(_value_text(name, v, path) for v in value)
    raise InputDataError(f"field {name!r} has an unsupported value {value!r} (use text, numbers or lists)", path)


def canonical_field(name: str) -> str:
    """Canonical name of a clinical field (case-insensitive; spaces/hyphens become ``_``; a few aliases)."""
    k = str(name).strip().lower().replace(" ", "_").replace("-", "_")
    if k in ("cdrsb", "cdr_sum_of_boxes"):
        return "cdr_sb"
    if k in ("education", "years_of_education", "educ"):
        return "education_years"
    return k


def render_clinical_note(
    fields: Mapping[str, Any],
    path: "str | Path | None" = None,
    warnings: list[str] | None = None,
    *,
    exclude: "tuple[str, ...] | list[str]" = (),
    rendered: list[str] | None = None,
) -> str:
    """Render structured clinical fields to text with the fixed template (module docstring).

    Parameters
    ----------
    fields : mapping
        Field name -> value (names are case-insensitive; spaces/hyphens become ``_``).
    path : str or Path, optional
        For error messages.
    warnings : list of str, optional
        Receives a message for each field left out because it would leak the label.
    exclude : sequence of str
        Fields to leave out (e.g. :data:`DIAGNOSTIC_SCORES`).
    rendered : list of str, optional
        Receives the canonical name of every field the text contains, in template order.

    Returns
    -------
    str
    """
    left_out = {canonical_field(k) for k in exclude}
    norm: dict[str, Any] = {}
    for key, value in fields.items():
        k = canonical_field(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        if isinstance(value, float) and math.isnan(value):
            continue
        if k in left_out:
            continue
        norm[k] = value
    lines: list[str] = []
    first: list[str] = []
    shown: list[str] = [k for k in ("age", "sex", "education_years", "mmse", "moca", "cdr_sb", "cdr_global",
                                    "adas11", "adas13", "faq", "complaints") if k in norm]
    if "age" in norm:
        first.append(f"Age: {_fmt(_number('age', norm['age'], path))} years.")
    if "sex" in norm:
        sex = _SEX.get(str(norm["sex"]).strip().lower())
        if sex is None:
            raise InputDataError(f"field 'sex' must be M/F/male/female/other, got {norm['sex']!r}", path)
        first.append(f"Sex: {sex}.")
    if "education_years" in norm:
        first.append(f"Education: {_fmt(_number('education_years', norm['education_years'], path))} years.")
    if first:
        lines.append(" ".join(first))
    scores: list[str] = []
    if "mmse" in norm:
        mmse = _number('mmse', norm['mmse'], path)
        scores.append(f"MMSE: {_fmt(mmse)}/30 ({score_band(mmse, MMSE_BANDS)}).")
    if "moca" in norm:
        scores.append(f"MoCA: {_fmt(_number('moca', norm['moca'], path))}/30.")
    if "cdr_sb" in norm:
        cdr = _number('cdr_sb', norm['cdr_sb'], path)
        scores.append(f"CDR-SB: {_fmt(cdr)} ({score_band(cdr, CDR_SB_BANDS)}).")
    if "cdr_global" in norm:
        cdr = _number('cdr_global', norm['cdr_global'], path)
        scores.append(f"CDR global: {_fmt(cdr)} ({score_band(cdr, CDR_GLOBAL_BANDS)}).")
    for name, title in (("adas11", "ADAS-Cog 11"), ("adas13", "ADAS-Cog 13"), ("faq", "FAQ")):
        if name in norm:
            scores.append(f"{title}: {_fmt(_number(name, norm[name], path))}/{_fmt(_RANGES[name][1])}.")
    if scores:
        lines.append(" ".join(scores))
    if "complaints" in norm:
        c = norm["complaints"]
        if isinstance(c, str):
            c = [c]
        if not isinstance(c, (list, tuple)) or not all(isinstance(x, str) for x in c):
            raise InputDataError("field 'complaints' must be a string or a list of strings", path)
        items = [x.strip() for x in c if x.strip()]
        lines.append((f"Complaints ({len(items)}): " + "; ".join(items) + ".") if items else "Complaints: none.")
    for k in sorted(norm):
        if k in _KNOWN:
            continue
        if k in _EXCLUDED:
            if warnings is not None:
                warnings.append(f"clinical field {k!r} not rendered (it would leak the label or identity)")
            continue
        label = k.replace("_", " ").capitalize()
        text = _value_text(k, norm[k], path).rstrip(".")
        lines.append(f"{label}: {text}.")
        shown.append(k)
    if not lines:
        dropped = sorted(left_out & {canonical_field(k) for k in fields})
        why = f" once {', '.join(dropped)} are left out" if dropped else ""
        raise InputDataError(f"clinical fields: no usable fields{why}", path)
    if rendered is not None:
        rendered.extend(shown)
    return "\n".join(lines)


def read_clinical(
    note_path: "str | Path | None" = None,
    json_path: "str | Path | None" = None,
    warnings: list[str] | None = None,
    *,
    table_fields: Mapping[str, Any] | None = None,
    table_path: "str | Path | None" = None,
    exclude: "tuple[str, ...] | list[str]" = (),
    rendered: list[str] | None = None,
) -> str:
    """Clinical text of a subject from its note and/or structured fields (both: fields first).

    The structured fields come from the JSON file, else from ``table_fields`` (a visit-table
    row, :mod:`.session_notes`; ``table_path`` names it in errors). ``exclude`` and
    ``rendered`` are as in :func:`render_clinical_note`; ``rendered`` also receives
    :data:`FREE_TEXT` when a free-text note is used.

    Raises
    ------
    InputDataError
        If there is neither a file nor table fields, or one of them is bad.
    """
    parts: list[str] = []
    if json_path is not None:
        parts.append(render_clinical_note(read_clinical_json(json_path), json_path, warnings,
                                          exclude=exclude, rendered=rendered))
    elif table_fields:
        parts.append(render_clinical_note(table_fields, table_path, warnings, exclude=exclude, rendered=rendered))
    if note_path is not None:
        parts.append(read_note(note_path))
        if rendered is not None:
            rendered.append(FREE_TEXT)
    if not parts:
        raise InputDataError("no clinical note or clinical JSON given")
    return "\n\n".join(parts)
