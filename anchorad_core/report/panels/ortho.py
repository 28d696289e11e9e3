"""Three orthogonal slices (sagittal, coronal, axial) of a volume with a map over it."""
from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..layout import PAGE_SIZE, Box

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CAPTION_SPACE = 0.03  # under the slices
SLICE_TITLE_SPACE = 0.025  # over the slices
SLICE_GAP = 0.008
COLORBAR_SPACE = 0.06  # at the right of the three slices
COLORBAR_OFFSET = 0.005
COLORBAR_WIDTH = 0.012
COLORBAR_BOTTOM = 0.04
COLORBAR_TRIM = 0.09
CAPTION_Y = 0.004
CAPTION_FONT_PT = 7
SIGNED_THRESHOLD = 0.2  # signed maps: |value| under this share of the max is transparent
VIEWS = (("sagittal", 0), ("coronal", 1), ("axial", 2))


def ras_zooms(affine: np.ndarray, ornt: np.ndarray) -> np.ndarray:
    """Voxel sizes along the RAS axes of a volume reoriented with ``ornt``."""
    sizes = np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))
    out = np.empty(3)
    for i, (axis, _) in enumerate(ornt):
        out[int(axis)] = sizes[i]
    return out


def draw_ortho_slices(fig: "Figure", background: np.ndarray, overlay: np.ndarray | None,
                      zooms: "np.ndarray | Sequence[float]", cut: "np.ndarray | Sequence[int]", box: Box,
                      diverging: bool, caption: str) -> None:
    """Slices of ``background`` (RAS) through ``cut`` with ``overlay`` over them, a colour bar and a caption.

    ``diverging``: a signed map (blue-red, small values transparent); else attention as
    weight / uniform (at or below 1 transparent).
    """
    from matplotlib.ticker import ScalarFormatter

    x0, y0, w, h = box
    vmax = float(np.max(np.abs(overlay))) if overlay is not None and np.any(overlay) else 1.0
    vmin = 0.0
    if diverging:
        thr = SIGNED_THRESHOLD * vmax
        rule = f"|value| < {SIGNED_THRESHOLD:.0%} of max ({vmax:.2g}) transparent"
    else:  # attention as weight / uniform: at or below uniform transparent, scale to max(2, max)
        vmin, vmax = 1.0, max(2.0, vmax)
        thr = 1.0
        rule = "weight / uniform; at or below the uniform level (1) transparent"
    lo, hi = np.percentile(background[background > 0], [1, 99.5]) if np.any(background > 0) else (0.0, 1.0)
    cmap = "RdBu_r" if diverging else "hot"
    pw = (w - COLORBAR_SPACE) / 3
    im = None
    for i, (vname, axis) in enumerate(VIEWS):
        ax = fig.add_axes((x0 + i * pw, y0 + CAPTION_SPACE, pw - SLICE_GAP, h - CAPTION_SPACE - SLICE_TITLE_SPACE))
        sl_bg = np.take(background, cut[axis], axis=axis)
        other = [a for a in range(3) if a != axis]
        aspect = zooms[other[1]] / zooms[other[0]]
        ax.imshow(sl_bg.T, cmap="gray", origin="lower", vmin=lo, vmax=hi, aspect=aspect, interpolation="nearest")
        if overlay is not None:
            sl = np.take(overlay, cut[axis], axis=axis).T
            shown = np.ma.masked_where(np.abs(sl) < thr, sl)
            im = ax.imshow(shown, cmap=cmap, origin="lower", alpha=0.75, aspect=aspect, interpolation="nearest",
                           vmin=-vmax if diverging else vmin, vmax=vmax)
        ax.set_title(f"{vname} {('x', 'y', 'z')[axis]}={cut[axis]}", fontsize=7.5, pad=2)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.text(0.97, 0.03, "A" if axis == 0 else "R", transform=ax.transAxes, color="w", fontsize=7, ha="right")
    if im is not None:
        cax = fig.add_axes((x0 + 3 * pw + COLORBAR_OFFSET, y0 + COLORBAR_BOTTOM, COLORBAR_WIDTH, h - COLORBAR_TRIM))
        cb = fig.colorbar(im, cax=cax)
        cb.ax.tick_params(labelsize=6.5)
        if isinstance(cb.formatter, ScalarFormatter):  # the default
            cb.formatter.set_powerlimits((-2, 3))
        cb.update_ticks()
    chars = max(30, int((w + 0.02) * PAGE_SIZE[0] * 72 / (0.52 * CAPTION_FONT_PT)))
    text = caption + (f"; {rule}" if overlay is not None else "")
    fig.text(x0, y0 + CAPTION_Y, "\n".join(textwrap.wrap(text, chars)[:2]), fontsize=CAPTION_FONT_PT, color="0.3",
             va="bottom", linespacing=1.1)
