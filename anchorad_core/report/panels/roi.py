"""fMRI panel: ROI values painted into the atlas, and the top-10 ROIs (unless near uniform)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..anatomy import Anatomy
from ..layout import Box
from ..text import roi_short
from .ortho import draw_ortho_slices, ras_zooms

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ...explain.maps import RoiMap

BRAIN_SHARE = 0.55  # of the panel's height, for the slices (at the top)
BARS_X_SHARE = 0.27  # the bar chart starts this far into the panel's width
BARS_WIDTH_SHARE = 0.62
BARS_BOTTOM = 0.025
BARS_TRIM = 0.05
TOP_ROIS = 10


def roi_panel(fig: "Figure", mp: "RoiMap", box: Box, diverging: bool, anatomy: Anatomy,
              near_uniform: bool = False, verdict: str = "") -> None:
    """Draw ``mp`` painted into the atlas and, unless ``near_uniform``, a bar chart of its top ROIs.

    ``diverging``: an attribution map (signed); else attention as weight / uniform.
    ``verdict``: the uniformity verdict, said instead of the bar chart when ``near_uniform``.
    """
    import nibabel as nib

    from ...explain.maps import paint_atlas

    x0, y0, w, h = box
    brain_h = h * BRAIN_SHARE
    try:
        painted = paint_atlas(mp.values, mp.atlas)
        bg, atlas, bg_name = anatomy.atlas_background()
        ornt = nib.orientations.io_orientation(atlas.affine)
        data = nib.orientations.apply_orientation(np.asarray(painted.dataobj), ornt)
        bgr = nib.orientations.apply_orientation(bg, ornt)
        zooms = ras_zooms(atlas.affine, ornt)
        peak_roi = int(np.argmax(np.abs(mp.values))) + 1
        labels = nib.orientations.apply_orientation(np.asarray(atlas.dataobj), ornt)
        where = np.argwhere(labels == peak_roi)
        cut = where[len(where) // 2] if len(where) else np.array(data.shape) // 2
        draw_ortho_slices(fig, bgr, data, zooms, cut, Box(x0, y0 + h - brain_h, w, brain_h), diverging,
                          f"ROI values painted into the Schaefer-400 atlas on the {bg_name}; cut through the top ROI")
    except ValueError:
        fig.text(x0, y0 + h - 0.03, "ROIs do not match the shipped atlas; see the TSV", fontsize=8)
    if near_uniform:
        fig.text(x0 + BARS_X_SHARE * w, y0 + (h - brain_h) / 2, verdict + "; no top ROIs listed",
                 fontsize=8.5, color="#9a6700", va="center")
        return
    top = mp.top(TOP_ROIS)
    ax = fig.add_axes((x0 + BARS_X_SHARE * w, y0 + BARS_BOTTOM, BARS_WIDTH_SHARE * w, h - brain_h - BARS_TRIM))
    names = [f"{row.network} · {roi_short(row.name)}" for row in top.itertuples()]
    vals = top["value"].to_numpy()
    colours = ["#c44e52" if v >= 0 else "#4c72b0" for v in vals]
    ax.barh(np.arange(len(vals))[::-1], vals, color=colours, height=0.7)
    ax.set_yticks(np.arange(len(vals))[::-1], names, fontsize=6.5)
    ax.set_title(f"top-{TOP_ROIS} ROIs by |value| (network · parcel)" + ("" if diverging else ", weight / uniform"),
                 fontsize=7.5, pad=2)
    ax.tick_params(axis="x", labelsize=6.5)
    ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 3))
    ax.xaxis.get_offset_text().set_fontsize(6.5)
    ax.axvline(0, color="0.4", lw=0.6)
