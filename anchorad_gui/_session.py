"""The state the AnchorAD panels of one viewer share: subject, typed inputs, diagnosis, explanation.

napari builds each dock widget on its own; :func:`session_for` gives them the one
:class:`Session` of their viewer, and the panels talk through its Qt signals:

* :attr:`Session.subject_changed` - a subject folder was opened (files, note and genetics text);
* :attr:`Session.diagnosis_changed` - a diagnosis finished (or was cleared);
* :attr:`Session.explanation_changed` - the Inspect panel computed explanations;
* :attr:`Session.stale_changed` - the inputs were edited, or a later run was cancelled or
  failed, so the shown result no longer matches what the panels show (:meth:`Session.stale_reasons`);
* :attr:`Session.busy_changed` - a long job started / ended (panels disable their buttons).

**One subject per viewer.** Every way of opening a subject ends in :meth:`Session.apply_subject`:
the Subject panel (:meth:`Session.load_subject` in a worker, then ``apply_subject``), and
napari's own ways - File > Open Folder and drag and drop (the npe2 reader) and File > Open
Sample - whose layers the session adopts as they are inserted (:meth:`Session._adopt_pending`).
The previous subject's layers (images and maps) are replaced, not stacked; an open that fails
changes nothing.

The session also owns the layers AnchorAD adds to the viewer: every one carries
``metadata["anchorad"]["role"]`` (``t1``, ``fmri``, ``overlay-smri``, ``overlay-fmri``), and the
overlays are updated in place by role (:meth:`Session.set_overlay`), so that nothing piles up.
"""
from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qtpy.QtCore import QObject, QTimer, Signal

__all__ = ["Session", "session_for", "SubjectState", "DiagnosisState", "report_error", "subject_inputs",
           "SUBJECT_ROLES", "OVERLAY_ROLES"]

log = logging.getLogger("anchorad_gui")

#: Roles of a subject's own image layers, and of the explanation overlays.
SUBJECT_ROLES = ("t1", "fmri")
OVERLAY_ROLES = ("overlay-smri", "overlay-fmri")

#: Appended to the name of an overlay whose diagnosis is stale.
STALE_MARK = " [STALE]"

_SESSIONS: "weakref.WeakKeyDictionary[Any, Session]" = weakref.WeakKeyDictionary()

#: Largest genetics / note file copied into the editable boxes.
MAX_PREFILL_BYTES = 2_000_000


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
        import logging

        logging.getLogger("anchorad_gui").exception("could not show a notification: %s", reason)
    return reason


@dataclass
class SubjectState:
    """A subject folder as opened by the Subject panel (cheap: files found, text read)."""

    folder: Path
    files: Any  # anchorad_core.data.SubjectFiles
    clinical_text: str | None = None  # note rendered from the files
    genetics_text: str | None = None  # the genetics file as text, when it is a small text file
    genetics_note: str = ""  # why genetics_text is None although a file exists
    warnings: list[str] = field(default_factory=list)

    @property
    def subject_id(self) -> str:
        """The folder name (``sub-...``)."""
        return self.folder.name


@dataclass
class DiagnosisState:
    """A finished diagnosis and what produced it."""

    pipeline: Any  # DiagnosisPipeline
    subject: Any  # Subject (preprocessed inputs, with smri_geometry)
    diagnosis: Any  # Diagnosis (return_outputs=True)
    key: tuple[str, str, str]  # bundle, device, dtype
    seconds: float = 0.0
    #: what it was computed from (:func:`subject_inputs`): folder and the typed overrides
    inputs: dict[str, Any] = field(default_factory=dict)


def subject_inputs(folder: "str | Path | None", overrides: "dict[str, Any] | None") -> dict[str, Any]:
    """The inputs a diagnosis is computed from, comparable with ``==``."""
    return {"folder": str(Path(folder).expanduser().resolve()) if folder is not None else None,
            "overrides": dict(overrides or {})}


def anchorad_meta(layer: Any) -> dict[str, Any]:
    """``layer.metadata["anchorad"]`` (empty for other layers)."""
    meta = getattr(layer, "metadata", None)
    value = meta.get("anchorad") if isinstance(meta, dict) else None
    return value if isinstance(value, dict) else {}


