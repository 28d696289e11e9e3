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
from typing import Any, Mapping, Sequence, Union

import numpy as np

from ..data.smri import SmriGeometry, cube_to_native
from ..data.templates import atlas_image, atlas_labels
from .token_maps import KmerScore, WordScore, dna_scores_to_bases, dna_token_layout, kmer_table, text_scores_to_words

__all__ = [
    "VolumeMap",
    "RoiMap",
    "WordMap",
    "BaseMap",
    "ModalityMap",
    "volume_from_tokens",
    "volume_from_cube",
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
    """

    data: np.ndarray
    affine: np.ndarray
    cube: np.ndarray | None = None
    total: float = 0.0
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
    labels = atlas_labels(atlas)
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
    """Paint one value per ROI into the atlas volume (label ``r + 1`` gets ``values[r]``).

    Returns a float32 ``nibabel.Nifti1Image`` on the atlas grid (0 outside the parcels).

    Raises
    ------
    ValueError
        If the number of values is not the atlas's number of ROIs.
    """
    import nibabel as nib

    values = _np(values)
    img = atlas_image(atlas)
    labels = np.asarray(img.dataobj)
    n_labels = len(atlas_labels(atlas))
    if values.shape != (n_labels,):
        raise ValueError(f"atlas {atlas} has {n_labels} ROIs, got {values.shape[0]} values")
    lut = np.zeros(n_labels + 1, dtype=np.float32)
    lut[1:] = values
    data = lut[np.clip(labels, 0, n_labels)]
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
