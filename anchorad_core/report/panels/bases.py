"""Genetics panel: one score track per DNA string, the APOE SNPs marked, the top 6-mers listed."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..layout import Box

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ...explain.maps import BaseMap

#: The APOE SNPs and their 0-based index in the shipped APOE sequence.
APOE_SNPS = (("rs429358", 387), ("rs7412", 525))
TRACK_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#8172b2")
AXES_LEFT = 0.05  # room for the y label
AXES_RIGHT_TRIM = 0.06
AXES_BOTTOM = 0.05  # room for the x label and the 6-mer line
AXES_TRIM = 0.085
NOTE_Y = 0.002
TOP_KMERS = 3


def bases_panel(fig: "Figure", mp: "BaseMap", box: Box, diverging: bool, near_uniform: bool = False,
                verdict: str = "") -> None:
    """Draw every sequence's per-base track with the APOE SNPs and, unless ``near_uniform``, the top 6-mers.

    ``diverging``: attribution scores (signed); else attention as weight / uniform.
    ``verdict``: the uniformity verdict, said instead of the 6-mers when ``near_uniform``.
    """
    x0, y0, w, h = box
    ax = fig.add_axes((x0 + AXES_LEFT, y0 + AXES_BOTTOM, w - AXES_RIGHT_TRIM, h - AXES_TRIM))
    for i, track in enumerate(mp.tracks):
        ax.plot(np.arange(len(track)), track, lw=0.8, color=TRACK_COLOURS[i % len(TRACK_COLOURS)],
                label=f"sequence {i + 1}")
    length = max((len(t) for t in mp.tracks), default=0)
    ymax = max((float(np.max(np.abs(t))) for t in mp.tracks if len(t)), default=1.0) or 1.0
    for rsid, index in APOE_SNPS:
        if index < length:
            ax.axvline(index, color="#a00000", lw=0.8, ls="--")
            ax.text(index, ymax * 1.05, f"{rsid}\n(index {index})", color="#a00000", fontsize=6.5, ha="center",
                    va="bottom")
    ax.set_ylim(-ymax * 1.1 if diverging else 0, ymax * 1.45)
    ax.set_xlim(0, max(length, 1))
    ax.set_xlabel("base position in the sequence (0-based)")
    ax.set_ylabel("score per base" if diverging else "weight / uniform")
    if not diverging:
        ax.axhline(1.0, color="0.5", lw=0.6, ls="--")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    ax.legend(loc="upper left", frameon=False, fontsize=6.5)
    if diverging:
        ax.axhline(0, color="0.5", lw=0.5)
    top = sorted(mp.kmers, key=lambda k: -abs(k.score))[:TOP_KMERS]
    if near_uniform:
        fig.text(x0 + AXES_LEFT, y0 + NOTE_Y, verdict + "; no top 6-mers listed", fontsize=6.5, color="#9a6700")
    elif top:
        kmers = ";  ".join(f"seq {k.sequence + 1} [{k.start}-{k.end}) {k.kmer} {k.score:+.2g}" for k in top)
        fig.text(x0 + AXES_LEFT, y0 + NOTE_Y, "top 6-mers: " + kmers, fontsize=6.5, color="0.3")
