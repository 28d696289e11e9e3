"""napari plugin: manifest, subject-folder reader, sample data, the canvas is not blank."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from gui_helpers import open_and_wait  # noqa: E402

pytestmark = pytest.mark.gui


def test_manifest_is_valid():
    from pathlib import Path

    from npe2 import PluginManifest

    import anchorad_gui

    manifest = PluginManifest.from_file(Path(anchorad_gui.__file__).with_name("napari.yaml"))
    manifest.validate_imports()
    assert manifest.name == "anchorad"
    assert {w.display_name for w in manifest.contributions.widgets} == {"Subject", "Diagnose", "Inspect", "Report"}
    assert manifest.contributions.readers[0].accepts_directories
    assert [s.key for s in manifest.contributions.sample_data] == ["demo_subject"]


def test_reader_refuses_other_paths(tmp_path):
    from anchorad_gui._reader import napari_get_reader

    (tmp_path / "notes").mkdir()
    assert napari_get_reader(str(tmp_path / "notes")) is None
    assert napari_get_reader(str(tmp_path / "x.png")) is None


def test_reader_opens_a_subject_folder_with_world_scales(make_napari_viewer, anchorad_plugin, tiny_subject):
    import nibabel as nib

    viewer = make_napari_viewer()
    viewer.open(str(tiny_subject), plugin="anchorad")
    sid = tiny_subject.name
    assert [layer.name for layer in viewer.layers] == [f"{sid} T1", f"{sid} fMRI"]
    t1, fmri = viewer.layers[f"{sid} T1"], viewer.layers[f"{sid} fMRI"]

    img = nib.as_closest_canonical(nib.load(str(next((tiny_subject / "anat").glob("*_T1w.nii*")))))
    ras = np.asarray(img.dataobj, dtype=np.float32)
    # RAS+ reoriented, shown as (z, y, x) in millimetres
    assert t1.data.shape == ras.shape[::-1]
    np.testing.assert_allclose(t1.data, ras.transpose(2, 1, 0))
    np.testing.assert_allclose(t1.scale, np.abs(np.diag(img.affine)[:3])[::-1])
    np.testing.assert_allclose(t1.translate, img.affine[:3, 3][::-1])
    # a world point maps to the same voxel as nibabel says
    voxel = np.array([10, 20, 30])
    world_xyz = img.affine[:3, :3] @ voxel + img.affine[:3, 3]
    np.testing.assert_allclose(t1.world_to_data(world_xyz[::-1]), voxel[::-1], atol=1e-6)

    # the ROI table painted into the atlas: (t, z, y, x), a time slider, TR as the time step
    assert fmri.ndim == 4
    assert fmri.data.shape[1:] == t1.data.shape  # demo T1 and atlas share the MNI 2 mm grid
    assert fmri.data.shape[0] == fmri.metadata["anchorad"]["n_frames"]
    assert fmri.scale[0] == pytest.approx(2.0)
    assert viewer.dims.ndim == 4
    frame = np.asarray(fmri.data[3])
    assert frame.shape == t1.data.shape and np.count_nonzero(frame) > 1000


def test_sample_data_loads(make_napari_viewer, anchorad_plugin, tiny_subject, monkeypatch):
    from anchorad_gui import _demo

    if _demo.shipped_demo_subject() is None:  # before the demo subject is shipped
        monkeypatch.setattr(_demo, "shipped_demo_subject", lambda: tiny_subject)
    viewer = make_napari_viewer()
    viewer.open_sample("anchorad", "demo_subject")
    roles = [layer.metadata["anchorad"]["role"] for layer in viewer.layers]
    assert roles[0] == "t1"
    assert viewer.layers[0].data.ndim == 3 and viewer.layers[0].metadata["anchorad"]["sample"]


def test_screenshot_is_not_blank(make_napari_viewer, anchorad_plugin, tiny_subject, qtbot):
    from anchorad_gui.launch import dock_panels

    viewer = make_napari_viewer(show=True)
    dock_panels(viewer)
    open_and_wait(qtbot, viewer, tiny_subject)
    qtbot.wait(200)
    canvas = viewer.screenshot(canvas_only=True, flash=False)
    gray = canvas[..., :3].mean(axis=-1)
    assert gray.std() > 10, "the canvas looks blank"
    assert (gray > 40).mean() > 0.03, "too little of the brain is visible"
    window = viewer.screenshot(canvas_only=False, flash=False)
    assert window.shape[0] > canvas.shape[0] and window.shape[1] > canvas.shape[1]
