"""Bring your own atlas: a synthetic label image + table parcellates a tiny 4-D BOLD run."""
from __future__ import annotations

import dataclasses
import json

import nibabel as nib
import numpy as np
import pytest

from anchorad_core.data import PreprocessConfig, read_fmri
from anchorad_core.data.atlas import atlas_paths_in, copy_atlas_files, merge_label_images, read_label_table
from anchorad_core.data.fmri import prepare_roi_series
from anchorad_core.errors import ConfigError, InputDataError

#: 4 mm voxels, MNI-like origin.
AFFINE = np.array([[4.0, 0, 0, -16], [0, 4.0, 0, -16], [0, 0, 4.0, -16], [0, 0, 0, 1]])
SHAPE = (8, 8, 8)
#: Table order (ROI order of the model) differs from the label values, which are not 1..N.
TABLE = [(30, "Thalamus_L", "Subcortex"), (10, "Visual_1", "Vis"), (20, "Default_1", "Default")]
FRAMES = 60


def _label_data() -> np.ndarray:
    data = np.zeros(SHAPE, dtype=np.int16)
    data[0:3, :, :4] = 10
    data[3:6, :, :4] = 20
    data[:, :, 4:7] = 30
    data[7, 7, 7] = 99  # a label the table does not list: left out
    return data


def _write_atlas(folder, table=TABLE, data=None):
    folder.mkdir(parents=True, exist_ok=True)
    image = folder / "my_atlas.nii.gz"
    nib.save(nib.Nifti1Image(_label_data() if data is None else data, AFFINE), str(image))
    labels = folder / "my_atlas.tsv"
    labels.write_text("index\tname\tnetwork\n" + "".join(f"{i}\t{n}\t{w}\n" for i, n, w in table))
    return image, labels


def _config(image, labels, **kw) -> PreprocessConfig:
    return PreprocessConfig(fmri_atlas="my3", fmri_atlas_image=str(image), fmri_atlas_labels=str(labels),
                            fmri_n_rois=len(TABLE), **kw)


def _signals() -> dict[int, np.ndarray]:
    t = np.arange(FRAMES)
    return {10: np.sin(t / 3.0), 20: np.cos(t / 5.0) * 2.0, 30: (t % 7) - 3.0, 99: np.full(FRAMES, 50.0)}


def _write_bold(path, affine=AFFINE, shape=SHAPE, labels_on_grid=None):
    labels = _label_data() if labels_on_grid is None else labels_on_grid
    rng = np.random.default_rng(0)
    data = rng.normal(0.0, 0.01, size=(*shape, FRAMES)).astype(np.float32) + 100.0
    for label, signal in _signals().items():
        data[labels == label] += signal.astype(np.float32)
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


@pytest.fixture()
def atlas(tmp_path):
    return _write_atlas(tmp_path / "atlas")


def test_bold_is_parcellated_with_the_users_atlas_in_table_order(tmp_path, atlas):
    config = _config(*atlas)
    bold = _write_bold(tmp_path / "sub-x_task-rest_bold.nii.gz")
    series, info = read_fmri(bold, config)
    labels, data = _label_data(), nib.load(str(bold)).get_fdata()
    means = np.stack([data[labels == label].mean(axis=0) for label, _, _ in TABLE])
    np.testing.assert_allclose(series, prepare_roi_series(means, config)[0], atol=1e-3)
    assert series.shape == (3, config.fmri_frames)
    assert info["atlas"] == "my3" and info["atlas_sha256"] == config.fmri_atlas_sha256
    assert info["missing_rois"] == []


def test_atlas_on_another_grid_is_resampled_to_the_run(tmp_path, atlas):
    fine = np.eye(4)
    fine[:3, :3] *= 2.0
    fine[:3, 3] = -17.0  # 2 mm voxels whose centres fall inside the 4 mm parcels
    shape = (16, 16, 16)
    ijk = np.indices(shape).reshape(3, -1).T
    coarse = np.floor((ijk * 2.0 - 17.0 + 16.0) / 4.0 + 0.5).astype(int).clip(0, 7)
    on_grid = _label_data()[coarse[:, 0], coarse[:, 1], coarse[:, 2]].reshape(shape)
    bold = _write_bold(tmp_path / "fine_bold.nii.gz", fine, shape, on_grid)
    series, info = read_fmri(bold, _config(*atlas))
    data = nib.load(str(bold)).get_fdata()
    means = np.stack([data[on_grid == label].mean(axis=0) for label, _, _ in TABLE])
    np.testing.assert_allclose(series, prepare_roi_series(means, _config(*atlas))[0], atol=0.05)


