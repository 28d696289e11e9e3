"""The Qt face of the core session: one :class:`anchorad_core.session.Session` per viewer, with signals.

napari builds each dock widget on its own; :func:`session_for` gives them the one
:class:`Session` of their viewer. The state (subject, edits, model, diagnosis, explanations,
stale rules) lives in the Qt-free core session, :attr:`Session.core`; the panels run its
generators in workers (:mod:`._workers`) and talk through these signals:

* :attr:`Session.subject_changed` - a subject folder was opened (files, note and genetics text);
* :attr:`Session.inputs_changed` - the note or the genetics was edited;
* :attr:`Session.diagnosis_changed` - a diagnosis finished (or was cleared);
* :attr:`Session.explanation_changed` - explanations were computed;
* :attr:`Session.stale_changed` - the shown result no longer matches the inputs, or no longer
  fails to (:meth:`Session.stale_reasons`);
* :attr:`Session.busy_changed` - a long job started / ended (panels disable their buttons).

**One subject per viewer.** Every way of opening a subject ends in :meth:`Session.set_subject`:
the Subject panel (:func:`anchorad_core.session.read_subject` in a worker, then
:meth:`Session.apply_subject`), and napari's own ways - File > Open Folder and drag and drop
(the npe2 reader) and File > Open Sample - whose layers the session adopts as they are inserted
(:meth:`Session._adopt_pending`). The previous subject's layers (images and maps,
:mod:`._layers`) are replaced, not stacked; an open that fails changes nothing.
"""
from __future__ import annotations

import logging
import weakref
from pathlib import Path
from typing import Any

from qtpy.QtCore import QObject, QTimer, Signal

from anchorad_core.session import PIPELINES, DiagnosisResult, OpenedSubject, read_subject
from anchorad_core.session import Session as CoreSession

from ._layers import OVERLAY_ROLES, SUBJECT_ROLES, ViewerLayers, anchorad_meta, is_pending

__all__ = ["Session", "session_for", "report_error", "anchorad_meta", "SUBJECT_ROLES", "OVERLAY_ROLES"]

log = logging.getLogger("anchorad_gui")

_SESSIONS: "weakref.WeakKeyDictionary[Any, Session]" = weakref.WeakKeyDictionary()


def report_error(error: "BaseException | str", what: str = "") -> str:
    """Show an error as a napari notification (never raise); returns the one-line reason shown.

    The notification reads ``AnchorAD - <what>: <reason>`` on one line, the reason whole
    (an AnchorAD error's message, else ``Type: message``).
    """
    from napari.utils.notifications import show_error

    from ._workers import failure_reason

    reason = error if isinstance(error, str) else failure_reason(error)
    try:
        show_error(f"AnchorAD{(' - ' + what) if what else ''}: {reason}")
    except Exception:  # the notice is best effort; the panels show the reason too
        log.exception("could not show a notification: %s", reason)
    return reason