class Session(QObject):
    """Shared state of the AnchorAD panels of one viewer (see the module docstring)."""

    subject_changed = Signal()
    inputs_changed = Signal()
    diagnosis_changed = Signal()
    explanation_changed = Signal()
    stale_changed = Signal()
    busy_changed = Signal(bool)

    def __init__(self, viewer: Any) -> None:
        super().__init__()
        viewer = _unwrap(viewer)
        self._viewer = weakref.ref(viewer)
        self.subject: SubjectState | None = None
        self.clinical_override: "str | None" = None  # set by the Subject panel when edited
        self.genetics_override: "str | None" = None
        self.clinical_edited = False
        self.genetics_edited = False
        self.result: DiagnosisState | None = None
        self.explanation: Any = None
        self._busy = 0
        self._later_run = ""  # "cancelled" / "failed": a run after the shown result did not finish
        self._stale_shown: tuple[str, ...] = ()
        self._applying = 0  # > 0 while the session itself adds or removes layers
        self._adopt_scheduled = False
        self.inputs_changed.connect(self._check_stale)
        layers = getattr(viewer, "layers", None)
        if layers is not None:
            layers.events.inserted.connect(self._layer_inserted)
            if any(self._pending(layer) for layer in layers):
                self._schedule_adopt()  # opened through napari before any AnchorAD panel existed

    # ------------------------------------------------------------------ viewer & layers
    @property
    def viewer(self) -> Any:
        """The napari viewer (``None`` once it is gone)."""
        return self._viewer()

    def anchorad_layers(self, roles: "tuple[str, ...] | None" = None) -> list[Any]:
        """The viewer's AnchorAD layers (of the given roles; default all)."""
        viewer = self.viewer
        if viewer is None:
            return []
        return [layer for layer in viewer.layers
                if anchorad_meta(layer).get("role") and (roles is None or anchorad_meta(layer)["role"] in roles)]

    def overlay(self, role: str) -> Any:
        """The overlay layer of ``role`` (``"overlay-smri"`` / ``"overlay-fmri"``), or ``None``."""
        found = self.anchorad_layers((role,))
        return found[0] if found else None

    def set_overlay(self, role: str, caption: str, data: Any, kwargs: dict[str, Any]) -> Any:
        """Add the overlay of ``role`` or update it in place; its name is ``caption`` (+ the stale mark)."""
        viewer = self.viewer
        if viewer is None:
            return None
        kwargs = dict(kwargs)
        kwargs.pop("name", None)
        meta = dict(kwargs.pop("metadata", {}).get("anchorad", {}))
        meta.update(role=role, caption=caption)
        layer = self.overlay(role)
        with self._own_changes():
            if layer is not None and getattr(layer.data, "ndim", None) == getattr(data, "ndim", None):
                for key in ("scale", "translate", "affine", "axis_labels", "units"):
                    kwargs.pop(key, None)  # same grid within a subject; keep the layer's transform
                layer.data = data
                for key, value in kwargs.items():
                    setattr(layer, key, value)
                layer.metadata["anchorad"] = meta
            else:
                if layer is not None:
                    viewer.layers.remove(layer)
                layer = viewer.add_image(data, name=self._unique(caption), metadata={"anchorad": meta}, **kwargs)
        self._name_overlay(layer)
        return layer

    def set_layer(self, name: str, data: Any, kwargs: dict[str, Any], kind: str = "image") -> Any:
        """Add the layer ``name`` or update it in place (data, transform, display settings)."""
        viewer = self.viewer
        if viewer is None:
            return None
        kwargs = dict(kwargs)
        kwargs.pop("name", None)
        with self._own_changes():
            if name in viewer.layers:
                layer = viewer.layers[name]
                if layer.__class__.__name__.lower() == kind and getattr(layer.data, "ndim", None) == getattr(data, "ndim", None):
                    for key in ("scale", "translate", "affine", "axis_labels", "units"):
                        kwargs.pop(key, None)
                    layer.data = data
                    for key, value in kwargs.items():
                        if key in ("metadata",):
                            layer.metadata.update(value)
                        else:
                            setattr(layer, key, value)
                    return layer
                viewer.layers.remove(name)
            add = getattr(viewer, f"add_{kind}")
            return add(data, name=name, **kwargs)

    def remove_layers(self, role_prefix: str) -> None:
        """Remove AnchorAD layers whose metadata role starts with ``role_prefix``."""
        viewer = self.viewer
        if viewer is None:
            return
        with self._own_changes():
            for layer in self.anchorad_layers():
                if str(anchorad_meta(layer).get("role", "")).startswith(role_prefix):
                    viewer.layers.remove(layer)

    def _unique(self, name: str) -> str:
        viewer = self.viewer
        if viewer is None or name not in viewer.layers:
            return name
        i = 2
        while f"{name} ({i})" in viewer.layers:
            i += 1
        return f"{name} ({i})"

    def _name_overlay(self, layer: Any) -> None:
        meta = anchorad_meta(layer)
        caption = str(meta.get("caption") or layer.name).removesuffix(STALE_MARK)
        stale = bool(self.stale_reasons()) and meta.get("role") in OVERLAY_ROLES
        meta["stale"] = stale
        wanted = caption + (STALE_MARK if stale else "")
        if layer.name != wanted:
            others = [other for other in self.viewer.layers if other is not layer]
            layer.name = wanted if wanted not in [o.name for o in others] else self._unique(wanted)

    class _Own:
        def __init__(self, session: "Session") -> None:
            self.session = session

        def __enter__(self) -> None:
            self.session._applying += 1

        def __exit__(self, *exc: Any) -> None:
            self.session._applying -= 1

    def _own_changes(self) -> "_Own":
        """Context in which layer insertions are the session's own (not a subject to adopt)."""
        return Session._Own(self)

    # ------------------------------------------------------------------ opening a subject
    def apply_subject(self, state: SubjectState, layers: list) -> None:
        """Make ``state`` the viewer's subject: its layers replace every AnchorAD layer; results cleared."""
        viewer = self.viewer
        if viewer is not None:
            with self._own_changes():
                for layer in self.anchorad_layers():
                    viewer.layers.remove(layer)
                for data, kwargs, kind in layers:
                    kwargs = dict(kwargs)
                    meta = kwargs.setdefault("metadata", {}).setdefault("anchorad", {})
                    meta["adopted"] = True
                    getattr(viewer, f"add_{kind}")(data, **kwargs)
        self.set_subject(state)
        if layers:
            self._reset_view()

    def _reset_view(self) -> None:
        v = self.viewer
        if v is None:
            return
        v.dims.ndisplay = 2
        scene = getattr(v, "scene", None)  # napari >= 0.9; older: viewer.camera
        camera = scene.camera if scene is not None and hasattr(scene, "camera") else v.camera
        camera.orientation2d = ("up", "right")  # anterior up, patient's right on the right
        v.reset_view()
        if v.dims.ndim >= 4:
            v.dims.set_current_step(0, 0)

    @staticmethod
    def _pending(layer: Any) -> bool:
        meta = anchorad_meta(layer)
        return meta.get("role") in SUBJECT_ROLES and bool(meta.get("folder")) and not meta.get("adopted")

    def _layer_inserted(self, event: Any) -> None:
        if self._applying or not self._pending(getattr(event, "value", None)):
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
        viewer = self.viewer
        if viewer is None:
            return
        pending = [layer for layer in viewer.layers if self._pending(layer)]
        if not pending:
            return
        folder = Path(anchorad_meta(pending[-1])["folder"])
        batch = [layer for layer in pending if Path(anchorad_meta(layer)["folder"]) == folder]
        try:
            state = read_subject_state(folder)
        except Exception as exc:  # a failed open changes nothing: take its layers back out
            log.error("AnchorAD: opening %s failed", folder, exc_info=exc)
            with self._own_changes():
                for layer in pending:
                    viewer.layers.remove(layer)
            report_error(exc, f"open {folder.name}")
            return
        with self._own_changes():
            for layer in self.anchorad_layers():
                if any(layer is b for b in batch):
                    anchorad_meta(layer)["adopted"] = True
                else:  # the previous subject's images and maps, older copies, other pending folders
                    viewer.layers.remove(layer)
            for layer in batch:  # napari suffixes a re-opened name ("sub-001 T1 [1]"): the plain name
                base = layer.name.split(" [")[0]
                if layer.name != base and base not in viewer.layers:
                    layer.name = base
        self.set_subject(state)
        self._reset_view()

    # ------------------------------------------------------------------ subject
    def set_subject(self, state: SubjectState | None) -> None:
        """Make ``state`` the current subject (clears typed overrides and results)."""
        self.subject = state
        self.clinical_override = None
        self.genetics_override = None
        self.clinical_edited = False
        self.genetics_edited = False
        self.set_result(None)
        self.subject_changed.emit()

    def overrides(self) -> dict[str, Any]:
        """Overrides for ``DiagnosisPipeline.load_subject``: edited text; empty text = missing."""
        out: dict[str, Any] = {}
        if self.clinical_edited:
            text = (self.clinical_override or "").strip()
            out["clinical"] = text if text else None
        if self.genetics_edited:
            text = (self.genetics_override or "").strip()
            out["genetics"] = text if text else None
        return out

    def current_inputs(self) -> dict[str, Any]:
        """What a diagnosis run now would be computed from (:func:`subject_inputs`)."""
        return subject_inputs(self.subject.folder if self.subject else None, self.overrides())

    # ------------------------------------------------------------------ results
    def set_result(self, result: DiagnosisState | None) -> None:
        """Store a diagnosis (clears the explanation and the stale marks)."""
        self.result = result
        self.explanation = None
        self._later_run = ""
        if result is None:
            self.remove_layers("overlay")
        self.diagnosis_changed.emit()
        self.explanation_changed.emit()
        self._check_stale()

    def set_explanation(self, explanation: Any) -> None:
        """Store explanations computed for the current diagnosis."""
        self.explanation = explanation
        self.explanation_changed.emit()

    # ------------------------------------------------------------------ stale results
    def stale_reasons(self) -> list[str]:
        """Why the shown diagnosis no longer matches the inputs (empty: it does, or there is none)."""
        result = self.result
        if result is None:
            return []
        reasons = []
        was, now = result.inputs or {}, self.current_inputs()
        if was.get("folder") not in (None, now["folder"]):
            reasons.append("another subject is open")
        before, after = was.get("overrides", {}), now["overrides"]
        for key, what in (("clinical", "the clinical note"), ("genetics", "the genetics")):
            if before.get(key, ...) != after.get(key, ...):
                reasons.append(f"{what} changed after this diagnosis")
        if self._later_run:
            reasons.append(f"a later run was {self._later_run}")
        return reasons

    @property
    def stale(self) -> bool:
        """Whether :meth:`stale_reasons` has any."""
        return bool(self.stale_reasons())

    def mark_stale(self, why: str) -> None:
        """A run after the shown result was ``why`` (``"cancelled"`` / ``"failed"``)."""
        if self.result is not None:
            self._later_run = why
            self._check_stale()

    def _check_stale(self) -> None:
        reasons = tuple(self.stale_reasons())
        for layer in self.anchorad_layers(OVERLAY_ROLES):
            self._name_overlay(layer)
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


