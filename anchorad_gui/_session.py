"""The state the AnchorAD panels of one viewer share: subject, typed inputs, diagnosis, explanation.

napari builds each dock widget on its own; :func:`session_for` gives them the one
:class:`Session` of their viewer, and the panels talk through its Qt signals:

* :attr:`Session.subject_changed` - a subject folder was opened (files, note and genetics text);
* :attr:`Session.diagnosis_changed` - a diagnosis finished (or was cleared);
* :attr:`Session.explanation_changed` - the Inspect panel computed explanations;
* :attr:`Session.busy_changed` - a long job started / ended (panels disable their buttons).

The session also owns the layers AnchorAD adds to the viewer (:meth:`Session.set_layer`),
replacing them in place by name so that nothing piles up.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qtpy.QtCore import QObject, Signal

__all__ = ["Session", "session_for", "SubjectState", "DiagnosisState", "report_error"]

_SESSIONS: "weakref.WeakKeyDictionary[Any, Session]" = weakref.WeakKeyDictionary()

#: Largest genetics / note file copied into the editable boxes.
MAX_PREFILL_BYTES = 2_000_000


def report_error(exc: BaseException, what: str = "") -> None:
    """Show an error as a napari notification (never raise)."""
    from napari.utils.notifications import show_error

    from anchorad_core.errors import AnchorADError

    if isinstance(exc, AnchorADError):
        message = str(exc)
    else:
        message = f"{type(exc).__name__}: {exc}"
    show_error(f"AnchorAD{(' - ' + what) if what else ''}: {message}")


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


class Session(QObject):
    """Shared state of the AnchorAD panels of one viewer (see the module docstring)."""

    subject_changed = Signal()
    inputs_changed = Signal()
    diagnosis_changed = Signal()
    explanation_changed = Signal()
    busy_changed = Signal(bool)

    def __init__(self, viewer: Any) -> None:
        super().__init__()
        self._viewer = weakref.ref(_unwrap(viewer))
        self.subject: SubjectState | None = None
        self.clinical_override: "str | None" = None  # set by the Subject panel when edited
        self.genetics_override: "str | None" = None
        self.clinical_edited = False
        self.genetics_edited = False
        self.result: DiagnosisState | None = None
        self.explanation: Any = None
        self._busy = 0

    # ------------------------------------------------------------------ viewer & layers
    @property
    def viewer(self) -> Any:
        """The napari viewer (``None`` once it is gone)."""
        return self._viewer()

    def set_layer(self, name: str, data: Any, kwargs: dict[str, Any], kind: str = "image") -> Any:
        """Add the layer ``name`` or update it in place (data, transform, display settings)."""
        viewer = self.viewer
        if viewer is None:
            return None
        kwargs = dict(kwargs)
        kwargs.pop("name", None)
        if name in viewer.layers:
            layer = viewer.layers[name]
            if layer.__class__.__name__.lower() == kind and getattr(layer.data, "ndim", None) == getattr(data, "ndim", None):
                for key in ("scale", "translate", "affine", "axis_labels", "units"):
                    kwargs.pop(key, None)  # same grid within a subject; keep the layer's transform
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
        for layer in list(viewer.layers):
            meta = layer.metadata.get("anchorad") if isinstance(layer.metadata, dict) else None
            role = str(meta.get("role", "")) if isinstance(meta, dict) else ""
            if role and role.startswith(role_prefix):
                viewer.layers.remove(layer)

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

    # ------------------------------------------------------------------ results
    def set_result(self, result: DiagnosisState | None) -> None:
        """Store a diagnosis (clears the explanation)."""
        self.result = result
        self.explanation = None
        self.diagnosis_changed.emit()
        self.explanation_changed.emit()

    def set_explanation(self, explanation: Any) -> None:
        """Store explanations computed for the current diagnosis."""
        self.explanation = explanation
        self.explanation_changed.emit()

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
    if files.clinical_note is not None or files.clinical_json is not None:
        clinical = read_clinical(files.clinical_note, files.clinical_json, warnings)
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
