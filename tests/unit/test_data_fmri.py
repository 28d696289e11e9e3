"""fMRI readers: shipped real ROI table, nibabel's real 4-D NIfTI, synthetic BOLD, bad files."""
from __future__ import annotations

import json
import os
import shutil

import nibabel as nib
import numpy as np
import pytest

from anchorad_core.data import PreprocessConfig, read_fmri
from anchorad_core.data.fmri import normalise_atlas_name, prepare_roi_series
from anchorad_core.data.templates import atlas_labels, template_path
from anchorad_core.errors import InputDataError

REAL_4D = os.path.join(os.path.dirname(nib.__file__), "tests", "data", "example4d.nii.gz")


@pytest.fixture()
def real_table(tmp_path):
    npy = tmp_path / "sub-x_task-rest_timeseries.npy"
    shutil.copy(template_path("rest_roi_timeseries_schaefer400.npy"), npy)
    shutil.copy(template_path("rest_roi_timeseries_schaefer400.json"), tmp_path / "sub-x_task-rest_timeseries.json")
    return npy


def test_real_roi_table(real_table):
    x, info = read_fmri(real_table)
    assert x.shape == (400, 48) and x.dtype == np.float32
    assert info["atlas"] == "schaefer400_17n" and info["n_frames"] == 652
    assert info["frame_window"] == [302, 350]  # central window (652 - 48) // 2
    raw = np.load(real_table)
    expected = raw[:, 302:350]
    med = np.median(expected, axis=1, keepdims=True)
    iqr = np.subtract(*np.percentile(expected, [75, 25], axis=1))[:, None]
    np.testing.assert_allclose(x, (expected - med) / iqr, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.median(x, axis=1), 0, atol=1e-5)


def test_resample_policy(real_table):
    x, info = read_fmri(real_table, PreprocessConfig(fmri_frame_policy="resample", fmri_frames=100))
    assert x.shape == (400, 100) and info["resampled_from"] == 652


def test_tsv_timepoints_by_rows_with_header(tmp_path):
    raw = np.load(template_path("rest_roi_timeseries_schaefer400.npy"))[:, :60]
    tsv = tmp_path / "sub-x_timeseries.tsv"
    header = "\t".join(f"r{i}" for i in range(400))
    tsv.write_text(header + "\n" + "\n".join("\t".join(f"{v:.6f}" for v in row) for row in raw.T) + "\n")
    (tmp_path / "sub-x_timeseries.json").write_text(json.dumps({"Atlas": "Schaefer2018_400Parcels_17Networks_order"}))
    x, info = read_fmri(tsv)
    assert x.shape == (400, 48) and info["axis_order"] == ["timepoint", "parcel"]
    x_npy, _ = prepare_roi_series(raw)
    np.testing.assert_allclose(x, x_npy, atol=1e-3)


def test_7network_table_is_reordered(tmp_path):
    raw = np.load(template_path("rest_roi_timeseries_schaefer400.npy"))[:, :48]
    idx = atlas_labels()["group_fc_index"].to_numpy() - 1
    seven = np.empty_like(raw)
    seven[idx] = raw  # row idx[i] of the 7N table is 17N parcel i
    np.save(tmp_path / "t_timeseries.npy", seven)
    (tmp_path / "t_timeseries.json").write_text(json.dumps({"Atlas": "schaefer400_7n", "AxisOrder": ["parcel", "timepoint"]}))
    x, _ = read_fmri(tmp_path / "t_timeseries.npy")
    np.testing.assert_allclose(x, prepare_roi_series(raw)[0], atol=1e-5)


def test_atlas_names():
    assert normalise_atlas_name("Schaefer2018_400Parcels_17Networks_order") == "schaefer400_17n"
    assert normalise_atlas_name("schaefer400_17n") == "schaefer400_17n"
    assert normalise_atlas_name("Schaefer2018_400Parcels_7Networks_order") == "schaefer400_7n"
    assert normalise_atlas_name("AAL3") is None


def _table(tmp_path, arr, meta):
    np.save(tmp_path / "s_timeseries.npy", arr)
    if meta is not None:
        (tmp_path / "s_timeseries.json").write_text(json.dumps(meta))
    return tmp_path / "s_timeseries.npy"


META = {"Atlas": "schaefer400_17n", "AxisOrder": ["parcel", "timepoint"]}


@pytest.mark.parametrize(
    "arr,meta,needle",
    [
        (np.zeros((400, 60)), None, "needs a JSON sidecar"),
        (np.zeros((400, 60)), {"AxisOrder": ["parcel", "timepoint"]}, "does not name the atlas"),
        (np.zeros((400, 60)), {"Atlas": "AAL", "AxisOrder": ["parcel", "timepoint"]}, "unsupported atlas"),
        (np.zeros((400, 60)), {"Atlas": "schaefer400_17n"}, "AxisOrder"),
        (np.zeros((200, 60)), META, "has 200 parcels"),
        (np.zeros((400, 30)), META, "too few frames: 30"),
        (np.full((400, 60), np.nan), META, "NaN"),
        (np.zeros((400, 60, 2)), META, "must be 2-D"),
    ],
)
def test_bad_tables(tmp_path, arr, meta, needle):
    path = _table(tmp_path, arr, meta)
    with pytest.raises(InputDataError, match=needle) as info:
        read_fmri(path)
    assert info.value.path is not None and info.value.path.parent == tmp_path


def test_corrupt_npy_and_bad_json(tmp_path):
    path = tmp_path / "s_timeseries.npy"
    path.write_bytes(b"garbage")
    (tmp_path / "s_timeseries.json").write_text(json.dumps(META))
    with pytest.raises(InputDataError, match="not a readable .npy"):
        read_fmri(path)
    (tmp_path / "s_timeseries.json").write_text("{not json")
    with pytest.raises(InputDataError, match="invalid JSON") as info:
        read_fmri(path)
    assert info.value.path.name == "s_timeseries.json"


def test_real_4d_nifti_too_few_frames():
    with pytest.raises(InputDataError, match="too few frames: the run has 2 volumes") as info:
        read_fmri(REAL_4D)
    assert "example4d.nii.gz" in str(info.value)


def test_real_4d_nifti_outside_atlas_space_is_rejected():
    # example4d is a real but tiny, non-MNI run: with a 2-frame model it gets through the
    # frame check, and the atlas coverage check names the problem
    with pytest.raises(InputDataError, match="covers only") as info:
        read_fmri(REAL_4D, PreprocessConfig(fmri_frames=2, fmri_min_roi_coverage=0.9))
    assert "example4d" in str(info.value)


def test_synthetic_bold_in_mni(tmp_path):
    aff = np.diag([6.0, 6.0, 6.0, 1.0])
    aff[:3, 3] = [-90, -126, -72]
    data = np.random.default_rng(0).normal(100, 5, (31, 37, 31, 60)).astype(np.float32)
    path = tmp_path / "sub-x_task-rest_bold.nii.gz"
    nib.save(nib.Nifti1Image(data, aff), str(path))
    x, info = read_fmri(path)
    assert x.shape == (400, 48) and info["kind"] == "bold"
    assert len(info["missing_rois"]) < 40
    # a 3-D file named *_bold is rejected
    nib.save(nib.Nifti1Image(data[..., 0], aff), str(tmp_path / "sub-y_bold.nii.gz"))
    with pytest.raises(InputDataError, match="must be 4-D"):
        read_fmri(tmp_path / "sub-y_bold.nii.gz")