def test_roi_table_sidecar_must_name_the_users_atlas(tmp_path, atlas):
    config = _config(*atlas)
    table = tmp_path / "sub-x_timeseries.npy"
    np.save(table, np.random.default_rng(1).normal(size=(3, FRAMES)))
    side = tmp_path / "sub-x_timeseries.json"
    side.write_text(json.dumps({"Atlas": "My3", "AxisOrder": ["parcel", "timepoint"]}))
    series, info = read_fmri(table, config)
    assert series.shape == (3, 48) and info["atlas"] == "my3" and info["atlas_sha256"] == config.fmri_atlas_sha256
    side.write_text(json.dumps({"Atlas": "schaefer400_17n", "AxisOrder": ["parcel", "timepoint"]}))
    with pytest.raises(InputDataError, match="unsupported atlas 'schaefer400_17n'; this model expects my3"):
        read_fmri(table, config)


def test_roi_count_mismatch_is_one_line(tmp_path, atlas):
    """A 400-ROI Schaefer table given to a model of another atlas's ROI count."""
    table = tmp_path / "sub-x_timeseries.npy"
    np.save(table, np.zeros((400, FRAMES)))
    (tmp_path / "sub-x_timeseries.json").write_text(json.dumps({"Atlas": "my3", "AxisOrder": ["parcel", "timepoint"]}))
    with pytest.raises(InputDataError) as info:
        read_fmri(table, _config(*atlas))
    message = str(info.value)
    assert "\n" not in message and str(table) in message
    assert "has 400 parcels along its parcel axis but the model expects 3 ROIs of atlas my3" in message


def test_config_round_trip_records_the_atlas_and_its_hash(atlas):
    config = _config(*atlas)
    assert len(config.fmri_atlas_sha256) == 64
    again = PreprocessConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    fields = PreprocessConfig.FMRI_FIELDS
    assert config.fingerprint(*fields) != dataclasses.replace(config, fmri_atlas_sha256="0" * 64).fingerprint(*fields)


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"fmri_atlas_labels": None}, "needs both fmri_atlas_image"),
        ({"fmri_atlas": "schaefer400_17n"}, "is a shipped atlas"),
        ({"fmri_n_rois": 450}, "fmri_n_rois=450 does not match atlas 'my3' \\(3 ROIs in its label table\\)"),
    ],
)
def test_bad_atlas_configs(atlas, kwargs, needle):
    image, labels = atlas
    base = dict(fmri_atlas="my3", fmri_atlas_image=str(image), fmri_atlas_labels=str(labels), fmri_n_rois=3)
    with pytest.raises(ConfigError, match=needle):
        PreprocessConfig(**{**base, **kwargs})


def test_bad_atlas_files_name_the_file(tmp_path):
    image, labels = _write_atlas(tmp_path / "a", table=[*TABLE, (40, "Nowhere", "")])
    with pytest.raises(ConfigError, match="1 label\\(s\\) of the label table have no voxel") as info:
        PreprocessConfig(fmri_atlas="my4", fmri_atlas_image=str(image), fmri_atlas_labels=str(labels), fmri_n_rois=4)
    assert info.value.path == image
    labels.write_text("label\tname\n1\tx\n")
    with pytest.raises(ConfigError, match="needs the columns index and name \\(missing: index\\)"):
        read_label_table(labels)
    labels.write_text("index\tname\n1\tx\n1\ty\n")
    with pytest.raises(ConfigError, match="lists label\\(s\\) \\[1\\] more than once"):
        read_label_table(labels)
    labels.write_text("index\tname\n0\tx\n")
    with pytest.raises(ConfigError, match="index must be a positive integer"):
        read_label_table(labels)
    with pytest.raises(ConfigError, match="cannot read the fMRI atlas file"):
        PreprocessConfig(fmri_atlas="my3", fmri_atlas_image=str(tmp_path / "none.nii.gz"),
                         fmri_atlas_labels=str(labels), fmri_n_rois=3)


def test_a_changed_atlas_file_is_refused(tmp_path, atlas):
    config = _config(*atlas)
    bold = _write_bold(tmp_path / "sub-x_bold.nii.gz")
    _, labels = atlas
    labels.write_text(labels.read_text().replace("Visual_1", "Visual_one"))
    with pytest.raises(ConfigError, match="changed since the model recorded it"):
        read_fmri(bold, config)


