"""Clinical-text panel: the note's words on backgrounds coloured by their score."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..layout import Box

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ...explain.maps import WordMap

FONT_PT = 8.0
CHAR_ADVANCE = 0.6  # DejaVu Sans Mono advance, in font sizes
LINE_SPACING = 1.9  # in font sizes
TEXT_BOTTOM = 0.02  # under the text: the colour bar
TEXT_TRIM = 0.03
LAST_LINE_Y = 0.08  # of the text area: lines below are cut with an ellipsis
COLORBAR_X_SHARE = 0.62
COLORBAR_WIDTH_SHARE = 0.3
COLORBAR_Y = 0.004
COLORBAR_HEIGHT = 0.008


def words_panel(fig: "Figure", mp: "WordMap", box: Box, diverging: bool, near_uniform: bool = False) -> None:
    """Draw the note word by word, each on a background of its score's colour, and a colour bar.

    ``diverging``: attribution scores (signed); else attention as weight / uniform, white at or
    below uniform (1), full at ``max(3, max)``; ``near_uniform`` says so in the colour bar's label.
    """
    import matplotlib as mpl

    x0, y0, w, h = box
    text_h = h - TEXT_TRIM
    ax = fig.add_axes((x0, y0 + TEXT_BOTTOM, w, text_h))
    ax.axis("off")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    scores = mp.scores
    vmax = float(np.max(np.abs(scores))) if scores.size and np.any(scores) else 1.0
    cmap = mpl.colormaps["RdBu_r" if diverging else "Oranges"]
    norm = mpl.colors.Normalize(-vmax, vmax) if diverging else mpl.colors.Normalize(1.0, max(3.0, vmax), clip=True)
    char_w = CHAR_ADVANCE * FONT_PT / 72.0 / (fig.get_figwidth() * w)
    line_h = LINE_SPACING * FONT_PT / 72.0 / (fig.get_figheight() * text_h)
    x, y = 0.0, 1.0 - line_h
    for i, word in enumerate(mp.words):
        text = word.word
        # note newlines between words: start a new line
        if i > 0 and "\n" in mp.note[mp.words[i - 1].end:word.start]:
            x, y = 0.0, y - line_h
        width = (len(text) + 1) * char_w
        if x + width > 1.0 and x > 0:
            x, y = 0.0, y - line_h
        if y < LAST_LINE_Y:
            ax.text(x, y, "…", fontsize=FONT_PT, family="monospace")
            break
        colour = cmap(norm(word.score))
        ax.text(x, y, text, fontsize=FONT_PT, family="monospace", va="bottom",
                bbox=dict(boxstyle="square,pad=0.12", fc=colour, ec="none"),
                color="white" if abs(norm(word.score) - (0.5 if diverging else 0.0)) > 0.35 else "black")
        x += width
    sm = mpl.cm.ScalarMappable(norm=norm, cmap=cmap)
    cax = fig.add_axes((x0 + w * COLORBAR_X_SHARE, y0 + COLORBAR_Y, w * COLORBAR_WIDTH_SHARE, COLORBAR_HEIGHT))
    cb = fig.colorbar(sm, cax=cax, orientation="horizontal")
    cb.ax.tick_params(labelsize=6.5)
    label = (f"word score (special tokens: {mp.special:+.2g})" if diverging else
             "word weight / uniform" + (" (near uniform)" if near_uniform else ""))
    fig.text(x0, y0 + COLORBAR_Y, label, fontsize=7, color="#9a6700" if near_uniform else "0.3")
