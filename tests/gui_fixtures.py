"""Fixtures of the GUI tests: a tiny trained bundle, a complete demo subject, the plugin registered.

The bundle is trained once per session (demo cohort of 16 subjects, every stage 1 epoch), as
in ``tests/test_end_to_end.py``. Because that takes a few minutes on a small CPU, the cohort and
bundle are kept in pytest's cache (``.pytest_cache/d/anchorad-gui/<hash>``), keyed on the
source of ``anchorad_core``: any change of the core retrains. Set ``ANCHORAD_GUI_FRESH=1`` to
always train anew.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

import anchorad_core

N_SUBJECTS = 16
SEED = 1


def _core_hash() -> str:
    root = Path(anchorad_core.__file__).parent
    h = hashlib.sha256(f"{N_SUBJECTS}:{SEED}".encode())
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _train(root: Path) -> None:
    from anchorad_core.data import make_demo_cohort
    from anchorad_core.training.config import TrainConfig
    from anchorad_core.workflows import train_bundle

    make_demo_cohort(root / "cohort", N_SUBJECTS, seed=SEED)
    config = TrainConfig.demo(quick=True)
    for stage in (*config.phase1.values(), *config.phase2.values()):
        stage.epochs, stage.patience = 1, 1
    train_bundle(root / "cohort", "NC-AD", root / "bundle", config, device="cpu")


@pytest.fixture(scope="session")
def gui_trained(request, tmp_path_factory) -> Path:
    """Folder holding ``cohort/`` (16 demo subjects) and ``bundle/`` (NC-AD, tiny)."""
    cache = getattr(request.config, "cache", None)  # None with -p no:cacheprovider
    if os.environ.get("ANCHORAD_GUI_FRESH") or cache is None:
        root = tmp_path_factory.mktemp("gui-bundle")
        _train(root)
        return root
    root = Path(cache.mkdir("anchorad-gui")) / _core_hash()
    if not (root / "bundle" / "bundle.json").is_file():
        if root.exists():
            shutil.rmtree(root)
        building = root.with_name(root.name + ".building")
        if building.exists():
            shutil.rmtree(building)
        building.mkdir(parents=True)
        _train(building)
        building.rename(root)
    return root


@pytest.fixture(scope="session")
def gui_bundle(gui_trained) -> Path:
    """The tiny trained bundle."""
    return gui_trained / "bundle"


@pytest.fixture(scope="session")
def gui_subject(gui_trained) -> Path:
    """A demo subject with all four modalities."""
    from anchorad_gui._demo import complete_subject

    folder = complete_subject(gui_trained / "cohort")
    assert folder is not None
    return folder


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


def wait_idle(qtbot, session, timeout: int = 240_000) -> None:
    """Wait until no AnchorAD job runs on ``session``."""
    qtbot.waitUntil(lambda: not session.busy, timeout=timeout)


def open_and_wait(qtbot, viewer, folder, timeout: int = 120_000):
    """Open a subject folder through the Subject panel's path and wait for it."""
    from anchorad_gui._session import session_for
    from anchorad_gui._subject_panel import open_subject

    session = session_for(viewer)
    open_subject(viewer, folder)
    wait_idle(qtbot, session, timeout)
    return session
