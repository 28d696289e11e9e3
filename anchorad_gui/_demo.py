"""Where the shipped demo subject and demo bundle are (``resources/demo/``), with a fallback.

The demo subject is looked up as the first ``sub-*`` folder under the shipped resource
``demo/`` (searched two levels deep). When the installation ships none (a development
checkout before the demo was added), a small SYNTHETIC demo cohort is generated once with
:func:`anchorad_core.data.make_demo_cohort` in the user cache
(``$ANCHORAD_CACHE`` or ``~/.cache/anchorad``) and its first complete subject is used.
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["demo_subject_dir", "demo_bundle_dir", "shipped_demo_subject", "complete_subject"]

#: Seed and size of the fallback demo cohort.
FALLBACK_SEED = 0
FALLBACK_SUBJECTS = 4


def _demo_root() -> Path | None:
    from anchorad_core import AnchorADError, resource_path

    try:
        return resource_path("demo")
    except AnchorADError:
        return None


def complete_subject(root: "str | Path") -> Path | None:
    """The first ``sub-*`` folder under ``root`` (two levels deep) with the most modalities."""
    from anchorad_core import ALL_MODALITIES, find_subject_files

    root = Path(root)
    candidates = sorted(p for p in [*root.glob("sub-*"), *root.glob("*/sub-*")] if p.is_dir())
    best, best_n = None, -1
    for folder in candidates:
        try:
            files = find_subject_files(folder)
        except Exception:
            continue
        n = sum(files.has(m) for m in ALL_MODALITIES)
        if n > best_n:
            best, best_n = folder, n
        if n == len(ALL_MODALITIES):
            break
    return best


def shipped_demo_subject() -> Path | None:
    """The demo subject shipped in ``resources/demo/``, or ``None``."""
    root = _demo_root()
    return complete_subject(root) if root is not None else None


def _cache_root() -> Path:
    return Path(os.environ.get("ANCHORAD_CACHE") or Path.home() / ".cache" / "anchorad")


def demo_subject_dir(generate: bool = True) -> Path | None:
    """The demo subject folder: shipped, else a generated SYNTHETIC one (``generate=True``)."""
    shipped = shipped_demo_subject()
    if shipped is not None or not generate:
        return shipped
    from anchorad_core import make_demo_cohort

    cohort = _cache_root() / f"demo-cohort-{FALLBACK_SUBJECTS}-seed{FALLBACK_SEED}"
    if not (cohort / "participants.tsv").is_file():
        make_demo_cohort(cohort, FALLBACK_SUBJECTS, seed=FALLBACK_SEED, overwrite=True)
    return complete_subject(cohort)


def demo_bundle_dir() -> Path | None:
    """The shipped demo model bundle (``resources/demo/bundle``), or ``None``."""
    root = _demo_root()
    if root is None:
        return None
    for candidate in (root / "bundle", *sorted(root.glob("*bundle*"))):
        if (candidate / "bundle.json").is_file():
            return candidate
    return None
