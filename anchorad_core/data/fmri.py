"""Resting-state fMRI: a 4-D BOLD run or an ROI table -> robust-scaled (ROI, T) array.

Accepted inputs (subject folder ``func/``):

* ``*_bold.nii[.gz]``: a 4-D BOLD run in MNI space. ROI series are the mean signal per
  parcel of the configured atlas, the shipped Schaefer-400 or the user's own label image and
  table (:mod:`.atlas`; nilearn ``NiftiLabelsMasker``; the atlas is resampled to the run's
  grid with nearest neighbour). Row ``i`` of the series is the parcel of row ``i`` of the
  atlas's label table. No confound regression or filtering is done here, so
  give an already denoised run (e.g. fMRIPrep output) or an ROI table from your own
  pipeline. ROIs outside the run's field of view are filled with zeros and reported; fewer
  than ``fmri_min_roi_coverage`` of them is an error.
* ``*_timeseries.tsv`` or ``*_timeseries.npy`` with a JSON sidecar of the same stem
  (``*_timeseries.json``) naming the atlas (``"Atlas"`` or ``"ParcelOrder"``, e.g.
  ``"schaefer400_17n"`` or ``"Schaefer2018_400Parcels_17Networks_order"``) and the axis order
  (``"AxisOrder": ["parcel", "timepoint"]`` or ``["timepoint", "parcel"]``). The ``.tsv`` may
  have a header row; without ``AxisOrder`` it is read BIDS-style (rows = timepoints); a ``.npy``
  needs ``AxisOrder``. A table in Schaefer-400 **7-network** order is reordered to 17-network
  order with the shipped ``group_fc_index`` mapping. With a user atlas the sidecar's
  ``"Atlas"`` must be the atlas's name (``fmri_atlas``) and the table must have its ROIs in
  the label table's order.

A table or atlas with another number of ROIs than the model expects (``fmri_n_rois``, e.g.
a bundle trained on the 450 Tian-III + Schaefer-400 ROIs given a 400-ROI table) is a one-line
:class:`~anchorad_core.errors.InputDataError` naming both counts.

Then (:func:`prepare_roi_series`): ``fmri_frame_policy="crop"`` keeps the central window of
``fmri_frames`` frames, starting at ``(T - fmri_frames) // 2``; ``"resample"`` linearly
interpolates the whole run onto ``fmri_frames`` equally spaced frames. Each ROI is finally
robust-scaled, ``(x - median) / IQR`` (the rule of scikit-learn's ``RobustScaler``, vectorised;
a constant ROI stays 0).
A run with fewer than ``fmri_frames`` frames is an error.
"""
from __future__ import annotations

import json
import re
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputDataError
from .config import PreprocessConfig
from .fileio import check_finite, check_gzip, read_text_utf8
from .atlas import atlas_of
from .smri import is_nifti_name
from .templates import atlas_labels
from .fileio import load_spatial_image

__all__ = [
    "read_fmri",
    "read_bold",
    "read_roi_table",
    "prepare_roi_series",
    "sidecar_path",
    "normalise_atlas_name",
    "is_roi_table_name",
]

_TABLE_SUFFIXES = (".tsv", ".npy")


def is_roi_table_name(path: "str | Path") -> bool:
    """True for ``*.tsv`` / ``*.npy`` ROI tables."""
    return Path(path).suffix.lower() in _TABLE_SUFFIXES


def sidecar_path(path: "str | Path") -> Path:
    """JSON sidecar of a data file (``x.tsv`` / ``x.npy`` / ``x.nii.gz`` -> ``x.json``)."""
    path = Path(path)
    name = path.name
    for suffix in (".nii.gz", ".nii", ".tsv.gz", ".tsv", ".npy"):
        if name.lower().endswith(suffix):
            return path.with_name(name[: -len(suffix)] + ".json")
    return path.with_suffix(".json")


