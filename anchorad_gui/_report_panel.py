"""Report panel: export the PDF report of the current subject and diagnosis.

The PDF is written by the core session's :meth:`~anchorad_core.session.Session.write_report`
(as ``anchorad report`` does): the diagnosis with every anchor round, the Q-former attention maps of
each round, the Integrated Gradients maps computed so far (in the Inspect panel, or here for
every round with the check box), and the provenance page (what is real, what is synthetic).
"""
from __future__ import annotations

import html
from functools import partial
from pathlib import Path
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QCheckBox, QFileDialog, QHBoxLayout, QLabel, QPushButton, QSpinBox, QVBoxLayout, QWidget

import anchorad_core
import anchorad_gui
from anchorad_core import resources_root
from anchorad_core.session import DEFAULT_IG_STEPS, MAX_IG_STEPS

from ._panel import AnchorADPanel
from ._style import BAD_COLOR, MUTED_COLOR, OK_COLOR, RESEARCH_NOTE, heading

__all__ = ["ReportPanel", "default_report_folder"]


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except (ValueError, OSError):
        return False


def default_report_folder(subject_folder: "Path | None", last: "Path | None" = None) -> Path:
    """Where the save dialog starts: the last report's folder, else next to the subject folder,
    else the working directory, else home - never inside the installed package or its shipped
    resources (the demo subject lives there) and never a folder one cannot write to."""
    import os

    # the installed packages and the shipped resources (the demo subject lives there)
    packages = [Path(anchorad_core.__file__).parent, Path(anchorad_gui.__file__).parent]
    try:
        packages.append(Path(resources_root()))
    except Exception:
        pass

    def usable(folder: "Path | None") -> bool:
        return (folder is not None and folder.is_dir() and os.access(folder, os.W_OK)
                and not any(_inside(folder, root) for root in packages))

    for candidate in (last, subject_folder.parent if subject_folder is not None else None, Path.cwd()):
        if usable(candidate):
            return candidate
    return Path.home()


def convergence_html(explanation: Any) -> str:
    """One line per round with Integrated Gradients: its convergence (red when the bound was not met)."""
    lines = []
    for r in getattr(explanation, "rounds", None) or []:
        a = r.attribution
        if a is not None:
            text = html.escape(f"IG {r.anchor} round: {a.convergence_text()}")
            lines.append(text if a.converged else f"<span style='color:{BAD_COLOR}'><b>{text}</b></span>")
    return "".join(f"<br>{line}" for line in lines)


class ReportPanel(AnchorADPanel):
    """The Report dock widget (see the module docstring)."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(napari_viewer, "anchorad_report_panel", parent)
        self.last_path: Path | None = None

        intro = QLabel(
            "A PDF of the current subject: inputs used and missing, the diagnosis per anchor round, "
            "the Q-former attention maps of every round, the Integrated Gradients computed so far, and "
            "the model's provenance."
        )
        intro.setWordWrap(True)
        self.all_ig_check = QCheckBox("Compute Integrated Gradients for every round first (slow)")
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(2, 256)
        self.steps_spin.setValue(DEFAULT_IG_STEPS)
        self.steps_spin.setToolTip(f"Integrated Gradients steps to start from; doubled up to {MAX_IG_STEPS} until "
                                   "|delta| <= 5% of |f(x) - f(baseline)| (the report states the result)")
        ig_row = QHBoxLayout()
        ig_row.addWidget(self.all_ig_check, 1)
        ig_row.addWidget(QLabel("steps from"))
        ig_row.addWidget(self.steps_spin)
        self.export_button = QPushButton("Export PDF report...")
        self.export_button.clicked.connect(self._choose_and_export)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        buttons = QHBoxLayout()
        buttons.addWidget(self.export_button, 2)
        buttons.addWidget(self.cancel_button, 1)
        self.subject_label = self.rich_label()
        self.stale_label = self.make_stale_label()
        self.status_label = self.rich_label()
        self.status_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        note = QLabel(RESEARCH_NOTE)
        note.setStyleSheet(f"color: {MUTED_COLOR};")

        layout = QVBoxLayout(self)
        layout.addWidget(heading("PDF report"))
        layout.addWidget(intro)
        layout.addWidget(self.subject_label)
        layout.addWidget(self.stale_label)
        layout.addLayout(ig_row)
        layout.addLayout(buttons)
        layout.addWidget(self.status_label)
        layout.addWidget(note)
        layout.addStretch(1)

        self.session.diagnosis_changed.connect(self._update)
        self.session.subject_changed.connect(self._update)
        self.session.stale_changed.connect(self._update)
        self.session.busy_changed.connect(lambda _: self._update())
        self._update()

    def _update(self) -> None:
        running = self.worker is not None
        result, subject = self.session.result, self.session.subject
        has = result is not None
        self.export_button.setEnabled(has and not running and not self.session.busy)
        self.cancel_button.setEnabled(running)
        if subject is None:
            self.subject_label.setText(f"<span style='color:{MUTED_COLOR}'>No subject open.</span>")
        else:
            what = (f"diagnosis {html.escape(result.diagnosis.label)} (p = {result.diagnosis.confidence:.2f})"
                    if has else "no diagnosis yet")
            self.subject_label.setText(f"Subject <b>{html.escape(subject.subject_id)}</b>: {what}")
        self.show_stale(self.stale_label, "The report would show the earlier diagnosis; run it again.")
        if not has and not running:
            self.status_label.setText(f"<span style='color:{MUTED_COLOR}'>Run a diagnosis first.</span>")

    def default_name(self) -> str:
        """Suggested file name: ``<subject>_anchorad-report.pdf``."""
        sid = self.session.result.diagnosis.subject_id if self.session.result else "subject"
        return f"{sid}_anchorad-report.pdf"

    def _choose_and_export(self) -> None:
        result = self.session.result
        if result is None:
            return
        folder = default_report_folder(self.session.subject.folder if self.session.subject else None,
                                       self.last_path.parent if self.last_path else None)
        path, _ = QFileDialog.getSaveFileName(self, "Export the AnchorAD report", str(folder / self.default_name()),
                                              "PDF files (*.pdf)")
        if path:
            self.export(path)

    def export(self, path: "str | Path") -> Any:
        """Write the report to ``path`` (in a worker; an existing file is replaced); returns the worker."""
        result = self.session.result
        if result is None or self.worker is not None:
            return None
        path = Path(path)
        if path.suffix.lower() != ".pdf":
            path = path.with_name(path.name + ".pdf")

        def _written(written: Path) -> None:
            self.last_path = Path(written)
            self.status_label.setText(f"<span style='color:{OK_COLOR}'>&#10003; Saved</span> {html.escape(str(written))}"
                                      + convergence_html(self.session.explanation))
            if self.session.result is result:  # the explanations it completed are the session's
                self.session.explanation_changed.emit()

        def _done(outcome: Any) -> None:
            self.worker = None
            if outcome.cancelled:
                self.status_label.setText("Report not written (cancelled).")
            elif outcome.failed:
                self.status_label.setText(f"<span style='color:{BAD_COLOR}'>&#10007; Report not written:</span> "
                                          f"{html.escape(outcome.reason)}")
            self._update()

        self.status_label.setText(f"Writing {html.escape(path.name)}...")
        job = partial(self.core.write_report, path, force=True, all_attributions=self.all_ig_check.isChecked(),
                      n_steps=self.steps_spin.value())
        self.worker = self.start(job, desc="AnchorAD report", on_return=_written, on_done=_done, what="report")
        self._update()
        return self.worker