def read_subject_state(folder: "str | Path") -> SubjectState:
    """Find a subject's files and read its clinical text and genetics text (no preprocessing).

    Raises
    ------
    anchorad_core.errors.InputDataError
        Not a folder, or no AnchorAD data in it, or an unreadable clinical file.
    """
    import gzip

    from anchorad_core.data import find_subject_files, read_clinical
    from anchorad_core.errors import InputDataError
    from anchorad_core.modality import ALL_MODALITIES

    folder = Path(folder).expanduser()
    files = find_subject_files(folder)
    if not any(files.has(m) for m in ALL_MODALITIES):
        raise InputDataError(
            "not an AnchorAD subject folder: no anat/*_T1w.nii[.gz], func/, clinical/ or genetics/ files found",
            folder,
        )
    warnings = list(files.warnings)
    clinical = None
    if files.clinical_note is not None or files.clinical_json is not None or files.clinical_fields:
        clinical = read_clinical(files.clinical_note, files.clinical_json, warnings,  # a session: its table row too
                                 table_fields=files.clinical_fields, table_path=files.clinical_table)
    genetics, note = None, ""
    if files.genetics is not None:
        path = files.genetics
        if path.stat().st_size > MAX_PREFILL_BYTES:
            note = f"{path.name} is large; it is used as is (paste text to replace it)"
        else:
            try:
                raw = gzip.open(path).read() if path.name.lower().endswith(".gz") else path.read_bytes()
                genetics = raw.decode("utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                note = f"{path.name} could not be shown as text ({exc}); it is used as is"
    return SubjectState(folder, files, clinical, genetics, note, warnings)
