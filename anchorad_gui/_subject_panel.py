"""Subject panel: open a subject folder, see its modalities, edit the note and the genetics.

* **Open folder...** picks a ``sub-*`` folder; its T1 and fMRI become layers (the subject-folder
  reader), its clinical note (the free text, or the note rendered from the structured JSON by
  the core's fixed template) and its genetics text fill the two boxes.
* The boxes are editable: what is typed replaces the file for the next diagnosis (an emptied
  box makes the modality missing). **Reset** goes back to the files.
* The genetics box accepts an APOE genotype (``E3/E4``), FASTA, VCF text or bare DNA and is
  validated as you type with the core's :func:`~anchorad_core.session.describe_genetics`.

What is typed goes to the core session (:meth:`~anchorad_core.session.Session.edit_note`,
:meth:`~anchorad_core.session.Session.edit_genetics`), which decides what counts as an edit.
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from anchorad_core import InputDataError, Modality
from anchorad_core.session import OpenedSubject, describe_genetics, describe_note

from ._panel import AnchorADPanel
from ._session import report_error, session_for
from ._style import BAD_COLOR, MUTED_COLOR, OK_COLOR, WARN_COLOR, heading

__all__ = ["SubjectPanel", "open_subject"]

#: Debounce of the validation while typing (ms).
VALIDATE_DELAY_MS = 250


def open_subject(viewer: Any, folder: "str | Path", on_done: Any = None) -> Any:
    """Open ``folder`` in ``viewer``'s AnchorAD session (layers + text), in a worker.

    Everything is read first; only then does the subject replace the previous one
    (:meth:`Session.apply_subject`), so a folder that cannot be opened changes nothing and gives
    a napari notification, no exception. ``on_done`` gets the job's :class:`JobOutcome`.
    Returns the worker (or ``None`` when the folder was refused at once).
    """
    from ._workers import JobOutcome, open_subject_job, start_job

    session = session_for(viewer)
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        reason = report_error(InputDataError("subject folder not found", folder), "open subject")
        if on_done is not None:
            on_done(JobOutcome("failed", reason))
        return None

    def _loaded(result: tuple[OpenedSubject, list]) -> None:
        state, layers = result
        session.apply_subject(state, layers)

    return start_job(session, open_subject_job, folder, desc=f"Opening {folder.name}", on_return=_loaded,
                     on_done=on_done, what=f"open {folder.name}")


class SubjectPanel(AnchorADPanel):
    """The Subject dock widget (see the module docstring)."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(napari_viewer, "anchorad_subject_panel", parent)
        self._filling = False

        self.folder_edit = QLineEdit()
        self.folder_edit.setPlaceholderText("a sub-* folder (anat/, func/, clinical/, genetics/)")
        self.folder_edit.returnPressed.connect(lambda: self.open_folder(self.folder_edit.text()))
        self.browse_button = QPushButton("Open folder...")
        self.browse_button.clicked.connect(self._browse)
        self.demo_button = QPushButton("Demo")
        self.demo_button.setToolTip("Open the shipped demo subject (SYNTHETIC data on real templates)")
        self.demo_button.clicked.connect(self._open_demo)
        row = QHBoxLayout()
        row.addWidget(self.folder_edit, 1)
        row.addWidget(self.browse_button)
        row.addWidget(self.demo_button)

        self.open_status = QLabel("")
        self.open_status.setWordWrap(True)
        self.modalities_label = QLabel("No subject open.")
        self.modalities_label.setTextFormat(Qt.RichText)
        self.modalities_label.setWordWrap(True)

        self.clinical_edit = QPlainTextEdit()
        self.clinical_edit.setPlaceholderText("Paste a clinical note here (free text).")
        self.clinical_edit.setMinimumHeight(90)
        self.clinical_edit.textChanged.connect(self._clinical_edited)
        self.clinical_source = QLabel("")
        self.clinical_status = QLabel("")
        self.clinical_status.setWordWrap(True)
        self.clinical_reset = QPushButton("Reset")
        self.clinical_reset.setToolTip("Go back to the subject's clinical files")
        self.clinical_reset.clicked.connect(self._reset_clinical)

        self.genetics_edit = QPlainTextEdit()
        self.genetics_edit.setPlaceholderText(
            "Paste an APOE genotype (e.g. E3/E4), a FASTA record, VCF text or a DNA sequence."
        )
        self.genetics_edit.setMinimumHeight(60)
        self.genetics_edit.setMaximumHeight(110)
        self.genetics_edit.textChanged.connect(self._genetics_edited)
        self.genetics_source = QLabel("")
        self.genetics_status = QLabel("")
        self.genetics_status.setWordWrap(True)
        self.genetics_status.setObjectName("anchorad_genetics_status")
        self.genetics_reset = QPushButton("Reset")
        self.genetics_reset.setToolTip("Go back to the subject's genetics file")
        self.genetics_reset.clicked.connect(self._reset_genetics)

        self._validate_timer = QTimer(self)
        self._validate_timer.setSingleShot(True)
        self._validate_timer.setInterval(VALIDATE_DELAY_MS)
        self._validate_timer.timeout.connect(self.validate_now)

        layout = QVBoxLayout(self)
        layout.addWidget(heading("Subject folder"))
        layout.addLayout(row)
        layout.addWidget(self.open_status)
        layout.addWidget(self.modalities_label)
        layout.addLayout(self._box_header("Clinical note", self.clinical_source, self.clinical_reset))
        layout.addWidget(self.clinical_edit, 2)
        layout.addWidget(self.clinical_status)
        layout.addLayout(self._box_header("Genetics", self.genetics_source, self.genetics_reset))
        layout.addWidget(self.genetics_edit, 1)
        layout.addWidget(self.genetics_status)
        layout.addStretch(0)
        self.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Expanding)

        self.session.subject_changed.connect(self._show_subject)
        self.session.busy_changed.connect(self._busy)
        self._show_subject()

    # ------------------------------------------------------------------ layout helpers
    @staticmethod
    def _box_header(title: str, source: QLabel, reset: QPushButton) -> QHBoxLayout:
        row = QHBoxLayout()
        row.addWidget(heading(title))
        source.setStyleSheet(f"color: {MUTED_COLOR};")
        row.addWidget(source, 1)
        reset.setMaximumWidth(70)
        row.addWidget(reset)
        return row

    # ------------------------------------------------------------------ opening
    def _browse(self) -> None:
        start = str(self.session.subject.folder.parent) if self.session.subject else ""
        folder = QFileDialog.getExistingDirectory(self, "Open an AnchorAD subject folder (sub-*)", start)
        if folder:
            self.open_folder(folder)

    def _open_demo(self) -> None:
        from ._demo import demo_subject_dir

        try:
            folder = demo_subject_dir()
        except Exception as exc:
            report_error(exc, "demo subject")
            return
        if folder is None:
            report_error(RuntimeError("no demo subject is available"), "demo subject")
            return
        self.open_folder(folder)

    def open_folder(self, folder: "str | Path") -> Any:
        """Open a subject folder (in a worker); errors become notifications and change nothing."""
        self.folder_edit.setText(str(folder))
        self.open_status.setText(f"Opening {Path(folder).name}...")
        self.open_status.setStyleSheet("")
        return open_subject(self.viewer, folder, on_done=self._opened)

    def _opened(self, outcome: Any) -> None:
        state = self.session.subject
        # the box always names the subject that is open (a failed open changed nothing)
        self.folder_edit.setText(str(state.folder) if state is not None else "")
        if outcome.ok:
            self.open_status.setText("")
        else:
            self.open_status.setText(f"Not opened: {outcome.reason}" if outcome.failed else "Opening cancelled.")
            self.open_status.setStyleSheet(f"color: {BAD_COLOR};")

    def _busy(self, busy: bool) -> None:
        for w in (self.browse_button, self.demo_button, self.folder_edit):
            w.setEnabled(not busy)

    # ------------------------------------------------------------------ showing a subject
    def _show_subject(self) -> None:
        state = self.session.subject
        self._filling = True
        try:
            if state is None:
                self.folder_edit.setText("")
                self.modalities_label.setText(f"<span style='color:{MUTED_COLOR}'>No subject open.</span>")
                self.clinical_edit.setPlainText("")
                self.genetics_edit.setPlainText("")
                self.clinical_source.setText("")
                self.genetics_source.setText("")
            else:
                self.folder_edit.setText(str(state.folder))
                self.clinical_edit.setPlainText(state.clinical_text or "")
                self.genetics_edit.setPlainText(state.genetics_text or "")
                self.clinical_source.setText(self._clinical_source_text(state))
                self.genetics_source.setText(self._genetics_source_text(state))
        finally:
            self._filling = False
        self._refresh_modalities()
        self.validate_now()

    @staticmethod
    def _clinical_source_text(state: OpenedSubject) -> str:
        files = state.files
        if files.clinical_json is not None and files.clinical_note is not None:
            return f"from {files.clinical_json.name} (rendered) + {files.clinical_note.name}"
        if files.clinical_json is not None:
            return f"rendered from {files.clinical_json.name}"
        if files.clinical_note is not None:
            return f"from {files.clinical_note.name}"
        return "no file: paste a note"

    @staticmethod
    def _genetics_source_text(state: OpenedSubject) -> str:
        if state.files.genetics is None:
            return "no file: paste genetics"
        if state.genetics_text is None:
            return f"{state.files.genetics.name} (not shown)"
        return f"from {state.files.genetics.name}"

    def _refresh_modalities(self) -> None:
        state = self.session.subject
        if state is None:
            return
        files = state.files
        overrides = self.session.overrides()
        rows = []
        for m, path in (
            (Modality.SMRI, files.smri),
            (Modality.FMRI, files.fmri),
            (Modality.CLINICAL, files.clinical_json or files.clinical_note),
            (Modality.GENETICS, files.genetics),
        ):
            if m.value in overrides:
                present = overrides[m.value] is not None
                where = "typed in the box below" if present else "box emptied: missing"
            else:
                present = path is not None
                where = html.escape(_relative(path, state.folder)) if present else "missing"
            mark, color = ("&#10003;", OK_COLOR) if present else ("&#10007;", MUTED_COLOR)
            rows.append(
                f"<tr><td style='color:{color}; padding-right:6px'><b>{mark}</b></td>"
                f"<td style='padding-right:8px'><b>{html.escape(m.title)}</b></td>"
                f"<td style='color:{MUTED_COLOR if not present else 'inherit'}'>{where}</td></tr>"
            )
        extra = "".join(f"<br><span style='color:{WARN_COLOR}'>&#9888; {html.escape(w)}</span>" for w in state.warnings)
        self.modalities_label.setText(
            f"<b>{html.escape(state.subject_id)}</b><table>{''.join(rows)}</table>{extra}"
        )

    # ------------------------------------------------------------------ editing
    def _clinical_edited(self) -> None:
        if self._filling:
            return
        state = self.session.subject
        self.core.edit_note(self.clinical_edit.toPlainText())
        self.clinical_source.setText("edited: replaces the files" if self.core.edited("clinical")
                                     else (self._clinical_source_text(state) if state else ""))
        self._validate_timer.start()

    def _genetics_edited(self) -> None:
        if self._filling:
            return
        state = self.session.subject
        self.core.edit_genetics(self.genetics_edit.toPlainText())
        self.genetics_source.setText("edited: replaces the file" if self.core.edited("genetics")
                                     else (self._genetics_source_text(state) if state else ""))
        self._validate_timer.start()

    def _reset_clinical(self) -> None:
        state = self.session.subject
        self.clinical_edit.setPlainText(state.clinical_text or "" if state else "")

    def _reset_genetics(self) -> None:
        state = self.session.subject
        self.genetics_edit.setPlainText(state.genetics_text or "" if state else "")

    def validate_now(self) -> None:
        """Validate both boxes now (normally debounced while typing) and show the messages."""
        self._validate_timer.stop()
        state = self.session.subject
        # clinical
        ok, message = describe_note(self.clinical_edit.toPlainText())
        self._set_status(self.clinical_status, ok, message, [])
        # genetics
        text = self.genetics_edit.toPlainText()
        if not text.strip() and state is not None and state.files.genetics is not None and state.genetics_text is None:
            self._set_status(self.genetics_status, True, state.genetics_note or f"using {state.files.genetics.name}", [])
        else:
            ok, message, warnings = describe_genetics(text)
            self._set_status(self.genetics_status, ok, message, warnings)
        self._refresh_modalities()
        self.session.inputs_changed.emit()

    @staticmethod
    def _set_status(label: QLabel, ok: bool, message: str, warnings: list[str]) -> None:
        color = OK_COLOR if ok else BAD_COLOR
        mark = "&#10003;" if ok else "&#10007;"
        text = f"<span style='color:{color}'>{mark} {html.escape(message)}</span>"
        text += "".join(f"<br><span style='color:{WARN_COLOR}'>&#9888; {html.escape(w)}</span>" for w in warnings)
        label.setText(text)
        label.setProperty("valid", ok)

    def inputs_valid(self) -> tuple[bool, str]:
        """Whether the typed inputs parse (the Diagnose panel asks before running)."""
        if self.core.edited("genetics"):
            ok, message, _ = describe_genetics(self.genetics_edit.toPlainText())
            if not ok:
                return False, f"genetics: {message}"
        if self.core.edited("clinical"):
            ok, message = describe_note(self.clinical_edit.toPlainText())
            if not ok:
                return False, f"clinical note: {message}"
        return True, ""


def _relative(path: Path | None, folder: Path) -> str:
    if path is None:
        return ""
    try:
        return str(Path(path).relative_to(folder))
    except ValueError:
        return str(path)
