"""Small shared look: colours readable on napari's dark and light themes, section headings."""
from __future__ import annotations

from qtpy.QtWidgets import QLabel

__all__ = ["OK_COLOR", "BAD_COLOR", "WARN_COLOR", "MUTED_COLOR", "heading", "RESEARCH_NOTE"]

OK_COLOR = "#4caf50"
BAD_COLOR = "#ef5350"
WARN_COLOR = "#ffa726"
MUTED_COLOR = "#9e9e9e"

#: Shown under every result: AnchorAD is not a medical device.
RESEARCH_NOTE = "Research use only - not a medical device."


def heading(text: str) -> QLabel:
    """A bold section heading."""
    label = QLabel(f"<b>{text}</b>")
    label.setObjectName("anchorad_heading")
    return label
