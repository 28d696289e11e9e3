"""Volumes in napari's terms: RAS+ reorientation, (z, y, x) axis order, world scale/translate.

Every volume AnchorAD shows (the T1, a BOLD run, an ROI series painted into the atlas, an
explanation map) goes through :func:`volume_layer_data` so that they share one convention and
overlay in world (scanner / MNI millimetre) coordinates:

* the array is reoriented to RAS+ with nibabel's closest-canonical rule (the same rule the
  core's :func:`anchorad_core.data.preprocess_t1` uses), then its spatial axes are reversed to
  ``(z, y, x)`` = (inferior->superior, posterior->anterior, left->right) so napari's default 2-D
  view is an axial slice;
* the voxel-to-world affine is permuted the same way; when it is diagonal (the usual case after
  reorientation) it becomes the layer's ``scale`` and ``translate`` (mm), otherwise the full
  ``affine``.

No Qt here: this module only builds arrays and keyword arguments.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation

__all__ = [
    "SPATIAL_AXIS_LABELS",
    "to_ras",
    "napari_affine",
    "volume_layer_data",
    "spatial_kwargs",
    "LazyPaintedSeries",
]

#: Axis labels of a 3-D volume layer (world axes in napari order).
SPATIAL_AXIS_LABELS: tuple[str, str, str] = ("S (z)", "A (y)", "R (x)")


def to_ras(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reorient the first three axes of ``data`` to RAS+ (extra trailing axes, e.g. time, kept).

    Returns
    -------
    data : ndarray
        A view or copy of ``data`` in RAS+ voxel order.
    affine : ndarray (4, 4)
        The voxel-to-world affine of the reoriented array.
    """
    affine = np.asarray(affine, dtype=float)
    shape3 = tuple(int(s) for s in data.shape[:3])
    ornt = io_orientation(affine)
    ras = apply_orientation(np.asarray(data), ornt)
    return ras, affine @ inv_ornt_aff(ornt, shape3)


def napari_affine(affine: np.ndarray) -> np.ndarray:
    """The 4 x 4 affine of an ``(x, y, z)`` array, rewritten for its ``(z, y, x)`` transpose."""
    affine = np.asarray(affine, dtype=float)
    perm = np.eye(4)[[2, 1, 0, 3]]
    return perm @ affine @ perm


def _transform_kwargs(affine_zyx: np.ndarray, leading: tuple[float, ...] = ()) -> dict[str, Any]:
    """``scale``/``translate`` (diagonal affine) or ``affine``, with ``leading`` extra axes (e.g. time)."""
    linear = affine_zyx[:3, :3]
    offdiag = linear - np.diag(np.diag(linear))
    n_lead = len(leading)
    if np.allclose(offdiag, 0.0, atol=1e-6) and np.all(np.diag(linear) > 0):
        return {
            "scale": tuple(float(s) for s in leading) + tuple(float(v) for v in np.diag(linear)),
            "translate": (0.0,) * n_lead + tuple(float(v) for v in affine_zyx[:3, 3]),
        }
    full = np.eye(4 + n_lead)
    for i, s in enumerate(leading):
        full[i, i] = float(s)
    full[n_lead:, n_lead:] = affine_zyx
    return {"affine": full}


def volume_layer_data(
    data: np.ndarray,
    affine: np.ndarray,
    *,
    time_step: float | None = None,
    reorient: bool = True,
) -> tuple[np.ndarray, dict[str, Any]]:
    """A NIfTI-style ``(x, y, z[, t])`` array -> napari ``(z, y, x)`` / ``(t, z, y, x)`` data + kwargs.

    Parameters
    ----------
    data : ndarray
        3-D volume, or 4-D with time last (as stored in NIfTI).
    affine : ndarray (4, 4)
        Voxel-to-world affine of ``data``.
    time_step : float, optional
        Step of the time axis in the layer's world units (e.g. the repetition time in s).
    reorient : bool
        Reorient to RAS+ first (default).

    Returns
    -------
    data : ndarray
        ``(z, y, x)`` or ``(t, z, y, x)``.
    kwargs : dict
        ``scale`` + ``translate`` (or ``affine``), ``axis_labels`` and ``units`` for
        ``viewer.add_image``.
    """
    arr = np.asarray(data)
    if arr.ndim not in (3, 4):
        raise ValueError(f"expected a 3-D or 4-D volume, got shape {arr.shape}")
    if reorient:
        arr, affine = to_ras(arr, affine)
    if arr.ndim == 3:
        return np.ascontiguousarray(arr.transpose(2, 1, 0)), spatial_kwargs(affine)
    return np.ascontiguousarray(arr.transpose(3, 2, 1, 0)), spatial_kwargs(affine, time_step=time_step)


def spatial_kwargs(affine: np.ndarray, time_step: "float | None | bool" = False) -> dict[str, Any]:
    """Layer keyword arguments for a ``(z, y, x)`` array whose ``(x, y, z)`` affine is ``affine``.

    ``time_step`` other than ``False`` adds a leading time axis (step ``time_step`` seconds, or
    1 frame when ``None``).
    """
    zyx = napari_affine(affine)
    if time_step is False:
        kwargs = _transform_kwargs(zyx)
        kwargs["axis_labels"] = SPATIAL_AXIS_LABELS
        kwargs["units"] = ("mm", "mm", "mm")
        return kwargs
    kwargs = _transform_kwargs(zyx, (float(time_step or 1.0),))
    kwargs["axis_labels"] = ("t",) + SPATIAL_AXIS_LABELS
    kwargs["units"] = ("s" if time_step else "pixel", "mm", "mm", "mm")
    return kwargs


class LazyPaintedSeries:
    """An ``(ROI, T)`` series painted into an atlas, as a lazy ``(t, z, y, x)`` array.

    Painting every frame at once would take ``T`` x the atlas size in memory (hundreds of MB
    for a 2 mm MNI atlas); this array paints only the frames napari asks for.

    Parameters
    ----------
    series : ndarray (R, T)
        Row ``r`` is atlas label ``r + 1``.
    labels_zyx : ndarray of int (z, y, x)
        The atlas labels, already in napari axis order.
    """

    def __init__(self, series: np.ndarray, labels_zyx: np.ndarray) -> None:
        series = np.asarray(series, dtype=np.float32)
        if series.ndim != 2:
            raise ValueError(f"series must be (ROI, T), got {series.shape}")
        n_rois, n_frames = series.shape
        # lut[t, label]; label 0 (background) and labels past the series paint 0
        self._lut = np.zeros((n_frames, n_rois + 1), dtype=np.float32)
        self._lut[:, 1:] = series.T
        self._labels = np.clip(np.asarray(labels_zyx), 0, n_rois).astype(np.intp)
        self.shape = (n_frames, *self._labels.shape)
        self.dtype = np.dtype(np.float32)
        self.ndim = 4
        self.size = int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        key = key + (slice(None),) * (4 - len(key))
        t_key, spatial = key[0], key[1:]
        labels = self._labels[spatial]
        lut = self._lut[t_key]
        if lut.ndim == 1:  # one frame
            return lut[labels]
        return lut[:, labels]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self._lut[:, self._labels]
        return out.astype(dtype) if dtype is not None else out

    def frame_range(self) -> tuple[float, float]:
        """Robust display range over the whole series (1st-99th percentile of the ROI values)."""
        values = self._lut[:, 1:]
        lo, hi = (float(v) for v in np.percentile(values, [1, 99]))
        if hi <= lo:
            hi = lo + 1.0
        return lo, hi
