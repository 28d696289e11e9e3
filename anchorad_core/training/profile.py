"""Where the wall time of a cross-validation goes: seconds per fold and part.

Every timed span goes through :func:`timed` (a context manager adding the span's seconds to
a dict entry). :func:`fold_profile` groups a fold's entries into :data:`PARTS`;
:func:`profile_summary` adds the totals and the ratio of the whole ``evaluate`` to the main
training runs inside it (phase 1, its feature cache, phase 2), and :func:`profile_table`
prints them (``anchorad evaluate --profile``).
"""
from __future__ import annotations

import contextlib
import time
from typing import Any, Iterator, Sequence

#: Parts of a fold, in the order they run: the main training (phase 1, the phase-1 feature
#: cache and its cross-fitting, phase 2), the baselines (classical, late and output fusion),
#: the ablation variants (phase 2 retrained) and the scoring of the held-out subjects.
PARTS: tuple[str, ...] = ("phase 1", "features", "phase 2", "baselines", "ablation", "scoring")

#: The parts a plain ``anchorad train`` run also spends.
MAIN_TRAIN_PARTS: tuple[str, ...] = ("phase 1", "features", "phase 2")

#: Trainer stage keys (``result.seconds``) -> part. Keys ``phase1.<m>`` / ``phase2.<m>`` match by prefix.
STAGE_PARTS: dict[str, str] = {"phase1": "phase 1", "feature_cache": "features", "cross_fitting": "features",
                               "phase2": "phase 2"}


@contextlib.contextmanager
def timed(seconds: dict[str, float], key: str) -> Iterator[None]:
    """Add the wall-clock seconds of the ``with`` body to ``seconds[key]`` (also when it raises)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds[key] = seconds.get(key, 0.0) + time.perf_counter() - start


def part_of(key: str) -> str:
    """The :data:`PARTS` entry of a seconds key (``phase1.smri`` -> ``phase 1``; a part name is itself)."""
    if key in PARTS:
        return key
    head = key.split(".", 1)[0]
    if head in STAGE_PARTS:
        return STAGE_PARTS[head]
    raise KeyError(f"no profile part for timing key {key!r}")


def fold_profile(seconds: dict[str, float], total_s: float) -> dict[str, Any]:
    """One fold: ``parts`` (seconds per :data:`PARTS`), ``other`` (the rest of ``total_s``:
    splitting, bookkeeping) and ``total_s``, so that ``sum(parts) + other == total_s``."""
    parts = {p: 0.0 for p in PARTS}
    for key, value in seconds.items():
        parts[part_of(key)] += value
    return {"parts": parts, "other_s": total_s - sum(parts.values()), "total_s": total_s}


def profile_summary(folds: Sequence[dict[str, Any]], wall_s: float, shared_features_s: float = 0.0) -> dict[str, Any]:
    """Totals over ``folds`` and ``evaluate_over_main_train``: ``wall_s`` / the main training time.

    The main training time sums the folds' :data:`MAIN_TRAIN_PARTS` and ``shared_features_s``:
    phase-1 features computed once for every fold (frozen backbones) instead of in each.
    """
    totals = {p: sum(f["parts"][p] for f in folds) for p in PARTS}
    main = sum(totals[p] for p in MAIN_TRAIN_PARTS) + shared_features_s
    folds_s = sum(f["total_s"] for f in folds)
    return {
        "folds": list(folds),
        "totals": totals,
        "other_s": sum(f["other_s"] for f in folds),
        "folds_s": folds_s,
        "shared_features_s": shared_features_s,
        "outside_folds_s": wall_s - folds_s,
        "main_train_s": main,
        "wall_s": wall_s,
        "evaluate_over_main_train": wall_s / main if main > 0 else float("nan"),
    }


def profile_table(summary: dict[str, Any]) -> str:
    """Seconds per fold and part, a total row, what ran outside the folds, and the ratio line."""
    header = ["task", "repeat", "fold", *PARTS, "other", "fold total"]
    body = [[str(f.get("task", "")), str(f.get("repeat", 0)), str(f.get("fold", 0)),
             *(f"{f['parts'][p]:.1f}" for p in PARTS), f"{f['other_s']:.1f}", f"{f['total_s']:.1f}"]
            for f in summary["folds"]]
    body.append(["total", "", "", *(f"{summary['totals'][p]:.1f}" for p in PARTS), f"{summary['other_s']:.1f}",
                 f"{summary['folds_s']:.1f}"])
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if i > 2 else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths)))
             for row in [header, ["-" * w for w in widths], *body]]
    lines.append(f"outside the folds: {summary['outside_folds_s']:.1f} s (loading, summary features, and "
                 f"{summary['shared_features_s']:.1f} s of phase-1 features computed once for every fold)")
    lines.append(f"evaluate wall {summary['wall_s']:.1f} s / main train (phase 1 + features + phase 2) "
                 f"{summary['main_train_s']:.1f} s = {summary['evaluate_over_main_train']:.2f}x")
    return "\n".join(lines)
