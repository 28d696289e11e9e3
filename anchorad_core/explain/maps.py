"""Explanation maps in the input's own terms: T1 voxels, atlas ROIs, words of the note, DNA bases.

Both explanation methods (:mod:`.attention`, :mod:`.attributions`) end in one of four map types,
one per modality:

* :class:`VolumeMap` — sMRI: a map on the subject's **native T1 grid** (same shape and affine as
  the ``*_T1w.nii[.gz]`` the subject was read from), made with
  :func:`~anchorad_core.data.smri.cube_to_native`, so it overlays the T1 in any viewer;
* :class:`RoiMap` — fMRI: one value per atlas ROI (and per ROI x time patch), paintable into the
  shipped atlas volume with :func:`paint_atlas`;
* :class:`WordMap` — clinical text: one score per whitespace-separated word of the note
  (:func:`~anchorad_core.explain.token_maps.text_scores_to_words`);
* :class:`BaseMap` — genetics: one score track per DNA string, plus the 6-mer table
  (:func:`~anchorad_core.explain.token_maps.dna_scores_to_bases`).

The constructors here take per-token scores (attention) or per-input-element scores
(attributions) plus what the subject / collated batch says about the layout.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence, Union

import numpy as np

from ..data.smri import SmriGeometry, cube_to_native
from ..data.templates import atlas_image, atlas_labels
from ..errors import ConfigError
from .token_maps import KmerScore, WordScore, dna_scores_to_bases, dna_token_layout, kmer_table, text_scores_to_words

__all__ = [
    "VolumeMap",
    "RoiMap",
    "WordMap",
    "BaseMap",
    "ModalityMap",
    "volume_from_tokens",
    "volume_from_cube",
    "brain_volume_attribution",
    "roi_map_from_tokens",
    "roi_map_from_series",
    "word_map",
    "base_map",
    "paint_atlas",
    "roi_table",
]


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


@dataclass
class VolumeMap:
    """An sMRI map on the subject's native T1 grid.

    Attributes
    ----------
    data : ndarray (X, Y, Z) float32
        ``geometry.native_shape``; zero outside the T1's foreground box.
    affine : ndarray (4, 4)
        The T1 file's affine.
    cube : ndarray or None
        The map on the model's cube (RAS+, voxels) or, for token-level maps, on the token grid
        in the cube's axis order (``(X/16, Y/16, Z/16)``).
    total : float
        Sum of the unmapped scores (tokens or cube voxels).
    caption : str
        What ``data`` shows (for attributions: restricted to the brain and aggregated per
        parcel, or smoothed; see :func:`brain_volume_attribution`).
    voxels : ndarray or None
        Attributions only: the raw voxel map on the native grid, before restriction.
    parcels : RoiMap or None
        Attributions aggregated per atlas parcel (when the T1 lies on the atlas grid).
    outside_share : float or None
        Share of ``sum |voxel attribution|`` outside the region ``data`` keeps.
    """

    data: np.ndarray
    affine: np.ndarray
    cube: np.ndarray | None = None
    total: float = 0.0
    caption: str = ""
    voxels: np.ndarray | None = None
    parcels: "RoiMap | None" = None
    outside_share: float | None = None
    kind: str = field(default="volume", init=False)


@dataclass
class RoiMap:
    """An fMRI map: one value per ROI of the model's series (row ``r`` = atlas label ``r + 1``).

    Attributes
    ----------
    values : ndarray (R,)
        Per ROI (summed over time patches for attention, over frames for attributions).
    roi_time : ndarray (R, P)
        Per ROI x time patch (``P`` = frames / patch size).
    atlas : str
        Atlas name (``schaefer400_17n``).
    """

    values: np.ndarray
    roi_time: np.ndarray
    atlas: str = "schaefer400_17n"
    kind: str = field(default="roi", init=False)

    @property
    def total(self) -> float:
        """Sum over ROIs."""
        return float(np.sum(self.values))

    def table(self) -> "Any":
        """``pandas.DataFrame`` with columns roi_index, name, network, value (see :func:`roi_table`)."""
        return roi_table(self.values, self.atlas)

    def top(self, k: int = 10, by_abs: bool = True) -> "Any":
        """The ``k`` ROIs with the largest (absolute) value."""
        table = self.table()
        key = table["value"].abs() if by_abs else table["value"]
        return table.loc[key.sort_values(ascending=False).index[:k]]


@dataclass
class WordMap:
    """A clinical-note map: one :class:`~.token_maps.WordScore` per word of ``note.split()``.

    ``special`` is the part of the token scores on special tokens (``[CLS]``, ``[SEP]``), which
    belongs to no word.
    """

    note: str
    words: list[WordScore]
    special: float = 0.0
    kind: str = field(default="words", init=False)

    @property
    def scores(self) -> np.ndarray:
        """Word scores in order."""
        return np.array([w.score for w in self.words], dtype=float)

    @property
    def total(self) -> float:
        """Sum over words (special tokens excluded)."""
        return float(self.scores.sum()) if self.words else 0.0


@dataclass
class BaseMap:
    """A genetics map: one per-base score track per DNA string, and the per-token table.

    ``special`` is the part of the token scores on special tokens (``<cls>``), which covers no base.
    """

    tracks: list[np.ndarray]
    kmers: list[KmerScore]
    special: float = 0.0
    kind: str = field(default="bases", init=False)

    @property
    def total(self) -> float:
        """Sum over all bases of all strings."""
        return float(sum(float(t.sum()) for t in self.tracks))


ModalityMap = Union[VolumeMap, RoiMap, WordMap, BaseMap]


# ------------------------------------------------------------------------------ sMRI
def volume_from_tokens(token_scores: Any, backbone: Any, geometry: SmriGeometry) -> VolumeMap:
    """Per-token sMRI scores ``(N,)`` (UniFormer stage-4 token order) -> native T1 grid.

    The tokens are put back on the grid in the cube's axis order (undoing the model's internal
    ``(D, H, W) = (Z, X, Y)`` permutation with ``backbone.tokens_to_input_grid``), upsampled to
    the cube and mapped to the native grid with :func:`cube_to_native` (trilinear).
    """
    import torch

    scores = _np(token_scores)
    cube = int(geometry.cube)
    grid = backbone.tokens_to_input_grid(torch.from_numpy(scores), (cube, cube, cube)).numpy()
    native = cube_to_native(grid.astype(np.float32), geometry, order=1)
    return VolumeMap(native, np.asarray(geometry.native_affine, float), grid.astype(np.float32), float(scores.sum()))


def volume_from_cube(cube_scores: Any, geometry: SmriGeometry) -> VolumeMap:
    """A voxel map on the model's cube ``(X, Y, Z)`` (RAS+) -> native T1 grid (trilinear)."""
    cube = _np(cube_scores).astype(np.float32)
    native = cube_to_native(cube, geometry, order=1)
    return VolumeMap(native, np.asarray(geometry.native_affine, float), cube, float(cube.sum()))


