"""The one tiny trained bundle shared by the explanation, report and GUI tests.

A demo cohort of :data:`N_SUBJECTS` subjects and an NC-vs-AD bundle trained with one epoch per
stage (:func:`tiny_config`) take a few minutes on a small CPU, so they are built once per test
session by the ``tiny_trained`` fixture of ``tests/conftest.py`` and, where pytest's cache is on,
kept in it (``.pytest_cache/d/anchorad-tiny/<hash>``) keyed on the source of ``anchorad_core``:
any change of the core retrains. Set ``ANCHORAD_TINY_FRESH=1`` to always train anew.
"""
from __future__ import annotations

import dataclasses
import hashlib
import shutil
from pathlib import Path

import anchorad_core

#: Subjects of the shared demo cohort, and the seed it is drawn with.
N_SUBJECTS = 16
SEED = 1
#: IG steps used by the shared explanation (the library default).
N_STEPS = 16


def tiny_config():
    """The demo configuration with one epoch (patience 1, batch 8) in every stage."""
    from anchorad_core.training.config import TrainConfig

    config = TrainConfig.demo(quick=True)
    config.phase1 = {m: dataclasses.replace(s, epochs=1, batch_size=8, patience=1) for m, s in config.phase1.items()}
    config.phase2 = {m: dataclasses.replace(s, epochs=1, batch_size=8, patience=1) for m, s in config.phase2.items()}
    return config


def core_hash() -> str:
    """Hash of the cohort size, seed and every source file of ``anchorad_core``."""
    root = Path(anchorad_core.__file__).parent
    h = hashlib.sha256(f"{N_SUBJECTS}:{SEED}".encode())
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def train_tiny(root: Path) -> None:
    """Write ``root/cohort`` (the demo cohort) and ``root/bundle`` (trained on it)."""
    from anchorad_core.data import make_demo_cohort
    from anchorad_core.workflows import train_bundle

    make_demo_cohort(root / "cohort", N_SUBJECTS, seed=SEED)
    train_bundle(root / "cohort", "NC-AD", root / "bundle", tiny_config(), device="cpu")


def train_tiny_cached(cache_dir: Path) -> Path:
    """The trained folder under ``cache_dir/<core hash>``, trained there first if missing."""
    root = cache_dir / core_hash()
    if not (root / "bundle" / "bundle.json").is_file():
        if root.exists():
            shutil.rmtree(root)
        building = root.with_name(root.name + ".building")
        if building.exists():
            shutil.rmtree(building)
        building.mkdir(parents=True)
        train_tiny(building)
        building.rename(root)
    return root


def complete_subject_dir(cohort: Path) -> Path:
    """The first subject folder of the cohort that has all four modalities."""
    from anchorad_core.data.subject import find_subject_files
    from anchorad_core.modality import ALL_MODALITIES

    for folder in sorted(cohort.glob("sub-*")):
        files = find_subject_files(folder)
        if all(files.has(m) for m in ALL_MODALITIES):
            return folder
    raise AssertionError("no complete subject in the demo cohort")
