"""NC / MCI / AD and sMCI / pMCI labels per visit, derived from an ADNIMERGE-shaped visit table.

Input: one row per visit (CSV or TSV, UTF-8), columns found case-insensitively:

* participant: ``participant_id`` (BIDS, used as is), else ``PTID`` (``011_S_0002`` becomes
  Clinica's ``sub-ADNI011S0002``), else ``RID`` (``2`` becomes ``sub-RID0002``);
* time: ``session_id`` if present (kept), months from ``M`` (or ``Month``), else from
  ``VISCODE`` (``bl`` = 0, ``m06`` = 6), else from ``EXAMDATE`` (days since the participant's
  first exam / 30.4375, rounded). The session is ``ses-M<months, 3 digits>`` (``ses-M036``);
* diagnosis: ``DX`` (per visit), with ``DX_bl`` filling the baseline visit (month 0) where
  ``DX`` is empty or absent. ``CN``, ``NL``, ``SMC`` -> NC; ``MCI``, ``EMCI``, ``LMCI`` -> MCI;
  ``AD``, ``Dementia`` -> AD; a change such as ``MCI to Dementia`` counts as its new state.

Rules, applied per participant with the visits in time order (``H`` = ``horizon_months``):

1. A visit without a diagnosis gets no label and does not count as follow-up.
2. Reverters: a participant whose diagnosis ever goes back (AD -> MCI or NC, MCI -> NC) at a
   later visit gets no label at any visit: the trajectory is unreliable for conversion.
3. NC and AD visits are labelled NC and AD.
4. An MCI visit at month ``t`` is **pMCI** if AD is diagnosed at a later visit at month
   ``c`` with ``c - t <= H`` (a conversion exactly at the horizon counts).
5. It is **sMCI** if no later visit is AD and the participant was followed at least ``H``
   months after it (a later visit with a diagnosis at month ``>= t + H``).
6. Otherwise it stays **MCI** (part of NC-MCI, never of sMCI-pMCI): followed for less than
   ``H`` months without AD, or AD only after the horizon (a late converter is neither stable
   nor progressive within it).

Output (:func:`write_label_table`): the ClinicaDL-style label table of :mod:`.label_table`
(``participant_id``, ``session_id``, ``diagnosis``) plus ``months`` and ``rule`` (which rule
labelled the visit, in words). Visits left out by rules 1-2 are not listed; the summary
counts them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError, InputDataError
from ..io_utils import atomic_write_text

__all__ = ["read_visit_table", "derive_labels", "write_label_table", "LabelSummary", "DX_WORDS"]

#: Visit-table diagnosis words (lower case) -> stage label.
DX_WORDS: dict[str, str] = {
    "cn": "NC", "nc": "NC", "nl": "NC", "normal": "NC", "smc": "NC",
    "mci": "MCI", "emci": "MCI", "lmci": "MCI",
    "ad": "AD", "dementia": "AD",
}
_STAGE = {"NC": 0, "MCI": 1, "AD": 2}
_MISSING = {"", "n/a", "na", "nan", "none", "-1", "-4"}
_DAYS_PER_MONTH = 30.4375


@dataclass
class LabelSummary:
    """What :func:`derive_labels` did."""

    labels: dict[str, int] = field(default_factory=dict)
    participants: int = 0
    visits: int = 0
    no_diagnosis: int = 0
    reverters: int = 0
    reverter_visits: int = 0

    def text(self) -> str:
        """One line for the command line."""
        counts = ", ".join(f"{k} {v}" for k, v in self.labels.items()) or "none"
        return (f"{sum(self.labels.values())} labelled visits ({counts}) of {self.participants} participants; "
                f"left out: {self.no_diagnosis} visits without a diagnosis, {self.reverters} reverting "
                f"participants ({self.reverter_visits} visits)")


def _column(df: pd.DataFrame, *names: str) -> str | None:
    lower = {c.lower(): c for c in df.columns}
    return next((lower[n.lower()] for n in names if n.lower() in lower), None)


def _lines(rows: "list[int] | np.ndarray") -> str:
    return ", ".join(str(int(i) + 2) for i in list(rows)[:10])


def _participant_ids(df: pd.DataFrame, path: Path) -> pd.Series:
    col = _column(df, "participant_id")
    if col is not None:
        ids = df[col].str.strip()
        return ids.where(ids.str.startswith("sub-") | (ids == ""), "sub-" + ids)
    col = _column(df, "PTID")
    if col is not None:
        ids = df[col].str.strip()
        return ids.where(ids == "", "sub-ADNI" + ids.str.replace("_", "", regex=False))
    col = _column(df, "RID")
    if col is None:
        raise InputDataError(
            f"visit table has no participant column (participant_id, PTID or RID; columns: {', '.join(df.columns)})",
            path)
    out = []
    for i, v in enumerate(df[col].str.strip()):
        if not v:
            out.append("")
            continue
        try:
            out.append(f"sub-RID{int(float(v)):04d}")
        except ValueError:
            raise InputDataError(f"RID {v!r} on line {i + 2} is not a number", path) from None
    return pd.Series(out, index=df.index)


def _viscode_months(code: str, line: int, path: Path) -> float:
    text = code.strip().lower()
    if text in ("bl", "m0", "m00", "m000"):
        return 0.0
    match = re.fullmatch(r"m(\d+)", text)
    if match is None:
        raise InputDataError(f"VISCODE {code!r} on line {line} is neither 'bl' nor 'm<months>' (e.g. m06)", path)
    return float(match.group(1))


def _months(df: pd.DataFrame, pid: pd.Series, path: Path) -> pd.Series:
    col = _column(df, "M", "Month")
    if col is not None:
        values = pd.to_numeric(df[col].str.strip(), errors="coerce")
        bad = np.flatnonzero(values.isna().to_numpy() | (values < 0).to_numpy())
        if len(bad):
            raise InputDataError(f"column {col!r} must hold months >= 0 (lines {_lines(bad)})", path)
        return values.astype(float)
    col = _column(df, "VISCODE")
    if col is not None:
        return pd.Series([_viscode_months(v, i + 2, path) for i, v in enumerate(df[col])], index=df.index)
    col = _column(df, "EXAMDATE")
    if col is None:
        raise InputDataError("visit table has no time column (M, VISCODE or EXAMDATE)", path)
    dates = pd.to_datetime(df[col].str.strip(), errors="coerce")
    bad = np.flatnonzero(dates.isna().to_numpy())
    if len(bad):
        raise InputDataError(f"column {col!r} holds values that are not dates (lines {_lines(bad)})", path)
    first = dates.groupby(pid).transform("min")
    return ((dates - first).dt.days / _DAYS_PER_MONTH).round()


def _stage(value: str, line: int, column: str, path: Path) -> str | None:
    text = str(value).strip().lower()
    if text in _MISSING:
        return None
    text = text.split(" to ")[-1].strip()  # "MCI to Dementia": the visit's new state
    if text not in DX_WORDS:
        raise InputDataError(f"unknown diagnosis {value!r} in column {column!r} on line {line} "
                             "(expected CN/NL/SMC, MCI/EMCI/LMCI or AD/Dementia)", path)
    return DX_WORDS[text]


def read_visit_table(path: "str | Path") -> pd.DataFrame:
    """Read an ADNIMERGE-shaped visit table (module docstring).

    Returns
    -------
    pandas.DataFrame
        Columns ``participant_id``, ``session_id``, ``months`` (float) and ``dx`` (``NC``,
        ``MCI``, ``AD`` or ``None``), one row per visit, sorted by participant and months.

    Raises
    ------
    InputDataError
        Unreadable table, missing columns, unknown diagnosis words, two rows for one visit;
        the message names the file and the lines.
    """
    path = Path(path)
    if not path.is_file():
        raise InputDataError("visit table not found", path)
    try:
        with open(path, encoding="utf-8-sig") as fh:
            header = fh.readline()
        sep = "\t" if "\t" in header else ","
        df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputDataError("visit table is not valid UTF-8", path) from None
    except Exception as exc:
        raise InputDataError(f"cannot read the visit table ({exc})", path) from None
    df.columns = [str(c).strip() for c in df.columns]
    if df.empty:
        raise InputDataError("visit table lists no visits", path)
    pid = _participant_ids(df, path)
    empty = np.flatnonzero((pid == "").to_numpy())
    if len(empty):
        raise InputDataError(f"empty participant id on line(s) {_lines(empty)}", path)
    months = _months(df, pid, path)
    ses_col = _column(df, "session_id")
    if ses_col is not None:
        ses = df[ses_col].str.strip()
        session = ses.where(ses.str.startswith("ses-"), "ses-" + ses)
    else:
        session = months.map(lambda m: f"ses-M{int(m):03d}")
    dx_col, bl_col = _column(df, "DX"), _column(df, "DX_bl")
    if dx_col is None and bl_col is None:
        raise InputDataError(f"visit table has no diagnosis column (DX or DX_bl; columns: {', '.join(df.columns)})",
                             path)
    dx = [_stage(v, i + 2, dx_col, path) if dx_col is not None else None
          for i, v in enumerate(df[dx_col] if dx_col is not None else [""] * len(df))]
    if bl_col is not None:
        for i, v in enumerate(df[bl_col]):
            if dx[i] is None and months.iloc[i] == 0:
                dx[i] = _stage(v, i + 2, bl_col, path)
    out = pd.DataFrame({"participant_id": pid.to_numpy(), "session_id": session.to_numpy(),
                        "months": months.to_numpy(dtype=float), "dx": dx, "line": np.arange(len(df)) + 2})
    dup = out.duplicated(["participant_id", "session_id"], keep=False).to_numpy()
    if dup.any():
        raise InputDataError(f"one visit is listed twice (lines {_lines(np.flatnonzero(dup))})", path)
    return out.sort_values(["participant_id", "months"], kind="stable").reset_index(drop=True)


def _month_text(months: float) -> str:
    return f"M{int(months):03d}"


def _reversal(dx: list[str], months: list[float]) -> str | None:
    """'AD at M024, then MCI at M036' for the first step back in a trajectory, else ``None``."""
    highest, at = -1, 0.0
    for d, m in zip(dx, months):
        if _STAGE[d] < highest:
            return f"{[k for k, v in _STAGE.items() if v == highest][0]} at {_month_text(at)}, then {d} at {_month_text(m)}"
        if _STAGE[d] > highest:
            highest, at = _STAGE[d], m
    return None


def _mci_label(t: float, later: list[tuple[float, str]], horizon: float) -> tuple[str, str]:
    """(label, rule) of an MCI visit at month ``t`` given the later diagnosed visits."""
    conversion = next((m for m, d in later if d == "AD"), None)
    if conversion is not None and conversion - t <= horizon:
        return "pMCI", f"rule 4: AD at {_month_text(conversion)}, {conversion - t:g} months later (<= {horizon:g})"
    if conversion is not None:
        return "MCI", (f"rule 6: AD only at {_month_text(conversion)}, {conversion - t:g} months later "
                       f"(after the {horizon:g}-month horizon)")
    follow = max((m for m, _ in later), default=t) - t
    if follow >= horizon:
        return "sMCI", f"rule 5: no AD in {follow:g} months of follow-up (>= {horizon:g})"
    return "MCI", f"rule 6: followed {follow:g} months without AD (< {horizon:g})"


def derive_labels(visits: pd.DataFrame, horizon_months: float = 36) -> tuple[pd.DataFrame, LabelSummary]:
    """Apply the rules of the module docstring to :func:`read_visit_table` output.

    Returns
    -------
    labels : pandas.DataFrame
        ``participant_id``, ``session_id``, ``diagnosis``, ``months``, ``rule``; one row per
        labelled visit.
    summary : LabelSummary
    """
    if not horizon_months > 0:
        raise ConfigError(f"--horizon-months must be > 0, got {horizon_months!r}")
    horizon = float(horizon_months)
    rows: list[dict[str, object]] = []
    summary = LabelSummary(visits=len(visits))
    for pid, group in visits.groupby("participant_id", sort=False):
        known = group[group["dx"].notna()]
        summary.no_diagnosis += len(group) - len(known)
        dx, months = list(known["dx"]), list(known["months"])
        reversal = _reversal(dx, months)
        if reversal is not None:
            summary.reverters += 1
            summary.reverter_visits += len(known)
            continue
        for i, (ses, m, d) in enumerate(zip(known["session_id"], months, dx)):
            if d == "MCI":
                label, rule = _mci_label(m, list(zip(months[i + 1:], dx[i + 1:])), horizon)
            else:
                label, rule = d, f"rule 3: {d} at this visit"
            rows.append({"participant_id": pid, "session_id": ses, "diagnosis": label, "months": int(m), "rule": rule})
    labels = pd.DataFrame(rows, columns=["participant_id", "session_id", "diagnosis", "months", "rule"])
    summary.participants = int(labels["participant_id"].nunique())
    order = ["NC", "MCI", "sMCI", "pMCI", "AD"]
    counts = labels["diagnosis"].value_counts()
    summary.labels = {k: int(counts[k]) for k in order if k in counts}
    return labels, summary


def write_label_table(labels: pd.DataFrame, path: "str | Path") -> Path:
    """Write :func:`derive_labels` output as a tab-separated label table (atomically)."""
    path = Path(path)
    atomic_write_text(path, labels.to_csv(sep="\t", index=False))
    return path