def test_bundle_carries_the_atlas(tmp_path, atlas):
    from anchorad_core.bundle import load_bundle, save_bundle
    from anchorad_core.model import AnchorADModel
    from anchorad_core.modality import Modality
    from toy_backbone import ToyBackbone, toy_config

    config = toy_config().restricted((Modality.FMRI,))
    config.preprocess = _config(*atlas).to_dict()
    model = AnchorADModel({Modality.FMRI: ToyBackbone("fmri")}, ["NC", "AD"])
    path = save_bundle(model, config, tmp_path / "bundle")
    manifest = json.loads((path / "bundle.json").read_text())
    stored = manifest["config"]["preprocess"]
    assert stored["fmri_atlas_image"] == "atlas/labels_image.nii.gz" and stored["fmri_atlas_labels"] == "atlas/labels_table.tsv"
    assert stored["fmri_atlas_sha256"] == config.preprocess["fmri_atlas_sha256"]
    assert {"atlas/labels_image.nii.gz", "atlas/labels_table.tsv"} <= set(manifest["files"])
    for source in atlas:
        source.unlink()  # the bundle no longer needs the user's files
    loaded = PreprocessConfig.from_dict(load_bundle(path).config.preprocess)
    assert loaded.fmri_atlas_image == str(path / "atlas" / "labels_image.nii.gz")
    series, info = read_fmri(_write_bold(tmp_path / "sub-y_bold.nii.gz"), loaded)
    assert series.shape == (3, 48) and info["atlas_sha256"] == loaded.fmri_atlas_sha256


def test_copy_and_resolve_leave_a_shipped_atlas_alone(tmp_path):
    shipped = PreprocessConfig().to_dict()
    assert copy_atlas_files(shipped, tmp_path) == shipped and atlas_paths_in(shipped, tmp_path) == shipped
    assert not (tmp_path / "atlas").exists()


def test_maps_paint_into_the_users_atlas(tmp_path, atlas):
    from anchorad_core.explain.maps import paint_atlas, roi_table

    _config(*atlas)  # registers the atlas under its name
    painted = np.asarray(paint_atlas(np.array([3.0, 1.0, 2.0]), "my3").dataobj)
    labels = _label_data()
    assert np.all(painted[labels == 30] == 3.0) and np.all(painted[labels == 10] == 1.0)
    assert np.all(painted[labels == 20] == 2.0) and np.all(painted[(labels == 0) | (labels == 99)] == 0.0)
    table = roi_table(np.array([3.0, 1.0, 2.0]), "my3")
    assert table["name"].tolist() == ["Thalamus_L", "Visual_1", "Default_1"]
    assert table["roi_index"].tolist() == [30, 10, 20]


def test_merge_label_images_stacks_subcortex_before_cortex(tmp_path):
    sub = np.zeros(SHAPE, dtype=np.int16)
    sub[3:5, 3:5, 3:5] = 7
    cortex = np.zeros(SHAPE, dtype=np.int16)
    cortex[0:2] = 1
    cortex[6:8] = 2
    cortex[3, 3, 3] = 2  # overlaps the subcortical parcel: the earlier image wins
    a = _write_atlas(tmp_path / "sub", table=[(7, "Tha", "Subcortex")], data=sub)
    b = _write_atlas(tmp_path / "ctx", table=[(2, "Ctx_B", "Default"), (1, "Ctx_A", "Vis")], data=cortex)
    out_image, out_table = tmp_path / "merged.nii.gz", tmp_path / "merged.tsv"
    table = merge_label_images([a[0], b[0]], [a[1], b[1]], out_image, out_table)
    assert table["name"].tolist() == ["Tha", "Ctx_B", "Ctx_A"] and table["index"].tolist() == [1, 2, 3]
    merged = np.asarray(nib.load(str(out_image)).dataobj)
    assert np.all(merged[3:5, 3:5, 3:5] == 1) and np.all(merged[6:8] == 2) and np.all(merged[0:2] == 3)
    config = PreprocessConfig(fmri_atlas="merged", fmri_atlas_image=str(out_image),
                              fmri_atlas_labels=str(out_table), fmri_n_rois=3)
    assert read_label_table(out_table)["source"].tolist() == ["my_atlas.nii.gz"] * 3
    assert config.fmri_atlas_sha256


def test_a_loaded_config_serves_its_atlas_to_the_maps(tmp_path, atlas):
    """A bundle's config registers the atlas when made, before any subject is read (cached ones too)."""
    from anchorad_core.data import templates
    from anchorad_core.explain.maps import roi_table

    stored = _config(*atlas).to_dict()
    templates._USER_ATLASES.pop("my3", None)
    templates.atlas_labels.cache_clear()
    assert roi_table(np.zeros(3), "my3")["name"].tolist() == ["ROI 1", "ROI 2", "ROI 3"]  # unknown: generic
    PreprocessConfig.from_dict(stored)
    assert roi_table(np.zeros(3), "my3")["name"].tolist() == ["Thalamus_L", "Visual_1", "Default_1"]