#: Gaussian sigma of the smoothed attribution map, in cube voxels (2 voxels: FWHM ~4.7 voxels,
#: the stride of the sMRI backbone's first patch embedding is 2 and its tokens span 16).
SMOOTH_SIGMA_CUBE_VOXELS = 2.0


def _on_atlas_grid(shape: Sequence[int], affine: np.ndarray, atlas: str) -> bool:
    try:
        img = atlas_image(atlas)
    except Exception:  # noqa: BLE001 - no such atlas: not on its grid
        return False
    return tuple(img.shape[:3]) == tuple(int(v) for v in shape[:3]) and np.allclose(img.affine, affine, atol=1e-3)


def brain_volume_attribution(
    vmap: VolumeMap, t1: "np.ndarray | Callable[[], np.ndarray | None] | None", geometry: SmriGeometry,
    atlas: str = "schaefer400_17n",
    foreground_threshold: float = 0.1,
) -> VolumeMap:
    """A voxel attribution map restricted to the brain, at a resolution the model can resolve.

    * T1 on the atlas grid (the shipped Schaefer-400, MNI 2 mm, like the demo subjects): the
      voxel attributions are **summed per Schaefer-400 parcel** and painted back (each voxel of
      a parcel shows the parcel's sum; everything outside the cortical parcels — subcortex,
      white matter, skull, background — is 0);
    * otherwise: restricted to the T1's head foreground (voxels above ``foreground_threshold``
      x its 99th percentile, as in preprocessing; no skull stripping) and **Gaussian-smoothed**
      inside it (normalised convolution, sigma :data:`SMOOTH_SIGMA_CUBE_VOXELS` cube voxels).

    The raw voxel map is kept in ``voxels``; ``caption`` says which was done and
    ``outside_share`` how much of ``sum |attribution|`` lies outside the kept region. ``t1`` (the
    native T1, for the foreground) may be a function returning it: it is then read only when the
    map is not on the atlas grid.
    """
    raw = np.asarray(vmap.data, dtype=np.float32)
    absolute = float(np.abs(raw).sum()) or 1.0
    if _on_atlas_grid(raw.shape, vmap.affine, atlas):
        labels_img = atlas_image(atlas)
        labels = np.asarray(labels_img.dataobj).astype(np.int64)
        n = len(atlas_labels(atlas))
        inside = (labels > 0) & (labels <= n)
        sums = np.bincount(labels[inside], weights=raw[inside].astype(np.float64), minlength=n + 1)[1:n + 1]
        lut = np.zeros(n + 1, dtype=np.float32)
        lut[1:] = sums
        data = lut[np.clip(labels, 0, n)]
        outside = float(np.abs(raw[~inside]).sum()) / absolute
        parcels = RoiMap(sums, sums[:, None], atlas)
        caption = (f"IG summed per Schaefer-400 parcel ({n} cortical parcels; brain only: subcortex, white "
                   f"matter, skull and background dropped, {outside:.0%} of |attribution|)")
        return VolumeMap(data, vmap.affine, vmap.cube, vmap.total, caption, raw, parcels, outside)
    from scipy.ndimage import gaussian_filter

    if callable(t1):
        t1 = t1()
    if t1 is not None and np.shape(t1)[:3] == raw.shape:
        t1 = np.asarray(t1, dtype=np.float32).reshape(raw.shape)
        mask = t1 > foreground_threshold * float(np.percentile(t1, 99))
    else:
        mask = raw != 0
    zooms = np.sqrt((np.asarray(vmap.affine, float)[:3, :3] ** 2).sum(axis=0))
    sigma_mm = SMOOTH_SIGMA_CUBE_VOXELS * float(geometry.spacing_mm)
    sigma = sigma_mm / np.maximum(zooms, 1e-3)
    num = gaussian_filter(np.where(mask, raw, 0.0).astype(np.float32), sigma)
    den = gaussian_filter(mask.astype(np.float32), sigma)
    data = np.where(mask, num / np.maximum(den, 1e-6), 0.0).astype(np.float32)
    outside = float(np.abs(raw[~mask]).sum()) / absolute
    caption = (f"IG voxel map restricted to the head foreground (no skull stripping; {outside:.0%} of "
               f"|attribution| outside dropped), Gaussian-smoothed inside it (sigma {sigma_mm:.1f} mm)")
    return VolumeMap(data, vmap.affine, vmap.cube, vmap.total, caption, raw, None, outside)