def normalise_atlas_name(text: str) -> str | None:
    """Map an atlas description to a canonical name (``schaefer400_17n`` / ``schaefer400_7n``).

    Returns ``None`` when the text names no Schaefer-400 atlas.
    """
    low = re.sub(r"[^a-z0-9]", "", str(text).lower())
    if "schaefer" not in low or "400" not in low:
        return None
    if "17network" in low or "40017n" in low or low.endswith("17n"):
        return "schaefer400_17n"
    if "7network" in low or "4007n" in low or low.endswith("7n"):
        return "schaefer400_7n"
    return None


def _read_sidecar(path: Path) -> dict[str, Any]:
    side = sidecar_path(path)
    if not side.is_file():
        raise InputDataError(
            f"ROI table needs a JSON sidecar {side.name} naming the atlas (\"Atlas\") and the axis "
            "order (\"AxisOrder\": [\"parcel\", \"timepoint\"])",
            path,
        )
    try:
        meta = json.loads(read_text_utf8(side, "JSON sidecar"))
    except json.JSONDecodeError as exc:
        raise InputDataError(f"invalid JSON ({exc.msg} at line {exc.lineno})", side) from None
    if not isinstance(meta, dict):
        raise InputDataError("the sidecar must hold a JSON object", side)
    return meta