class Session(QObject):
    """The AnchorAD state of one viewer, with Qt signals (see the module docstring)."""

    subject_changed = Signal()
    inputs_changed = Signal()
    diagnosis_changed = Signal()
    explanation_changed = Signal()
    stale_changed = Signal()
    busy_changed = Signal(bool)

    def __init__(self, viewer: Any) -> None:
        super().__init__()
        viewer = _unwrap(viewer)
        #: the Qt-free session: subject, model, diagnosis, explanations (models shared process-wide)
        self.core = CoreSession(cache=PIPELINES)
        self.layers = ViewerLayers(viewer, lambda: self.core.stale)
        self._busy = 0
        self._stale_shown: tuple[str, ...] = ()
        self._adopt_scheduled = False
        self.inputs_changed.connect(self._check_stale)
        napari_layers = getattr(viewer, "layers", None)
        if napari_layers is not None:
            napari_layers.events.inserted.connect(self._layer_inserted)
            if any(is_pending(layer) for layer in napari_layers):
                self._schedule_adopt()  # opened through napari before any AnchorAD panel existed

    # ------------------------------------------------------------------ state (the core's)
    @property
    def viewer(self) -> Any:
        """The napari viewer (``None`` once it is gone)."""
        return self.layers.viewer

    @property
    def subject(self) -> OpenedSubject | None:
        """The open subject."""
        return self.core.subject

    @property
    def result(self) -> DiagnosisResult | None:
        """The shown diagnosis (possibly stale)."""
        return self.core.result

    @property
    def explanation(self) -> Any:
        """The explanations of :attr:`result` computed so far (a core ``SubjectExplanation``)."""
        return self.core.explanation

    def overrides(self) -> dict[str, Any]:
        """The edited inputs (text; ``None``: missing)."""
        return self.core.overrides()

    def current_inputs(self) -> dict[str, Any]:
        """What a diagnosis run now would be computed from."""
        return self.core.current_inputs()

    def stale_reasons(self) -> list[str]:
        """Why the shown diagnosis no longer matches the inputs (empty: it does, or there is none)."""
        return self.core.stale_reasons()

    @property
    def stale(self) -> bool:
        """Whether :meth:`stale_reasons` has any."""
        return self.core.stale

    # ------------------------------------------------------------------ layers
    def anchorad_layers(self, roles: "tuple[str, ...] | None" = None) -> list[Any]:
        """The viewer's AnchorAD layers (of the given roles; default all)."""
        return self.layers.anchorad_layers(roles)

    def overlay(self, role: str) -> Any:
        """The overlay layer of ``role``, or ``None``."""
        return self.layers.overlay(role)

    def set_overlay(self, role: str, caption: str, data: Any, kwargs: dict[str, Any]) -> Any:
        """Add the overlay of ``role`` or update it in place (:meth:`ViewerLayers.set_overlay`)."""
        return self.layers.set_overlay(role, caption, data, kwargs)

    def remove_layers(self, role_prefix: str) -> None:
        """Remove AnchorAD layers whose role starts with ``role_prefix``."""
        self.layers.remove_layers(role_prefix)

    # ------------------------------------------------------------------ opening a subject
    def apply_subject(self, state: OpenedSubject, layers: list) -> None:
        """Make ``state`` the viewer's subject: its layers replace every AnchorAD layer; results cleared."""
        self.layers.replace_subject(layers)
        self.set_subject(state)
        if layers:
            self.layers.reset_view()

    def set_subject(self, state: OpenedSubject | None) -> None:
        """Make ``state`` the current subject (clears edits and results)."""
        self.core.set_subject(state)
        self._result_changed()
        self.subject_changed.emit()

    def _layer_inserted(self, event: Any) -> None:
        if self.layers.applying or not is_pending(getattr(event, "value", None)):
            return
        self._schedule_adopt()

    def _schedule_adopt(self) -> None:
        # napari inserts a reader's layers one by one: adopt them together, once it is done
        if not self._adopt_scheduled:
            self._adopt_scheduled = True
            QTimer.singleShot(0, self._adopt_pending)

    def _adopt_pending(self) -> None:
        """Adopt subject layers napari added (reader, sample data, drag and drop) as the subject."""
        self._adopt_scheduled = False
        pending = self.layers.pending()
        if not pending:
            return
        folder = Path(anchorad_meta(pending[-1])["folder"])
        batch = [layer for layer in pending if Path(anchorad_meta(layer)["folder"]) == folder]
        try:
            state = read_subject(folder)
        except Exception as exc:  # a failed open changes nothing: take its layers back out
            log.error("AnchorAD: opening %s failed", folder, exc_info=exc)
            self.layers.drop(pending)
            report_error(exc, f"open {folder.name}")
            return
        self.layers.adopt(batch)
        self.set_subject(state)
        self.layers.reset_view()

    # ------------------------------------------------------------------ results
    def set_result(self, result: DiagnosisResult | None) -> None:
        """Show ``result`` as a new diagnosis (its explanations and the stale marks are cleared)."""
        self.core.set_result(result)
        self._result_changed()

    def select_bundle(self, bundle: "str | Path", device: str, dtype: str) -> None:
        """Choose the model of the next diagnosis (a result of another model becomes stale)."""
        self.core.select_bundle(bundle, device, dtype)
        self._check_stale()

    def diagnosis_done(self) -> None:
        """A diagnosis job committed its result to the core session: show it."""
        self._result_changed()

    def set_explanation(self, explanation: Any) -> None:
        """Store explanations computed for the current diagnosis."""
        self.core.set_explanation(explanation)
        self.explanation_changed.emit()

    def mark_stale(self, why: str) -> None:
        """A run after the shown result was ``why`` (``"cancelled"`` / ``"failed"``)."""
        self.core.mark_stale(why)
        self._check_stale()

    def _result_changed(self) -> None:
        if self.core.result is None:
            self.layers.remove_layers("overlay")
        self.diagnosis_changed.emit()
        self.explanation_changed.emit()
        self._check_stale()

    def _check_stale(self) -> None:
        reasons = tuple(self.stale_reasons())
        self.layers.rename_overlays()
        if reasons != self._stale_shown:
            self._stale_shown = reasons
            self.stale_changed.emit()

    # ------------------------------------------------------------------ busy
    @property
    def busy(self) -> bool:
        """Whether a diagnosis / explanation / report job is running."""
        return self._busy > 0

    def begin(self) -> None:
        """A job started."""
        self._busy += 1
        if self._busy == 1:
            self.busy_changed.emit(True)

    def end(self) -> None:
        """A job ended (finished, failed or cancelled)."""
        self._busy = max(0, self._busy - 1)
        if self._busy == 0:
            self.busy_changed.emit(False)


def session_for(viewer: Any) -> Session:
    """The :class:`Session` of ``viewer`` (created on first use)."""
    viewer = _unwrap(viewer)
    session = _SESSIONS.get(viewer)
    if session is None:
        session = Session(viewer)
        _SESSIONS[viewer] = session
    return session


def _unwrap(viewer: Any) -> Any:
    """The viewer itself (napari hands plugin widgets a public-only proxy of it)."""
    return getattr(viewer, "__wrapped__", viewer)