# ------------------------------------------------------------------------------ fMRI
def roi_map_from_tokens(token_scores: Any, n_rois: int, n_time_patches: int, atlas: str = "schaefer400_17n") -> RoiMap:
    """Per-token Brain-JEPA scores ``(R * P,)`` (ROI-major) -> per ROI (sum over time patches)."""
    scores = _np(token_scores)
    if scores.shape != (n_rois * n_time_patches,):
        raise ValueError(f"expected {n_rois} x {n_time_patches} fMRI token scores, got shape {scores.shape}")
    roi_time = scores.reshape(n_rois, n_time_patches)
    return RoiMap(roi_time.sum(axis=1), roi_time, atlas)


def roi_map_from_series(series_scores: Any, patch_size: int, atlas: str = "schaefer400_17n") -> RoiMap:
    """Per-element scores of an ``(R, T)`` series -> per ROI (sum over frames) and per time patch."""
    scores = _np(series_scores)
    if scores.ndim != 2 or scores.shape[1] % patch_size:
        raise ValueError(f"expected (ROI, frames) scores with frames divisible by {patch_size}, got {scores.shape}")
    roi_time = scores.reshape(scores.shape[0], -1, patch_size).sum(axis=2)
    return RoiMap(roi_time.sum(axis=1), roi_time, atlas)