def read_roi_table(path: "str | Path", config: PreprocessConfig | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Read an ROI time-series table and its sidecar.

    Returns
    -------
    series : ndarray, float32, (ROI, T)
        In the config atlas's parcel order, not yet cropped or scaled.
    info : dict
        ``atlas``, ``axis_order``, ``n_frames``, ``repetition_time`` and ``sidecar``.
    """
    config = config or PreprocessConfig()
    path = Path(path)
    if not path.is_file():
        raise InputDataError("ROI time-series file not found", path)
    meta = _read_sidecar(path)
    side = sidecar_path(path)
    atlas_text = meta.get("Atlas") or meta.get("atlas") or meta.get("ParcelOrder")
    if not atlas_text:
        raise InputDataError(f"the sidecar does not name the atlas (add \"Atlas\": \"{config.fmri_atlas}\")", side)
    user_atlas = config.fmri_atlas_image is not None
    atlas = _user_atlas_name(str(atlas_text), config) if user_atlas else normalise_atlas_name(str(atlas_text))
    if atlas is None:
        raise InputDataError(
            f"unsupported atlas {atlas_text!r}; this model expects {config.fmri_atlas} "
            f"({config.fmri_n_rois} ROIs)",
            side,
        )
    if atlas not in (config.fmri_atlas, "schaefer400_7n") or (user_atlas and atlas != config.fmri_atlas):
        raise InputDataError(f"atlas {atlas} does not match the configured atlas {config.fmri_atlas}", side)
    axis_order = meta.get("AxisOrder")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        if axis_order is None:
            raise InputDataError("the sidecar must give \"AxisOrder\" for a .npy table", side)
        try:
            arr = np.load(path, allow_pickle=False)
        except Exception as exc:  # ValueError, OSError, EOFError, UnpicklingError...
            raise InputDataError(f"not a readable .npy array ({type(exc).__name__}: {exc})", path) from None
    elif suffix == ".tsv":
        arr = _read_tsv(path)
        if axis_order is None:
            axis_order = ["timepoint", "parcel"]
    else:
        raise InputDataError("an ROI table must be a .tsv or .npy file", path)
    if arr.ndim != 2:
        raise InputDataError(f"an ROI table must be 2-D, got shape {arr.shape}", path)
    if not np.issubdtype(arr.dtype, np.number):
        raise InputDataError(f"an ROI table must be numeric, got dtype {arr.dtype}", path)
    order = [str(a).lower() for a in axis_order] if isinstance(axis_order, (list, tuple)) else None
    parcel_words = ("parcel", "roi", "region", "node")
    time_words = ("timepoint", "time", "frame", "volume")
    if order is None or len(order) != 2:
        raise InputDataError(f"\"AxisOrder\" must list two axes, got {axis_order!r}", side)
    if order[0] in parcel_words and order[1] in time_words:
        series = arr
    elif order[0] in time_words and order[1] in parcel_words:
        series = arr.T
    else:
        raise InputDataError(f"\"AxisOrder\" must be [\"parcel\", \"timepoint\"] or the reverse, got {axis_order!r}", side)
    series = np.asarray(series, dtype=np.float32)
    check_finite(series, path, "the ROI table")
    if series.shape[0] != config.fmri_n_rois:
        raise InputDataError(
            f"ROI table has {series.shape[0]} parcels along its parcel axis but the model expects "
            f"{config.fmri_n_rois} ROIs of atlas {config.fmri_atlas} (check \"AxisOrder\")",
            path,
        )
    if atlas == "schaefer400_7n":
        idx = atlas_labels("schaefer400_17n")["group_fc_index"].to_numpy() - 1
        series = series[idx]
    if user_atlas:
        atlas_of(config)  # the user atlas's files are those the config recorded (and serve the maps)
    tr = meta.get("RepetitionTime")
    info = {
        "kind": "roi_table",
        "atlas": atlas if not user_atlas else config.fmri_atlas,
        "atlas_sha256": config.fmri_atlas_sha256,
        "axis_order": list(axis_order),
        "n_frames": int(series.shape[1]),
        "repetition_time": float(tr) if isinstance(tr, (int, float)) else None,
        "sidecar": str(side),
        "missing_rois": [],
    }
    return np.ascontiguousarray(series), info


def _user_atlas_name(text: str, config: PreprocessConfig) -> "str | None":
    """``config.fmri_atlas`` when ``text`` names it (case, spaces and punctuation ignored), else ``None``."""
    def key(s: str) -> str:
        return re.sub(r"[^a-z0-9]", "", s.lower())

    return config.fmri_atlas if key(text) == key(config.fmri_atlas) else None


def _read_tsv(path: Path) -> np.ndarray:
    import pandas as pd

    text = read_text_utf8(path, "ROI table")
    first = text.splitlines()[0].split("\t")
    try:
        [float(x) for x in first if x.strip()]
        header = None
    except ValueError:
        header = 0
    from io import StringIO

    try:
        df = pd.read_csv(StringIO(text), sep="\t", header=header)
    except Exception as exc:
        raise InputDataError(f"not a readable tab-separated table ({exc})", path) from None
    try:
        return df.to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        raise InputDataError("the ROI table holds non-numeric cells", path) from None


def read_bold(path: "str | Path", config: PreprocessConfig | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Extract atlas ROI series from a 4-D BOLD NIfTI (MNI space).

    Returns
    -------
    series : ndarray, float32, (ROI, T)
        Parcel means (zeros for parcels outside the field of view), not yet cropped/scaled.
    info : dict
    """
    import nibabel as nib
    import nilearn
    from nilearn.maskers import NiftiLabelsMasker

    config = config or PreprocessConfig()
    path = Path(path)
    if not path.is_file():
        raise InputDataError("BOLD file not found", path)
    if not is_nifti_name(path):
        raise InputDataError("a BOLD run must be a NIfTI file (*.nii or *.nii.gz)", path)
    check_gzip(path)
    try:
        img = load_spatial_image(str(path))
    except Exception as exc:
        raise InputDataError(f"not a readable NIfTI image ({type(exc).__name__}: {exc})", path) from None
    shape = img.shape
    if len(shape) != 4:
        raise InputDataError(f"a BOLD run must be 4-D (x, y, z, time), this one is {len(shape)}-D {tuple(shape)}", path)
    n_frames = int(shape[3])
    if n_frames < config.fmri_frames:
        raise InputDataError(
            f"too few frames: the run has {n_frames} volumes but the model needs at least {config.fmri_frames}",
            path,
        )
    try:
        data = np.asarray(img.get_fdata(dtype=np.float32))
    except (EOFError, OSError, zlib.error, ValueError) as exc:
        raise InputDataError(f"the image data are truncated or corrupt ({type(exc).__name__}: {exc})", path) from None
    check_finite(data, path, "the BOLD run")
    img = nib.Nifti1Image(data, img.affine, img.header)
    major, minor = (int(v) for v in nilearn.__version__.split(".")[:2])
    standardize: Any = None if (major, minor) >= (0, 12) else False
    atlas = atlas_of(config)
    masker = NiftiLabelsMasker(labels_img=atlas.image(), resampling_target="data", standardize=standardize)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ts = masker.fit_transform(img)
    except Exception as exc:
        raise InputDataError(f"could not extract atlas ROI series ({type(exc).__name__}: {exc})", path) from None
    ids = masker.region_ids_
    row_of = {int(label): row for row, label in enumerate(atlas.label_values)}
    series = np.zeros((config.fmri_n_rois, ts.shape[0]), dtype=np.float32)
    present = []
    for col in range(ts.shape[1]):
        row = row_of.get(int(ids[col]))
        if row is not None:  # labels the table does not list are left out
            series[row] = ts[:, col]
            present.append(row + 1)
    missing = sorted(set(range(1, config.fmri_n_rois + 1)) - set(present))
    coverage = len(present) / config.fmri_n_rois
    if coverage < config.fmri_min_roi_coverage:
        raise InputDataError(
            f"the run covers only {len(present)} of {config.fmri_n_rois} atlas ROIs "
            f"({coverage:.0%} < {config.fmri_min_roi_coverage:.0%}); is it in MNI space?",
            path,
        )
    zooms = img.header.get_zooms()
    tr = float(zooms[3]) if len(zooms) > 3 and zooms[3] > 0 else None
    info = {
        "kind": "bold",
        "atlas": config.fmri_atlas,
        "atlas_sha256": atlas.sha256,
        "n_frames": n_frames,
        "repetition_time": tr,
        "missing_rois": missing,
    }
    return series, info


def prepare_roi_series(
    series: np.ndarray, config: PreprocessConfig | None = None, path: "str | Path | None" = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Crop or resample to ``fmri_frames`` and robust-scale each ROI.

    Parameters
    ----------
    series : ndarray (ROI, T)
    config : PreprocessConfig, optional
    path : str or Path, optional
        For error messages.

    Returns
    -------
    out : ndarray, float32, (ROI, fmri_frames)
    info : dict
        ``frame_window`` ([start, stop) for crop) or ``resampled_from`` (T).
    """
    config = config or PreprocessConfig()
    series = np.asarray(series, dtype=np.float64)
    n_roi, n_t = series.shape
    want = config.fmri_frames
    if n_t < want:
        raise InputDataError(f"too few frames: {n_t} time points but the model needs at least {want}", path)
    info: dict[str, Any] = {}
    if config.fmri_frame_policy == "crop":
        start = (n_t - want) // 2
        window = series[:, start : start + want]
        info["frame_window"] = [int(start), int(start + want)]
    else:
        from scipy.interpolate import interp1d

        old = np.linspace(0.0, 1.0, n_t)
        new = np.linspace(0.0, 1.0, want)
        window = interp1d(old, series, axis=1)(new)
        info["resampled_from"] = int(n_t)
    # per-ROI robust scaling, (x - median) / IQR: the rule of sklearn's RobustScaler (a zero
    # IQR scales by 1), vectorised over ROIs (RobustScaler loops over columns: ~30x slower)
    q25, med, q75 = np.percentile(window, [25.0, 50.0, 75.0], axis=1, keepdims=True)
    iqr = q75 - q25
    iqr[iqr < 10 * np.finfo(np.float64).eps] = 1.0
    scaled = (window - med) / iqr
    return np.ascontiguousarray(scaled, dtype=np.float32), info


def read_fmri(path: "str | Path", config: PreprocessConfig | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Read a BOLD run or ROI table and return the model input ``(fmri_n_rois, fmri_frames)``.

    Returns
    -------
    series : ndarray, float32, (ROI, fmri_frames)
    info : dict
        Where the series came from (``kind``, ``atlas``, ``n_frames``, ``repetition_time``,
        ``missing_rois``, ``frame_window`` or ``resampled_from``).
    """
    config = config or PreprocessConfig()
    path = Path(path)
    if is_nifti_name(path):
        raw, info = read_bold(path, config)
    elif is_roi_table_name(path):
        raw, info = read_roi_table(path, config)
    else:
        raise InputDataError("fMRI input must be a 4-D *_bold.nii[.gz] or an ROI table (*.tsv / *.npy + .json)", path)
    out, more = prepare_roi_series(raw, config, path)
    info.update(more)
    return out, info
