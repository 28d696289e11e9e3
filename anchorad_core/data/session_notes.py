"""Clinical notes of a visit from tabular columns: the BIDS sessions file of the participant.

In a Clinica / BIDS cohort each participant folder may hold ``sub-<id>_sessions.tsv``, one
row per visit (``session_id`` plus clinical columns). A session's note is rendered from its
row with the same fixed template as a clinical JSON (:func:`.clinical.render_clinical_note`),
completed by the participant's row of the cohort's ``participants.tsv`` for the fields that
do not change between visits (sex, education) when the session row lacks them.

Only the columns below are read (case-insensitive; ADNIMERGE and Clinica spellings), so a
table's diagnosis, identifiers, dates or biomarkers never reach the text:

=================  ===========================================
field              columns
=================  ===========================================
age                ``age``, ``age_at_visit``
sex                ``sex``, ``gender``, ``PTGENDER``
education_years    ``education_years``, ``education``, ``PTEDUCAT``
mmse               ``MMSE``, ``MMS``
moca               ``MOCA``
cdr_sb             ``cdr_sb``, ``CDRSB``
cdr_global         ``cdr_global``, ``CDGLOBAL``, ``CDR``
adas11             ``ADAS11``
adas13             ``ADAS13``
faq                ``FAQ``, ``FAQTOTAL``
=================  ===========================================

Empty cells and ``n/a`` are skipped. A session's own ``clinical/*_clinical.json`` takes
precedence over its table row (the table is then not used).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from ..errors import InputDataError

__all__ = ["TABLE_COLUMNS", "fields_from_row", "sessions_table", "session_table_fields"]

#: Canonical clinical field -> accepted column names (lower case).
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "age": ("age", "age_at_visit"),
    "sex": ("sex", "gender", "ptgender"),
    "education_years": ("education_years", "education", "pteducat"),
    "mmse": ("mmse", "mms"),
    "moca": ("moca",),
    "cdr_sb": ("cdr_sb", "cdrsb"),
    "cdr_global": ("cdr_global", "cdglobal", "cdr"),
    "adas11": ("adas11",),
    "adas13": ("adas13",),
    "faq": ("faq", "faqtotal"),
}
#: Fields a participant keeps across visits (taken from participants.tsv when a session row lacks them).
PARTICIPANT_FIELDS = ("sex", "education_years")
_TEXT_FIELDS = {"sex"}
_NA = {"", "n/a", "na", "nan", "none"}


def fields_from_row(row: Mapping[str, Any], path: "str | Path | None" = None, where: str = "",
                    only: "tuple[str, ...] | None" = None) -> dict[str, Any]:
    """Canonical clinical fields of one table row (numbers parsed; unknown columns ignored).

    ``only`` restricts the fields read (default: all of :data:`TABLE_COLUMNS`).

    Raises
    ------
    InputDataError
        If a numeric column holds text, naming the file, the row and the column.
    """
    by_name = {str(k).strip().lower(): v for k, v in row.items()}
    written = {str(k).strip().lower(): str(k).strip() for k in row}
    out: dict[str, Any] = {}
    for field, columns in TABLE_COLUMNS.items():
        if only is not None and field not in only:
            continue
        column = next((c for c in columns if c in by_name), None)
        if column is None:
            continue
        value = by_name[column]
        if value is None or str(value).strip().lower() in _NA:
            continue
        if field in _TEXT_FIELDS:
            out[field] = str(value).strip()
            continue
        try:
            out[field] = float(str(value).strip())
        except ValueError:
            raise InputDataError(f"{where}column {written[column]!r} must be a number, got {value!r}", path) from None
    return out


def _read_tsv(path: Path) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, encoding="utf-8")
    except UnicodeDecodeError:
        raise InputDataError("not valid UTF-8", path) from None
    except Exception as exc:
        raise InputDataError(f"cannot read as a tab-separated table ({exc})", path) from None
    df.columns = [str(c).strip() for c in df.columns]
    return df


def sessions_table(participant_folder: "str | Path") -> Path | None:
    """``sub-<id>/sub-<id>_sessions.tsv`` of a participant folder, if it exists."""
    folder = Path(participant_folder)
    path = folder / f"{folder.name}_sessions.tsv"
    return path if path.is_file() else None


def _session_row(table: Path, session: str) -> dict[str, Any] | None:
    df = _read_tsv(table)
    if "session_id" not in df.columns:
        raise InputDataError(f"no 'session_id' column (columns: {', '.join(df.columns)}); is it tab-separated?", table)
    ids = df["session_id"].str.strip()
    ids = ids.where(ids.str.startswith("ses-"), "ses-" + ids)
    hits = df[ids == session]
    if len(hits) > 1:
        raise InputDataError(f"session {session} is listed {len(hits)} times", table)
    return None if hits.empty else _row_dict(hits.iloc[0])


def _participant_row(participant_folder: Path) -> dict[str, Any] | None:
    tsv = participant_folder.parent / "participants.tsv"
    if not tsv.is_file():
        return None
    df = _read_tsv(tsv)
    if "participant_id" not in df.columns:
        return None  # the cohort loader reports a bad participants.tsv; a note does without it
    ids = df["participant_id"].str.strip()
    name = participant_folder.name
    hits = df[(ids == name) | ("sub-" + ids == name)]
    return None if hits.empty else _row_dict(hits.iloc[0])


def _row_dict(row: pd.Series) -> dict[str, Any]:
    """One table row as ``{column name: value}``."""
    return {str(k): v for k, v in row.items()}


def session_table_fields(session_folder: "str | Path") -> tuple[dict[str, Any], Path] | None:
    """Clinical fields of a session folder (``sub-<id>/ses-<label>``) from the participant's tables.

    Returns
    -------
    (fields, table) or None
        ``None`` when the participant has no sessions file, the file has no row for the
        session, or the row holds none of the :data:`TABLE_COLUMNS`.
    """
    session_folder = Path(session_folder)
    participant = session_folder.parent
    table = sessions_table(participant)
    if table is None:
        return None
    row = _session_row(table, session_folder.name)
    if row is None:
        return None
    fields = fields_from_row(row, table, f"row {session_folder.name}: ")
    if not fields:
        return None
    missing = [f for f in PARTICIPANT_FIELDS if f not in fields]
    if missing:
        extra = _participant_row(participant)
        if extra is not None:
            tsv = participant.parent / "participants.tsv"
            fields.update(fields_from_row(extra, tsv, f"row {participant.name}: ", only=tuple(missing)))
    return fields, table
