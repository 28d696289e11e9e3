"""Explanation maps as napari layer data: sMRI maps on the T1 grid, fMRI maps painted on the atlas.

* a :class:`~anchorad_core.explain.maps.VolumeMap` lives on the subject's native T1 grid (same
  shape and affine as the ``*_T1w`` file) and goes through the same RAS+ / ``(z, y, x)``
  conversion as the T1 layer (:func:`._volumes.volume_layer_data`), so it has the T1 layer's
  shape, scale and translate;
* a :class:`~anchorad_core.explain.maps.RoiMap` is painted into the shipped atlas with the
  core's :func:`~anchorad_core.explain.maps.paint_atlas` (world-aligned with an MNI-space T1).

Attention maps are shown as **weight / uniform weight** (the core's
:func:`~anchorad_core.explain.attention.relative_map`): a sequential colormap with additive
blending whose contrast limits start at 1 (the uniform level, transparent) and end at
``max(2, the map's max)``, so a near-uniform map stays dark instead of being stretched into
crisp regions. Attributions (signed) use a diverging colormap whose centre is transparent, with
symmetric contrast limits.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ._volumes import volume_layer_data

__all__ = ["SMRI_ROLE", "FMRI_ROLE", "overlay_caption", "volume_map_layer", "roi_map_layer", "signed_colormap"]

#: Roles of the two overlay layers (reused in place when the round or map changes).
SMRI_ROLE = "overlay-smri"
FMRI_ROLE = "overlay-fmri"


def overlay_caption(which: str, anchor_title: str, map_name: str) -> str:
    """Name of an overlay layer: what it is on, which round, which map."""
    where = "AnchorAD sMRI map" if which == "smri" else "AnchorAD fMRI map (atlas)"
    return f"{where}: {anchor_title} round, {map_name}"


def signed_colormap() -> Any:
    """Blue (negative) - transparent (0) - red (positive) napari colormap."""
    from napari.utils.colormaps import Colormap

    colors = np.array(
        [
            [0.10, 0.45, 1.00, 1.0],
            [0.35, 0.70, 1.00, 0.6],
            [0.00, 0.00, 0.00, 0.0],
            [1.00, 0.55, 0.20, 0.6],
            [1.00, 0.15, 0.10, 1.0],
        ]
    )
    return Colormap(colors, controls=[0.0, 0.3, 0.5, 0.7, 1.0], name="anchorad_signed")


#: Attention overlays: weight / uniform at or below this is transparent ...
RATIO_LOW = 1.0
#: ... and the colour scale reaches its top at ``max(RATIO_HIGH_MIN, map max)``.
RATIO_HIGH_MIN = 2.0


def _display(values: np.ndarray, signed: bool) -> dict[str, Any]:
    finite = values[np.isfinite(values)]
    nonzero = finite[finite != 0]
    if signed:
        m = float(np.max(np.abs(nonzero))) if nonzero.size else 1.0
        m = m if m > 0 else 1.0
        return {"colormap": signed_colormap(), "contrast_limits": (-m, m), "blending": "translucent", "opacity": 0.9}
    # weight / uniform: 1 (uniform) is transparent, twice the uniform share (or the max) is full
    hi = max(RATIO_HIGH_MIN, float(finite.max()) if finite.size else RATIO_HIGH_MIN)
    return {"colormap": "inferno", "contrast_limits": (RATIO_LOW, hi), "blending": "additive", "opacity": 0.75}


def volume_map_layer(vmap: Any, signed: bool, description: str) -> tuple[np.ndarray, dict[str, Any]]:
    """Layer data + kwargs of an sMRI :class:`VolumeMap` (native T1 grid -> the T1 layer's grid).

    Attention maps (``signed=False``) must be given as weight / uniform (``relative_map``)."""
    data, kwargs = volume_layer_data(np.asarray(vmap.data, dtype=np.float32), np.asarray(vmap.affine, float))
    kwargs.update(_display(data, signed))
    kwargs["metadata"] = {"anchorad": {"role": "overlay-smri", "description": description}}
    kwargs["visible"] = True
    return data, kwargs


def roi_map_layer(rmap: Any, signed: bool, description: str) -> tuple[np.ndarray, dict[str, Any]]:
    """Layer data + kwargs of an fMRI :class:`RoiMap` painted into its atlas (attention: weight / uniform)."""
    from anchorad_core import paint_atlas

    img = paint_atlas(np.asarray(rmap.values, dtype=np.float64), rmap.atlas)
    data, kwargs = volume_layer_data(np.asarray(img.dataobj, dtype=np.float32), img.affine)
    kwargs.update(_display(data, signed))
    kwargs["metadata"] = {"anchorad": {"role": "overlay-fmri", "description": description}}
    kwargs["visible"] = True
    return data, kwargs
