"""Cross-modal panel: the cross-modal queries' share of attention on each auxiliary block."""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..layout import Box
from ..text import TITLES

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ...explain.attention import BlockAttention

BARS_LEFT = 0.07
BARS_WIDTH_SHARE = 0.38
QUERIES_X_SHARE = 0.55
QUERIES_WIDTH_SHARE = 0.36
AXES_BOTTOM = 0.04
AXES_TRIM = 0.08


def cross_panel(fig: "Figure", block: "BlockAttention", box: Box, missing: Sequence[str]) -> None:
    """Draw the share per auxiliary block (``missing`` ones marked) and, when known, per query."""
    from matplotlib.ticker import MaxNLocator

    x0, y0, w, h = box
    names = list(block.shares)
    ax = fig.add_axes((x0 + BARS_LEFT, y0 + AXES_BOTTOM, w * BARS_WIDTH_SHARE, h - AXES_TRIM))
    vals = [block.shares[n] for n in names]
    labels = [TITLES[n] + ("\n(missing)" if n in missing else "") for n in names]
    ax.bar(np.arange(len(names)), vals, color="#4c72b0")
    ax.set_xticks(np.arange(len(names)), labels, fontsize=7.5)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of attention")
    for i, v in enumerate(vals):
        ax.text(i, v + 0.02, f"{v:.2f}", ha="center", fontsize=7)
    ax.set_title("share per auxiliary block (sum over its queries)", fontsize=8)
    if block.query_shares is not None:
        ax2 = fig.add_axes((x0 + w * QUERIES_X_SHARE, y0 + AXES_BOTTOM, w * QUERIES_WIDTH_SHARE, h - AXES_TRIM))
        im = ax2.imshow(block.query_shares, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        ax2.set_xticks(np.arange(len(names)), [TITLES[n] for n in names], fontsize=7)
        ax2.set_ylabel("cross-modal query")
        ax2.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax2.set_title("per query", fontsize=8)
        cb = fig.colorbar(im, ax=ax2, fraction=0.05)
        cb.ax.tick_params(labelsize=6.5)
