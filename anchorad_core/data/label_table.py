"""A ClinicaDL-style label table: one row per (participant, session) with its diagnosis.

Format (tab-separated, UTF-8, as ``clinicadl tsvtools get-labels`` writes and
``anchorad labels`` derives from a visit table)::

    participant_id   session_id   diagnosis   [any other columns, ignored]
    sub-ADNI011S0002 ses-M000     CN
    sub-ADNI011S0002 ses-M012     MCI

``participant_id`` is ``sub-<label>`` (a bare ``<label>`` is accepted), ``session_id`` is
``ses-<label>`` (a bare ``<label>`` is accepted; empty for a participant folder without
sessions). ``diagnosis`` is any label of :mod:`.task` (``CN`` becomes ``NC``; ``sMCI`` /
``pMCI`` are kinds of ``MCI``); empty or ``n/a`` leaves the session unlabelled (never part
of a task). Errors name the file and the lines.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import pandas as pd

from ..errors import InputDataError
from .task import canonical_label

__all__ = ["read_label_table", "parse_diagnoses", "read_tsv", "MISSING_VALUES"]

#: Cell values that mean "no value".
MISSING_VALUES = {"", "n/a", "na", "nan", "none", "unknown"}


def read_tsv(path: "str | Path", what: str) -> pd.DataFrame:
    """Read a tab-separated UTF-8 table as strings (header stripped); errors name ``path``."""
    path = Path(path)
    if not path.is_file():
        raise InputDataError(f"{what} not found", path)
    try:
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, encoding="utf-8")
    except UnicodeDecodeError:
        raise InputDataError(f"{what} is not valid UTF-8", path) from None
    except Exception as exc:
        raise InputDataError(f"cannot read {what} as a tab-separated table ({exc})", path) from None
    df.columns = [str(c).strip() for c in df.columns]
    return df


def parse_diagnoses(values: Iterable[str], path: "str | Path") -> list[str | None]:
    """Canonical labels (``None`` for empty / ``n/a``); a label containing ``-`` is an error."""
    out = [None if str(v).strip().lower() in MISSING_VALUES else canonical_label(v) for v in values]
    bad = sorted({v for v in out if v is not None and "-" in v})
    if bad:
        raise InputDataError(f"diagnosis labels must not contain '-': {', '.join(bad[:5])}", path)
    return out


def _lines(mask: "pd.Series[bool]") -> str:
    return ", ".join(str(i + 2) for i in list(mask[mask].index)[:10])


def read_label_table(path: "str | Path") -> pd.DataFrame:
    """Read and validate a label table.

    Returns
    -------
    pandas.DataFrame
        Columns ``participant_id`` (``sub-<label>``), ``session_id`` (``ses-<label>`` or
        ``None``) and ``diagnosis`` (canonical label or ``None``), in file order.

    Raises
    ------
    InputDataError
        Missing columns, empty participant ids, or a (participant, session) listed twice.
    """
    path = Path(path)
    df = read_tsv(path, "label table").reset_index(drop=True)
    for col in ("participant_id", "session_id", "diagnosis"):
        if col not in df.columns:
            raise InputDataError(
                f"label table has no {col!r} column (columns: {', '.join(df.columns)}); it needs "
                "participant_id, session_id and diagnosis, tab-separated", path)
    if df.empty:
        raise InputDataError("label table lists no sessions", path)
    pid = df["participant_id"].str.strip()
    if (pid == "").any():
        raise InputDataError(f"empty participant_id on line(s) {_lines(pid == '')}", path)
    ses = df["session_id"].str.strip()
    out = pd.DataFrame({  # object columns: a missing session or diagnosis stays None
        "participant_id": pid.where(pid.str.startswith("sub-"), "sub-" + pid),
        "session_id": pd.Series([None if s.lower() in MISSING_VALUES else (s if s.startswith("ses-") else f"ses-{s}")
                                 for s in ses], dtype=object),
        "diagnosis": pd.Series(parse_diagnoses(df["diagnosis"], path), dtype=object),
    })
    dup = out.duplicated(["participant_id", "session_id"], keep=False)
    if dup.any():
        raise InputDataError(f"the same participant and session are listed twice (lines {_lines(dup)})", path)
    return out
