"""The query x key matrix of one attention block, as weight / uniform."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..layout import Box

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ...explain.attention import BlockAttention

TITLE_SPACE = 0.02
AXES_BOTTOM = 0.02


def query_heatmap(fig: "Figure", block: "BlockAttention", box: Box) -> None:
    """Draw ``block.per_query`` times the number of valid keys (1 = uniform).

    An fMRI block's keys are summed per ROI over time, shown as the mean ratio of the ROI's tokens.
    """
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.ticker import ScalarFormatter

    x0, y0, w, h = box
    matrix = block.per_query
    xlabel = "key token"
    from ...explain.maps import RoiMap

    roi_map = block.map if block.block == "fmri" and isinstance(block.map, RoiMap) else None
    if roi_map is not None:
        p = roi_map.roi_time.shape[1]
        matrix = matrix.reshape(matrix.shape[0], -1, p).sum(axis=2)
        xlabel = "ROI (summed over time)"
    n = block.uniformity.n_keys if block.uniformity is not None else block.per_query.shape[-1]
    matrix = matrix * n
    if roi_map is not None:
        matrix = matrix / max(roi_map.roi_time.shape[1], 1)  # mean ratio of the ROI's tokens
    ax = fig.add_axes((x0, y0 + AXES_BOTTOM, w, h - TITLE_SPACE))
    im = ax.imshow(matrix, aspect="auto", cmap="RdBu_r", interpolation="nearest",
                   norm=TwoSlopeNorm(vcenter=1.0, vmin=0.0, vmax=max(2.0, float(np.max(matrix)))))
    ax.set_title("query × key weight / uniform", fontsize=7.5)
    ax.set_xlabel(xlabel, fontsize=7)
    ax.set_ylabel("query", fontsize=7)
    ax.tick_params(labelsize=6)
    cb = fig.colorbar(im, ax=ax, orientation="horizontal", pad=0.25, fraction=0.06)
    cb.ax.tick_params(labelsize=6)
    if isinstance(cb.formatter, ScalarFormatter):  # the default
        cb.formatter.set_powerlimits((-2, 3))
    cb.update_ticks()