def roi_table(values: Any, atlas: str = "schaefer400_17n") -> "Any":
    """ROI table: roi_index (atlas label), name, network, value; generic names past the atlas."""
    import pandas as pd

    values = _np(values)
    try:
        labels = atlas_labels(atlas)
    except ConfigError:  # an atlas this process does not know: generic names
        labels = pd.DataFrame({"index": [], "name": [], "network": []})
    n = len(values)
    index = np.arange(1, n + 1)
    names = [f"ROI {i}" for i in index]
    networks = [""] * n
    if n == len(labels):
        names = labels["name"].astype(str).tolist()
        networks = labels["network"].astype(str).tolist()
        index = labels["index"].to_numpy()
    return pd.DataFrame({"roi_index": index, "name": names, "network": networks, "value": values})


def paint_atlas(values: Any, atlas: str = "schaefer400_17n") -> "Any":
    """Paint one value per ROI into the atlas volume (ROI ``r``'s label, row ``r`` of the
    atlas's label table, gets ``values[r]``; for Schaefer-400 label ``r + 1``).

    Returns a float32 ``nibabel.Nifti1Image`` on the atlas grid (0 outside the parcels).

    Raises
    ------
    ValueError
        If the number of values is not the atlas's number of ROIs.
    """
    import nibabel as nib

    values = _np(values)
    img = atlas_image(atlas)
    labels = np.asarray(img.dataobj).astype(np.int64)
    index = atlas_labels(atlas)["index"].to_numpy(dtype=np.int64)
    if values.shape != (len(index),):
        raise ValueError(f"atlas {atlas} has {len(index)} ROIs, got {values.shape[0]} values")
    top = max(int(index.max()), int(labels.max(initial=0)))
    lut = np.zeros(top + 1, dtype=np.float32)
    lut[index] = values
    data = lut[np.clip(labels, 0, top)]
    return nib.Nifti1Image(data.astype(np.float32), img.affine)


# ------------------------------------------------------------------------------ text / DNA
def word_map(note: str, token_offsets: Any, token_scores: Any) -> WordMap:
    """Per-token scores of one note ``(L,)`` -> one score per word (see :func:`text_scores_to_words`)."""
    offsets = np.asarray(_np(token_offsets), dtype=np.int64).reshape(-1, 2)
    scores = _np(token_scores).reshape(-1)[: offsets.shape[0]]
    words = text_scores_to_words(note, offsets, scores)
    special = float(scores[(offsets[:, 0] == 0) & (offsets[:, 1] == 0)].sum())
    return WordMap(note, words, special)


def base_map(sequences: Sequence[str], batch: Mapping[str, Any], token_scores: Any) -> BaseMap:
    """Per-output-token scores ``(N,)`` of one subject's DNA -> per-base tracks and a k-mer table."""
    layout = dna_token_layout(batch, 0)
    scores = _np(token_scores).reshape(-1)
    tracks = dna_scores_to_bases([len(s) for s in sequences], layout, scores)
    kmers = kmer_table(sequences, layout, scores)
    n = layout.sequence_index.shape[0]
    special = float(scores[:n][layout.sequence_index < 0].sum())
    return BaseMap(tracks, kmers, special)
