"""A clinical note as HTML with each word's score as its background (for a QTextEdit)."""
from __future__ import annotations

import html
from typing import Any

import numpy as np

__all__ = ["note_html"]


#: Attention words: weight / uniform at which the shade is full (1 = uniform: no shade).
RATIO_FULL = 3.0


def note_html(word_map: Any, signed: bool = False, top: int = 5, base: tuple[int, int, int] = (38, 41, 48),
              verdict: str = "", near_uniform: bool = False) -> str:
    """HTML of ``word_map.note`` with words highlighted by score.

    Attention (``signed=False``) takes a word map of **weight / uniform** (the core's
    ``relative_map``): words at or below the uniform level are not shaded, and the orange shade
    grows to full at :data:`RATIO_FULL` times uniform (an absolute scale, so a near-uniform note
    stays plain). Signed scores (attributions) shade red (towards the class) or blue (against it)
    by ``|score| / max|score|``. The ``top`` words are listed under the note, except for a
    ``near_uniform`` attention map, which shows ``verdict`` instead. Colours are blended over
    ``base`` (the text box's background) because Qt's rich text has no alpha for backgrounds.
    """
    note = word_map.note
    words = list(word_map.words)
    scores = np.array([w.score for w in words], dtype=float) if words else np.zeros(0)
    if signed or not scores.size:
        shift = 0.0
        scale = float(np.max(np.abs(scores))) if scores.size else 0.0
    else:  # weight / uniform: 1 is no shade, RATIO_FULL full shade
        shift = 1.0
        scale = RATIO_FULL - 1.0
    scale = scale if scale > 0 else 1.0
    parts: list[str] = []
    pos = 0
    for w, s in zip(words, scores):
        parts.append(html.escape(note[pos:w.start]).replace("\n", "<br>"))
        strength = min(1.0, abs(s - shift) / scale) if signed else min(1.0, max(0.0, s - shift) / scale)
        if signed and s < 0:
            rgb = (40, 120, 255)
        elif signed:
            rgb = (255, 60, 40)
        else:
            rgb = (255, 150, 0)
        alpha = 0.1 + 0.75 * strength if strength > 0.02 else 0.0
        text = html.escape(note[w.start:w.end])
        if alpha > 0:
            mixed = "#" + "".join(f"{int(round(b + alpha * (c - b))):02x}" for c, b in zip(rgb, base))
            parts.append(f"<span style='background-color:{mixed};'>{text}</span>")
        else:
            parts.append(text)
        pos = w.end
    parts.append(html.escape(note[pos:]).replace("\n", "<br>"))
    body = "".join(parts)
    if verdict and not signed:
        body += f"<p style='color:#9e9e9e'>{html.escape(verdict)}</p>"
    if scores.size and not (near_uniform and not signed):
        order = np.argsort(-np.abs(scores) if signed else -scores)[:top]
        listed = ", ".join(f"<b>{html.escape(words[i].word)}</b> {scores[i]:+.3g}" if signed
                           else f"<b>{html.escape(words[i].word)}</b> {scores[i]:.2f}x uniform" for i in order)
        body += f"<p style='color:#9e9e9e'>Top words: {listed}</p>"
    return f"<div style='line-height:140%'>{body}</div>"
