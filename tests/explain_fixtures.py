"""Session fixtures shared by the explanation and report tests (imported by those test files).

A small demo cohort and a bundle trained with one epoch per stage are built once per test
session (about a minute on two CPU cores); the explanation of one complete subject with
Integrated Gradients is computed once and shared.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

#: IG steps used by the shared explanation (the library default).
N_STEPS = 16


def _tiny_config():
    from anchorad_core.training.config import TrainConfig

    config = TrainConfig.demo(quick=True)
    config.phase1 = {m: dataclasses.replace(s, epochs=1, batch_size=8, patience=1) for m, s in config.phase1.items()}
    config.phase2 = {m: dataclasses.replace(s, epochs=1, batch_size=8, patience=1) for m, s in config.phase2.items()}
    return config


@pytest.fixture(scope="session")
def explain_bundle(tmp_path_factory):
    """``(bundle_path, cohort_root)`` of a tiny NC-vs-AD bundle on a 20-subject demo cohort."""
    from anchorad_core.data import make_demo_cohort
    from anchorad_core.workflows import train_bundle

    root = tmp_path_factory.mktemp("explain")
    cohort = root / "cohort"
    make_demo_cohort(cohort, 20, 1)
    bundle, _ = train_bundle(cohort, "NC-AD", root / "bundle", _tiny_config(), device="cpu")
    return Path(bundle), cohort


@pytest.fixture(scope="session")
def explain_pipeline(explain_bundle):
    from anchorad_core.inference import DiagnosisPipeline

    return DiagnosisPipeline(explain_bundle[0], device="cpu")


def complete_subject_dir(cohort: Path) -> Path:
    """The first subject folder of the cohort that has all four modalities."""
    from anchorad_core.data.subject import find_subject_files
    from anchorad_core.modality import ALL_MODALITIES

    for folder in sorted(cohort.glob("sub-*")):
        files = find_subject_files(folder)
        if all(files.has(m) for m in ALL_MODALITIES):
            return folder
    raise AssertionError("no complete subject in the demo cohort")


@pytest.fixture(scope="session")
def explained(explain_bundle, explain_pipeline):
    """``(subject, diagnosis, explanation, seconds)`` for a complete subject, IG included."""
    from anchorad_core.explain import explain_subject

    subject = explain_pipeline.load_subject(complete_subject_dir(explain_bundle[1]))
    start = time.perf_counter()
    diagnosis, explanation = explain_subject(explain_pipeline, subject, n_steps=N_STEPS)
    return subject, diagnosis, explanation, time.perf_counter() - start
