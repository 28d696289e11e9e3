"""Access to the shipped real templates (atlas, labels, T1, FC, APOE reference).

All of them live in ``resources/templates/`` (installed as ``anchorad_resources.templates``)
and are located with :func:`anchorad_core.resources.resource_path`; AnchorAD never reads
data from anywhere else at run time. Loaded templates are cached in memory.

A user's own fMRI atlas (:mod:`.atlas`) is registered here under its name
(:func:`register_atlas`, done by :func:`.atlas.atlas_of`), so that the atlas functions
below, and the explanation maps painted with them, serve it like a shipped one.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..resources import resource_path
from .fileio import load_spatial_image

__all__ = [
    "template_path",
    "atlas_path",
    "atlas_labels",
    "atlas_image",
    "register_atlas",
    "group_fc_17n",
    "subject_roi_timeseries",
    "apoe_reference",
    "DMN_NETWORKS",
]

_ATLAS_FILES = {
    "schaefer400_17n": ("schaefer400_17n_2mm.nii.gz", "schaefer400_17n_labels.tsv"),
}

#: Schaefer-17 networks forming the default-mode network.
DMN_NETWORKS: tuple[str, ...] = ("DefaultA", "DefaultB", "DefaultC")


def template_path(name: str) -> Path:
    """Path of a shipped template file, e.g. ``template_path("t1_demo.nii.gz")``."""
    return resource_path(f"templates/{name}")


#: User atlases registered in this process: name -> (label image, label table).
_USER_ATLASES: dict[str, tuple[Path, Path]] = {}


def register_atlas(name: str, image: "str | Path", labels: "str | Path") -> None:
    """Serve a user atlas (label NIfTI + label table, checked by :func:`.atlas.atlas_of`) as ``name``."""
    if name in _ATLAS_FILES:
        raise ConfigError(f"atlas name {name!r} is a shipped atlas; give your atlas its own name")
    files = (Path(image), Path(labels))
    if _USER_ATLASES.get(name) != files:
        _USER_ATLASES[name] = files
        atlas_labels.cache_clear()
        atlas_image.cache_clear()


def _atlas_files(atlas: str) -> tuple[Path, Path]:
    if atlas in _ATLAS_FILES:
        return template_path(_ATLAS_FILES[atlas][0]), template_path(_ATLAS_FILES[atlas][1])
    if atlas in _USER_ATLASES:
        return _USER_ATLASES[atlas]
    raise ConfigError(f"unknown atlas {atlas!r}; shipped: {', '.join(_ATLAS_FILES)} (a user atlas needs "
                      "fmri_atlas_image and fmri_atlas_labels in the preprocessing config)")


def atlas_path(atlas: str = "schaefer400_17n") -> Path:
    """Path of the atlas volume named ``atlas`` (shipped or registered)."""
    return _atlas_files(atlas)[0]


@lru_cache(maxsize=4)
def atlas_labels(atlas: str = "schaefer400_17n") -> pd.DataFrame:
    """Label table of ``atlas``: columns index, name, network (the shipped one also hemisphere,
    n_voxels_2mm, group_fc_index); one row per ROI in ROI order."""
    if atlas in _ATLAS_FILES:
        return pd.read_csv(_atlas_files(atlas)[1], sep="\t")
    from .atlas import read_label_table

    return read_label_table(_atlas_files(atlas)[1])


@lru_cache(maxsize=4)
def atlas_image(atlas: str = "schaefer400_17n"):
    """The atlas as a nibabel image (data cached as int16, int32 for labels past 32767)."""
    import nibabel as nib

    img = load_spatial_image(str(atlas_path(atlas)))
    data = np.asarray(img.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    data = data.astype(np.int16 if data.size == 0 or float(np.max(data)) < 2**15 else np.int32)
    return nib.Nifti1Image(data, img.affine, img.header)


@lru_cache(maxsize=1)
def group_fc_17n() -> np.ndarray:
    """Real HCP group-mean FC (400 x 400), reordered from 7-network to 17-network order."""
    g7 = np.loadtxt(template_path("hcp_schaefer400_mean_fc.csv.gz"), delimiter=",")
    idx = atlas_labels("schaefer400_17n")["group_fc_index"].to_numpy() - 1
    return g7[np.ix_(idx, idx)]


@lru_cache(maxsize=1)
def subject_roi_timeseries() -> np.ndarray:
    """Real single-subject parcel time series (400 parcels x 652 frames, 17-network order)."""
    return np.load(template_path("rest_roi_timeseries_schaefer400.npy"), allow_pickle=False)


@lru_cache(maxsize=2)
def apoe_reference(name: str = "apoe_cds_fragment") -> str:
    """The APOE reference coding-sequence fragment (581 nt, epsilon-3), uppercase."""
    if name != "apoe_cds_fragment":
        raise ConfigError(f"unknown DNA reference {name!r}; shipped: apoe_cds_fragment")
    lines = template_path("apoe_cds_fragment.fa").read_text().splitlines()
    return "".join(line.strip() for line in lines if line and not line.startswith(">")).upper()
