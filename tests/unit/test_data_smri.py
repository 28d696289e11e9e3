"""sMRI reader, preprocessing and geometry round trip (shipped real T1)."""
from __future__ import annotations

import gzip
import json
import shutil

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from anchorad_core.data import PreprocessConfig, SmriGeometry, cube_to_native, read_smri
from anchorad_core.data.templates import template_path
from anchorad_core.errors import InputDataError

T1 = template_path("t1_demo.nii.gz")


@pytest.fixture(scope="module")
def t1_cube():
    return read_smri(T1)


def test_shipped_t1_to_cube(t1_cube):
    cube, geom = t1_cube
    assert cube.shape == (64, 64, 64) and cube.dtype == np.float32
    assert cube.min() == 0.0 and cube.max() == 1.0
    assert geom.native_shape == (91, 109, 91)
    # the file is LAS: the first axis is flipped to reach RAS
    assert geom.ornt[0] == [0.0, -1.0]
    # the whole foreground fits: the largest extent fills the cube exactly
    assert max(geom.resized_shape) == 64
    # RAS: the cube affine has a positive diagonal
    assert np.all(np.diag(geom.cube_affine)[:3] > 0)


def test_geometry_json_round_trip(t1_cube):
    _, geom = t1_cube
    again = SmriGeometry.from_dict(json.loads(json.dumps(geom.to_dict())))
    assert again == geom
    np.testing.assert_allclose(again.cube_affine, geom.cube_affine)


def _cube_blob_from_native(native_blob, geom):
    """Sample a native-space map onto the cube through the cube affine (independent path)."""
    inv = np.linalg.inv(np.asarray(geom.native_affine))
    ijk = np.stack(np.meshgrid(*[np.arange(geom.cube)] * 3, indexing="ij"), -1).reshape(-1, 3)
    world = ijk @ geom.cube_affine[:3, :3].T + geom.cube_affine[:3, 3]
    nat = world @ inv[:3, :3].T + inv[:3, 3]
    return ndimage.map_coordinates(native_blob, nat.T, order=1).reshape((geom.cube,) * 3)


def test_cube_to_native_puts_blob_back(t1_cube):
    _, geom = t1_cube
    native = np.zeros(geom.native_shape, np.float32)
    native[18:26, 60:68, 40:48] = 1.0  # a blob in the left (native i small = subject left? LAS: +x) hemisphere
    cube_map = _cube_blob_from_native(native, geom)
    assert cube_map.sum() > 5
    back = cube_to_native(cube_map, geom)
    assert back.shape == geom.native_shape
    com_back = np.array(ndimage.center_of_mass(back))
    com_true = np.array(ndimage.center_of_mass(native))
    assert np.linalg.norm(com_back - com_true) < 1.0  # within one native voxel
    assert back[22, 64, 44] > 0.5 and back[70, 64, 44] == 0


def test_cube_to_native_on_token_grid(t1_cube):
    _, geom = t1_cube
    tokens = np.zeros((6, 6, 6), np.float32)
    tokens[0, 3, 3] = 1.0  # leftmost token column in RAS = subject's left
    back = cube_to_native(tokens, geom, order=0)
    i_hot = np.nonzero(back.sum(axis=(1, 2)))[0]
    # native axis 0 is L->R flipped (LAS): RAS-left lands at large native i
    assert i_hot.min() > geom.native_shape[0] // 2


def test_reoriented_file_gives_same_cube(tmp_path, t1_cube):
    img = nib.load(str(T1))
    ras = nib.as_closest_canonical(img)
    path = tmp_path / "sub-x_T1w.nii.gz"
    nib.save(ras, str(path))
    cube2, geom2 = read_smri(path)
    np.testing.assert_allclose(cube2, t1_cube[0], atol=1e-5)
    assert geom2.ornt[0] == [0.0, 1.0]


def test_fixed_spacing_pads_or_crops(tmp_path):
    cube, geom = read_smri(T1, PreprocessConfig(smri_cube=32, smri_spacing_mm=4.0))
    assert cube.shape == (32, 32, 32)
    assert max(geom.resized_shape) > 32 and min(geom.cube_offset) < 0  # cropped borders
    back = cube_to_native(np.ones((32, 32, 32), np.float32), geom)
    assert back.shape == geom.native_shape


def _save(tmp_path, data, name="sub-x_T1w.nii.gz"):
    path = tmp_path / name
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    return path


@pytest.mark.parametrize(
    "shape,needle",
    [((20, 20), "must be 3-D"), ((8, 8, 8, 2, 2), "must be 3-D"), ((8, 8, 8, 3), "3 volumes")],
)
def test_bad_dimensionality(tmp_path, shape, needle):
    path = _save(tmp_path, np.random.default_rng(0).random(shape).astype(np.float32))
    with pytest.raises(InputDataError, match=needle) as info:
        read_smri(path)
    assert str(path) in str(info.value)


def test_single_volume_4d_is_accepted(tmp_path):
    data = np.zeros((20, 22, 24, 1), np.float32)
    data[4:16, 4:18, 4:20, 0] = np.random.default_rng(0).random((12, 14, 16)) + 1
    cube, _ = read_smri(_save(tmp_path, data), PreprocessConfig(smri_cube=16))
    assert cube.shape == (16, 16, 16)


def test_nan_rejected(tmp_path):
    data = np.random.default_rng(0).random((10, 10, 10)).astype(np.float32)
    data[3, 3, 3] = np.nan
    data[4, 4, 4] = np.inf
    with pytest.raises(InputDataError, match=r"1 NaN and 1 infinite"):
        read_smri(_save(tmp_path, data))


def test_non_gzip_with_gz_name(tmp_path):
    path = tmp_path / "sub-x_T1w.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)), str(tmp_path / "a.nii"))
    shutil.copy(tmp_path / "a.nii", path)
    with pytest.raises(InputDataError, match="not gzip-compressed") as info:
        read_smri(path)
    assert info.value.path == path


def test_truncated_gzip(tmp_path):
    raw = T1.read_bytes()
    path = tmp_path / "sub-x_T1w.nii.gz"
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputDataError, match="truncated or corrupt") as info:
        read_smri(path)
    assert str(path) in str(info.value)


def test_garbage_and_wrong_name(tmp_path):
    bad = tmp_path / "sub-x_T1w.nii.gz"
    bad.write_bytes(gzip.compress(b"not a nifti at all" * 10))
    with pytest.raises(InputDataError, match="not a readable NIfTI"):
        read_smri(bad)
    (tmp_path / "x.mgz").write_bytes(b"\0" * 400)
    with pytest.raises(InputDataError, match="NIfTI file"):
        read_smri(tmp_path / "x.mgz")
    with pytest.raises(InputDataError, match="not found"):
        read_smri(tmp_path / "missing_T1w.nii.gz")


def test_constant_image(tmp_path):
    with pytest.raises(InputDataError, match="constant"):
        read_smri(_save(tmp_path, np.ones((10, 10, 10), np.float32)))
