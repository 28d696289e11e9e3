"""The base of every AnchorAD dock widget: the viewer's session, a job slot, the shared labels.

A panel is a view over the core session (``panel.session.core``): it reads the state there,
starts the session's generators as jobs (:meth:`AnchorADPanel.start`), and redraws on the
session's signals. Panels never import each other.
"""
from __future__ import annotations

import html
from typing import Any, Callable

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QLabel, QWidget

from ._session import session_for
from ._style import WARN_COLOR
from ._workers import start_job

__all__ = ["AnchorADPanel"]


class AnchorADPanel(QWidget):
    """A dock widget over its viewer's :class:`~anchorad_gui._session.Session`.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    object_name : str
        The Qt object name (tests and style sheets find the panel by it).
    """

    def __init__(self, napari_viewer: Any, object_name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.worker: Any = None  # the panel's running job
        self.setObjectName(object_name)

    @property
    def core(self) -> Any:
        """The Qt-free :class:`anchorad_core.session.Session`."""
        return self.session.core

    # ------------------------------------------------------------------ jobs
    def start(self, job: Callable[..., Any], *args: Any, desc: str, what: str,
              on_return: Callable[[Any], None] | None = None, on_step: Callable[[Any], None] | None = None,
              on_done: Callable[[Any], None] | None = None) -> Any:
        """Run the step generator ``job(*args)`` in a worker (:func:`._workers.start_job`); returns the worker."""
        return start_job(self.session, job, *args, desc=desc, on_return=on_return, on_step=on_step,
                         on_done=on_done, what=what)

    def cancel(self) -> None:
        """Stop the panel's job at its next stage (nothing it computed is kept)."""
        if self.worker is not None:
            self.worker.quit()

    # ------------------------------------------------------------------ labels
    @staticmethod
    def rich_label(text: str = "", color: str = "") -> QLabel:
        """A word-wrapped rich-text label."""
        label = QLabel(text)
        label.setWordWrap(True)
        label.setTextFormat(Qt.RichText)
        if color:
            label.setStyleSheet(f"color: {color};")
        return label

    def make_stale_label(self) -> QLabel:
        """The warning that the shown result is stale (hidden until it is)."""
        label = self.rich_label(color=WARN_COLOR)
        label.setVisible(False)
        return label

    def show_stale(self, label: QLabel, advice: str, bold: bool = False) -> list[str]:
        """Fill ``label`` with the session's stale reasons and ``advice`` (hidden when there are none)."""
        reasons = self.session.stale_reasons()
        word = "<b>Stale</b>" if bold else "Stale"
        label.setText(f"&#9888; {word}: {html.escape('; '.join(reasons))}. {advice}" if reasons else "")
        label.setVisible(bool(reasons))
        return reasons
