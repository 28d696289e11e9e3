"""Shared test set-up and fixtures: seeded, CPU-only, offline.

The tiers are folders: ``unit/`` (fast, pure), ``integration/`` (trains tiny bundles, runs the
command line, end to end) and ``gui/`` (napari under Xvfb, marked ``gui`` here). Helper modules
(``toy_backbone``, ``tiny_setup``, ``gui_helpers``, ``pdf_pages``, the drivers) sit beside this
file; ``pythonpath = ["tests"]`` in ``pyproject.toml`` makes them importable.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

GUI_DIR = Path(__file__).parent / "gui"


def pytest_collection_modifyitems(config, items):
    """Mark every test under ``tests/gui`` ``gui``; skip that tier cleanly where no display exists.

    Without a display (pytest-xvfb found no Xvfb) pytest-qt's ``qapp`` aborts the whole process
    (``Fatal Python error``) and no result is printed at all.
    """
    for item in items:
        if GUI_DIR in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.gui)
    if os.environ.get("DISPLAY") or os.environ.get("QT_QPA_PLATFORM") == "offscreen":
        return
    skip = pytest.mark.skip(reason="no display: install Xvfb (scripts/install_system_deps.sh)")
    for item in items:
        if "gui" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    import numpy as np
    import torch

    torch.manual_seed(0)
    np.random.seed(0)
    yield


# --- the one tiny trained bundle (tiny_setup) ------------------------------------------------

@pytest.fixture(scope="session")
def tiny_trained(request, tmp_path_factory) -> Path:
    """Folder holding ``cohort/`` (16 demo subjects) and ``bundle/`` (NC-AD, one epoch a stage)."""
    from tiny_setup import train_tiny, train_tiny_cached

    cache = getattr(request.config, "cache", None)  # None with -p no:cacheprovider
    if os.environ.get("ANCHORAD_TINY_FRESH") or cache is None:
        root = tmp_path_factory.mktemp("tiny-bundle")
        train_tiny(root)
        return root
    return train_tiny_cached(Path(cache.mkdir("anchorad-tiny")))


@pytest.fixture(scope="session")
def tiny_bundle(tiny_trained) -> Path:
    """The tiny trained bundle."""
    return tiny_trained / "bundle"


@pytest.fixture(scope="session")
def tiny_cohort(tiny_trained) -> Path:
    """The demo cohort the tiny bundle was trained on."""
    return tiny_trained / "cohort"


@pytest.fixture(scope="session")
def tiny_subject(tiny_cohort) -> Path:
    """The first subject folder of the tiny cohort with all four modalities."""
    from tiny_setup import complete_subject_dir

    return complete_subject_dir(tiny_cohort)


@pytest.fixture(scope="session")
def tiny_pipeline(tiny_bundle):
    """A CPU :class:`~anchorad_core.inference.DiagnosisPipeline` of the tiny bundle."""
    from anchorad_core.inference import DiagnosisPipeline

    return DiagnosisPipeline(tiny_bundle, device="cpu")


@pytest.fixture(scope="session")
def explained(tiny_pipeline, tiny_subject):
    """``(subject, diagnosis, explanation, seconds)`` of the complete subject, IG included."""
    from anchorad_core.explain import explain_subject
    from tiny_setup import N_STEPS

    subject = tiny_pipeline.load_subject(tiny_subject)
    start = time.perf_counter()
    diagnosis, explanation = explain_subject(tiny_pipeline, subject, n_steps=N_STEPS)
    return subject, diagnosis, explanation, time.perf_counter() - start


# --- GUI -------------------------------------------------------------------------------------

@pytest.fixture
def anchorad_plugin():
    """The plugin's manifest registered with npe2 (also when the package is not installed)."""
    from anchorad_gui.launch import ensure_registered

    ensure_registered()
    yield "anchorad"


@pytest.fixture
def gui_viewer(make_napari_viewer, anchorad_plugin):
    """A viewer with every AnchorAD panel docked: ``(viewer, {name: widget})``."""
    from anchorad_gui.launch import dock_panels

    viewer = make_napari_viewer()
    widgets = dock_panels(viewer)
    return viewer, widgets
