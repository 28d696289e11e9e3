"""Diagnose panel: choose a model bundle, device and dtype, run the diagnosis, read the result.

The run is the core session's :meth:`~anchorad_core.session.Session.diagnose`, as in
``anchorad predict``: the bundle is loaded once and kept (per bundle, device and dtype, in the
core's process-wide cache), the subject is read with the bundle's preprocessing and the text
typed in the Subject panel, and the job yields one stage at a time, shown in napari's activity
dock. **Cancel** stops the run at the next stage. The result table has one row per anchor
round plus the aggregate, and says which modalities were missing and how they were handled.
"""
from __future__ import annotations

import html
from functools import partial
from pathlib import Path
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtGui import QColor, QFont
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from anchorad_core import ALL_MODALITIES, MISSING_MODALITY_RULE, BundleError, InputDataError, Modality, Step
from anchorad_core.session import DTYPES, available_devices, dtype_supported

from ._panel import AnchorADPanel
from ._session import report_error
from ._style import BAD_COLOR, MUTED_COLOR, OK_COLOR, RESEARCH_NOTE, WARN_COLOR, heading

__all__ = ["DiagnosePanel", "DTYPES"]



class DiagnosePanel(AnchorADPanel):
    """The Diagnose dock widget (see the module docstring)."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(napari_viewer, "anchorad_diagnose_panel", parent)
        layout = QVBoxLayout(self)
        layout.addWidget(heading("Model"))
        layout.addLayout(self._model_section())
        layout.addLayout(self._run_section())
        layout.addWidget(heading("Result"))
        for widget in self._result_section():
            layout.addWidget(widget)
        layout.addStretch(1)

        from ._demo import demo_bundle_dir

        demo = demo_bundle_dir()
        if demo is not None:
            self.set_bundle(demo, note="shipped demo bundle (trained on SYNTHETIC demo data)")
        self.session.subject_changed.connect(self._subject_changed)
        self.session.diagnosis_changed.connect(self.show_result)
        self.session.stale_changed.connect(self.show_result)
        self.session.busy_changed.connect(lambda _: self._update_buttons())
        self._update_buttons()
        self._device_changed(self.device_combo.currentText())
        self.show_result()

    # ------------------------------------------------------------------ sections
    def _model_section(self) -> QFormLayout:
        """Bundle folder (with its note), device and dtype."""
        self.bundle_edit = QLineEdit()
        self.bundle_edit.setPlaceholderText("a model bundle folder (with bundle.json)")
        self.bundle_edit.textChanged.connect(self._update_buttons)
        self.bundle_button = QPushButton("Browse...")
        self.bundle_button.clicked.connect(self._browse_bundle)
        bundle_row = QHBoxLayout()
        bundle_row.addWidget(self.bundle_edit, 1)
        bundle_row.addWidget(self.bundle_button)
        self.bundle_note = QLabel("")
        self.bundle_note.setStyleSheet(f"color: {MUTED_COLOR};")
        self.bundle_note.setWordWrap(True)
        self.bundle_note.setVisible(False)

        self.device_combo = QComboBox()
        self.device_combo.addItems(available_devices())
        self.device_combo.setToolTip("auto = the first GPU if there is one, else the CPU")
        self.dtype_combo = QComboBox()
        self.dtype_combo.addItems(DTYPES)
        self.dtype_combo.setToolTip("float32 everywhere; bfloat16 / float16 halve the model's memory "
                                    "(on a CPU they are slower, and probabilities agree with float32 to ~0.01)")
        self.device_combo.currentTextChanged.connect(self._device_changed)
        form = QFormLayout()
        form.addRow("Model bundle", bundle_row)
        form.addRow("", self.bundle_note)
        hw = QHBoxLayout()
        hw.addWidget(self.device_combo, 1)
        hw.addWidget(QLabel("dtype"))
        hw.addWidget(self.dtype_combo, 1)
        form.addRow("Device", hw)
        return form

    def _run_section(self) -> QVBoxLayout:
        """Run and Cancel, and the status line."""
        self.run_button = QPushButton("Run diagnosis")
        self.run_button.setObjectName("anchorad_run")
        self.run_button.clicked.connect(self.run)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button, 2)
        buttons.addWidget(self.cancel_button, 1)
        self.status_label = QLabel("Open a subject, then run.")
        self.status_label.setWordWrap(True)
        section = QVBoxLayout()
        section.addLayout(buttons)
        section.addWidget(self.status_label)
        return section

    def _result_section(self) -> list[QWidget]:
        """The stale warning, the summary, the table of rounds, what was missing, the research note."""
        self.stale_label = self.make_stale_label()
        self.stale_label.setObjectName("anchorad_stale")
        self.summary_label = self.rich_label()
        self.table = QTableWidget(0, 0)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.NoSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.setWordWrap(False)
        self.missing_label = self.rich_label()
        note = QLabel(RESEARCH_NOTE)
        note.setStyleSheet(f"color: {MUTED_COLOR};")
        return [self.stale_label, self.summary_label, self.table, self.missing_label, note]

    # ------------------------------------------------------------------ choices
    def _device_changed(self, device: str) -> None:
        """Offer only the dtypes the device can run (the others are greyed, with the reason)."""
        model = self.dtype_combo.model()
        for i, name in enumerate(DTYPES):
            ok = name == "float32" or dtype_supported(device, name)
            item = model.item(i) if hasattr(model, "item") else None
            if item is not None:
                item.setEnabled(ok)
                item.setToolTip("" if ok else f"{name} does not run on {device} here")
        if not self.dtype_supported():
            self.dtype_combo.setCurrentText("float32")

    def dtype_supported(self, name: "str | None" = None) -> bool:
        """Whether the dtype ``name`` (default: the chosen one) is offered for the chosen device."""
        model = self.dtype_combo.model()
        index = self.dtype_combo.findText(name or self.dtype_combo.currentText())
        item = model.item(index) if hasattr(model, "item") and index >= 0 else None
        return item is None or item.isEnabled()

    def set_bundle(self, path: "str | Path", note: str = "") -> None:
        """Choose the model bundle folder."""
        self.bundle_edit.setText(str(path))
        self.bundle_note.setText(note)
        self.bundle_note.setVisible(bool(note))

    def _browse_bundle(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a model bundle folder", self.bundle_edit.text())
        if folder:
            self.set_bundle(folder)

    def _subject_changed(self) -> None:
        state = self.session.subject
        self.status_label.setText(f"{state.subject_id} open: ready to run." if state else "Open a subject, then run.")
        self._set_status_color()
        self._update_buttons()

    def _update_buttons(self) -> None:
        running = self.worker is not None
        ready = self.session.subject is not None and bool(self.bundle_edit.text().strip())
        self.run_button.setEnabled(ready and not running and not self.session.busy)
        self.cancel_button.setEnabled(running)
        for w in (self.bundle_edit, self.bundle_button, self.device_combo, self.dtype_combo):
            w.setEnabled(not running)

    # ------------------------------------------------------------------ running
    def run(self) -> Any:
        """Start a diagnosis of the open subject (in a worker); returns the worker or ``None``."""
        if self.worker is not None or self.session.busy:
            return None
        state = self.session.subject
        if state is None:
            report_error(InputDataError("open a subject folder first"), "diagnose")
            return None
        bundle = Path(self.bundle_edit.text().strip()).expanduser()
        if not (bundle / "bundle.json").is_file():
            report_error(BundleError("not a model bundle (no bundle.json)", bundle), "diagnose")
            return None
        problem = self.core.input_problem()
        if problem:
            report_error(InputDataError(problem), "diagnose")
            return None
        self.session.select_bundle(bundle, self.device_combo.currentText(), self.dtype_combo.currentText())
        self.status_label.setText(f"Running on {state.subject_id}...")
        self._set_status_color()
        self.worker = self.start(partial(self.core.diagnose, reuse=False), desc=f"AnchorAD {state.subject_id}",
                                 on_step=self._step, on_return=self._finished, on_done=self._done, what="diagnosis")
        self._update_buttons()
        return self.worker

    def cancel(self) -> None:
        """Stop the running diagnosis at its next stage."""
        if self.worker is not None:
            self.status_label.setText("Cancelling after the current stage...")
            self.worker.quit()

    def _step(self, step: Step) -> None:
        self.status_label.setText(f"Running: {step.text} ({step.done + 1}/{step.total})")

    def _finished(self, result: Any) -> None:
        if result.inputs.get("folder") != self.session.current_inputs()["folder"]:
            self.status_label.setText("Another subject was opened during the run: its result was dropped.")
            self._set_status_color(WARN_COLOR)
            return
        self.session.diagnosis_done()
        self.status_label.setText(
            f"Done in {result.seconds:.1f} s on {result.pipeline.device} ({result.key[2]}); the model stays loaded."
        )
        self._set_status_color()

    def _done(self, outcome: Any) -> None:
        """The run ended (done, cancelled or failed): say so and give the controls back."""
        self.worker = None
        if outcome.cancelled:
            self.status_label.setText("Cancelled.")
            self._set_status_color(WARN_COLOR)
        elif outcome.failed:
            self.status_label.setText(f"Failed: {outcome.reason}")
            self._set_status_color(BAD_COLOR)
        if not outcome.ok:
            self.session.mark_stale("cancelled" if outcome.cancelled else "failed")
        self._update_buttons()

    def _set_status_color(self, color: str = "") -> None:
        self.status_label.setStyleSheet(f"color: {color};" if color else "")

    # ------------------------------------------------------------------ result
    def show_result(self) -> None:
        """Fill the table from the session's diagnosis (or clear it)."""
        result = self.session.result
        self.table.clear()
        reasons = self.show_stale(self.stale_label, "This is the earlier diagnosis; run it again.", bold=True)
        if result is None:
            self.table.setRowCount(0)
            self.table.setColumnCount(0)
            self.summary_label.setText(f"<span style='color:{MUTED_COLOR}'>No diagnosis yet.</span>")
            self.missing_label.setText("")
            return
        d = result.diagnosis
        rows = self.table_rows()
        headers = ["Round", *[f"P({label})" for label in d.labels], "Weight", "Masked auxiliaries"]
        self.table.setColumnCount(len(headers))
        self.table.setHorizontalHeaderLabels(headers)
        self.table.setRowCount(len(rows))
        bold = QFont()
        bold.setBold(True)
        for r, row in enumerate(rows):
            for c, text in enumerate(row["cells"]):
                item = QTableWidgetItem(text)
                if c > 0:
                    item.setTextAlignment(int(Qt.AlignRight | Qt.AlignVCenter) if c <= len(d.labels) + 1
                                          else int(Qt.AlignLeft | Qt.AlignVCenter))
                if row["kind"] == "aggregate":
                    item.setFont(bold)
                if row["kind"] == "missing" or reasons:
                    item.setForeground(QColor(MUTED_COLOR))  # a stale table is greyed out
                if row.get("tooltip"):
                    item.setToolTip(row["tooltip"])
                self.table.setItem(r, c, item)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeToContents)
        header.setStretchLastSection(True)
        height = self.table.verticalHeader().length() + header.sizeHint().height() + 2 * self.table.frameWidth() + 4
        self.table.setMinimumHeight(height)
        self.table.setMaximumHeight(height)
        color = MUTED_COLOR if reasons else BAD_COLOR if d.label != d.labels[0] else OK_COLOR
        self.summary_label.setText(
            ("[STALE] " if reasons else "")
            + f"{html.escape(d.subject_id)}: <b style='color:{color}'>{html.escape(d.label)}</b> "
            f"(p = {d.confidence:.2f}, {html.escape(d.rule)} of {len(d.rounds)} anchor rounds)"
        )
        if d.modalities_missing:
            names = ", ".join(_title(m) for m in d.modalities_missing)
            self.missing_label.setText(f"<b>Missing:</b> {html.escape(names)} - {html.escape(MISSING_MODALITY_RULE)}.")
        else:
            self.missing_label.setText("<b>Missing:</b> none (all four modalities used).")

    def table_rows(self) -> list[dict[str, Any]]:
        """The result table's rows as data: ``{"kind", "anchor", "cells", "tooltip"}``."""
        result = self.session.result
        if result is None:
            return []
        d = result.diagnosis
        rows: list[dict[str, Any]] = []
        by_anchor = {r.anchor.value: r for r in d.rounds}
        for m in ALL_MODALITIES:
            r = by_anchor.get(m.value)
            if r is not None:
                masked = ", ".join(_title(a) for a in r.auxiliaries_missing) or "none"
                cells = [f"{m.title} anchor", *[f"{r.probabilities[lab]:.3f}" for lab in d.labels],
                         f"{r.weight:.2f}", masked]
                tip = "auxiliaries used: " + (", ".join(_title(a) for a in r.auxiliaries_used) or "none")
                rows.append({"kind": "round", "anchor": m.value, "cells": cells, "tooltip": tip})
            elif m.value in d.modalities_missing:
                cells = [f"{m.title} anchor", *["-" for _ in d.labels], "-", "missing: no round"]
                rows.append({"kind": "missing", "anchor": m.value, "cells": cells, "tooltip": MISSING_MODALITY_RULE})
        cells = [f"Aggregate ({d.rule})", *[f"{d.aggregate_probabilities[lab]:.3f}" for lab in d.labels],
                 "", f"diagnosis: {d.label}"]
        rows.append({"kind": "aggregate", "anchor": None, "cells": cells, "tooltip": ""})
        return rows


def _title(name: str) -> str:
    try:
        return Modality.parse(name).title
    except ValueError:
        return name
