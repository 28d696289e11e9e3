"""napari plugin panels: subject, diagnose (run, table, cancel, cache), inspect overlays, report."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from gui_helpers import open_and_wait, wait_idle  # noqa: E402
from pdf_pages import check_report, needs_poppler  # noqa: E402

pytestmark = pytest.mark.gui

LONG = 300_000  # ms; a first diagnosis loads the bundle (seconds to a minute on a small CPU)


def _messages():
    from napari.utils.notifications import notification_manager

    return [str(r.message) for r in notification_manager.records]


def test_subject_panel_shows_modalities_and_validates_genetics(gui_viewer, tiny_subject, qtbot):
    viewer, widgets = gui_viewer
    panel = widgets["Subject"]
    open_and_wait(qtbot, viewer, tiny_subject)
    text = panel.modalities_label.text()
    for name in ("sMRI", "fMRI", "Clinical text", "Genetics"):
        assert name in text
    assert panel.clinical_edit.toPlainText().strip()  # pre-filled note
    assert panel.session.overrides() == {}  # nothing edited

    panel.genetics_edit.setPlainText("E3/E9")
    qtbot.waitUntil(lambda: panel.genetics_status.property("valid") is False, timeout=5000)
    assert "APOE" in panel.genetics_status.text()
    panel.genetics_edit.setPlainText("e4/e3")
    qtbot.waitUntil(lambda: panel.genetics_status.property("valid") is True, timeout=5000)
    assert "APOE genotype E3/E4" in panel.genetics_status.text()
    assert panel.session.overrides() == {"genetics": "e4/e3"}
    panel.genetics_edit.setPlainText(">seq1\nACGTACGTACGTAAACCCGGGTTT\n")
    qtbot.waitUntil(lambda: "FASTA" in panel.genetics_status.text(), timeout=5000)
    panel.genetics_edit.setPlainText("")
    qtbot.waitUntil(lambda: "missing" in panel.genetics_status.text(), timeout=5000)
    assert panel.session.overrides() == {"genetics": None}
    panel._reset_genetics()
    assert panel.session.overrides() == {}


def test_bad_folder_gives_a_notification_not_an_exception(gui_viewer, tmp_path, qtbot):
    viewer, widgets = gui_viewer
    before = len(_messages())
    (tmp_path / "sub-empty").mkdir()
    open_and_wait(qtbot, viewer, tmp_path / "sub-empty")
    widgets["Subject"].open_folder(tmp_path / "does-not-exist")
    wait_idle(qtbot, widgets["Subject"].session)
    new = _messages()[before:]
    assert any("not an AnchorAD subject folder" in m for m in new), new
    assert any("subject folder not found" in m for m in new), new
    assert widgets["Subject"].session.subject is None
    assert len(viewer.layers) == 0


def test_cancel_stops_a_run(gui_viewer, tiny_subject, tiny_bundle, qtbot):
    viewer, widgets = gui_viewer
    panel = widgets["Diagnose"]
    open_and_wait(qtbot, viewer, tiny_subject)
    panel.set_bundle(tiny_bundle)
    panel.device_combo.setCurrentText("cpu")
    worker = panel.run()
    assert worker is not None
    assert not panel.run_button.isEnabled() and panel.cancel_button.isEnabled()
    steps = []
    worker.yielded.connect(lambda step: (steps.append(step), panel.cancel() if len(steps) == 2 else None))
    with qtbot.waitSignal(worker.aborted, timeout=LONG):
        pass
    qtbot.waitUntil(lambda: panel.worker is None, timeout=LONG)
    assert panel.session.result is None and panel.table.rowCount() == 0
    assert panel.status_label.text() == "Cancelled."
    assert panel.run_button.isEnabled()
    # stopped at a stage boundary soon after the cancel (the worker may have begun one more)
    assert 2 <= len(steps) <= 4 and steps[-1].done < steps[-1].total - 1


@needs_poppler  # the exported report is read back page by page
def test_diagnose_inspect_report_workflow(gui_viewer, tiny_subject, tiny_bundle, qtbot, tmp_path):
    from anchorad_gui._map_layers import FMRI_ROLE, SMRI_ROLE
    from anchorad_gui._pipelines import PIPELINES
    from anchorad_core.report.text import TITLES

    viewer, widgets = gui_viewer
    diagnose, inspect, report = widgets["Diagnose"], widgets["Inspect"], widgets["Report"]
    session = diagnose.session
    open_and_wait(qtbot, viewer, tiny_subject)
    diagnose.set_bundle(tiny_bundle)
    diagnose.device_combo.setCurrentText("cpu")

    # --- a full diagnosis fills the table: one row per anchor round + the aggregate
    assert diagnose.run() is not None
    assert not diagnose.run_button.isEnabled()
    qtbot.waitUntil(lambda: diagnose.worker is None, timeout=LONG)
    assert session.result is not None, _messages()[-3:]
    rows = diagnose.table_rows()
    assert [r["anchor"] for r in rows] == ["smri", "fmri", "clinical", "genetics", None]
    assert diagnose.table.rowCount() == 5
    assert diagnose.table.item(4, 0).text().startswith("Aggregate")
    p = [float(diagnose.table.item(4, c).text()) for c in (1, 2)]
    assert sum(p) == pytest.approx(1.0, abs=2e-3)
    assert "none" in diagnose.missing_label.text()
    assert diagnose.status_label.text().startswith("Done")
    loads = PIPELINES.loads

    # --- Inspect: attention overlays on the T1 grid, updated in place
    wait_idle(qtbot, session)
    qtbot.waitUntil(lambda: inspect.explanations is not None, timeout=LONG)
    t1 = viewer.layers[f"{tiny_subject.name} T1"]
    inspect.select("fmri", "attention", "smri")
    overlay = session.overlay(SMRI_ROLE)
    assert overlay.name == "AnchorAD sMRI map: fMRI round, Q-former attention (sMRI queries)"
    assert overlay.name in inspect.caption()
    assert overlay.data.shape == t1.data.shape
    np.testing.assert_allclose(overlay.scale, t1.scale)
    np.testing.assert_allclose(overlay.translate, t1.translate)
    assert overlay.visible and np.isfinite(overlay.data).all() and overlay.data.max() > 0
    n_layers = len(viewer.layers)
    first = overlay.data.copy()
    inspect.select("clinical", "attention", "smri")  # another round: same layer, new data, new name
    assert session.overlay(SMRI_ROLE) is overlay and len(viewer.layers) == n_layers
    assert overlay.name.startswith("AnchorAD sMRI map: Clinical text round")
    assert not np.allclose(overlay.data, first)
    assert tuple(overlay.contrast_limits)[0] == pytest.approx(1.0)  # weight / uniform: 1 = uniform
    # every attention map states how far it is from uniform; near-uniform ones list no top ROIs / words
    for anchor in ("smri", "fmri", "clinical", "genetics"):
        for block_name, block in session.explanation.round(anchor).attention.items():
            inspect.select(anchor, "attention", block_name)
            info = inspect.info_label.text()
            assert block.uniformity.figures() in info
            if block.near_uniform:
                assert "no region stands out" in info and "top ROIs" not in info
                if block_name == "clinical":
                    assert "Top words" not in inspect.note_view.toPlainText()
                    assert "no region stands out" in inspect.note_view.toPlainText()
            else:
                assert "not uniform" in info
                if block_name == "fmri":
                    assert "top ROIs" in info
    inspect.select("smri", "attention", "fmri")  # fMRI map painted on the atlas
    fmap = session.overlay(FMRI_ROLE)
    assert fmap.data.shape == t1.data.shape and fmap.visible
    assert not session.overlay(SMRI_ROLE).visible  # the sMRI map does not belong to this choice
    assert inspect.caption() == fmap.name
    inspect.select("smri", "attention", "clinical")
    assert "background-color" in inspect.note_view.toHtml()
    inspect.select("smri", "attention", "genetics")
    assert inspect.plot.kind == "heatmap"
    inspect.select("smri", "attention", "cross")
    assert "Cross-modal" in inspect.info_label.text()
    assert len(viewer.layers) == n_layers  # nothing piled up

    # --- Captum attribution of one round (2 steps keep the test short)
    inspect.select("genetics", "attribution")
    inspect.steps_spin.setValue(2)
    assert inspect.compute_attribution() is not None
    qtbot.waitUntil(lambda: inspect.worker is None, timeout=LONG)
    att = session.explanation.round("genetics").attribution
    assert att is not None and set(att.maps) == {"smri", "fmri", "clinical", "genetics"}
    assert session.overlay(SMRI_ROLE).data.shape == t1.data.shape
    assert "Genetics round, Integrated Gradients" in session.overlay(SMRI_ROLE).name
    assert inspect.plot.kind == "attribution"
    assert len(viewer.layers) == n_layers
    info = inspect.info_label.text()
    assert att.requested_steps == 2 and [n for n, _ in att.steps_tried][0] == 2
    assert ("within the 5% bound" in info) == att.converged and ("NOT CONVERGED" in info) == (not att.converged)
    assert f"{att.n_steps} steps" in info and "per Schaefer-400 parcel" in info

    # --- the report is exported
    out = tmp_path / "report.pdf"
    assert report.export(out) is not None
    qtbot.waitUntil(lambda: report.worker is None, timeout=LONG)
    assert out.is_file() and out.read_bytes()[:5] == b"%PDF-", _messages()[-3:]
    assert report.last_path == out
    # a real report of this subject: a summary, a page per anchor round, every page drawn and footed
    pages = check_report(out, tiny_subject.name, 2 + len(session.explanation.rounds))
    text = " ".join(" ".join(pages).split())
    for anchor in ("smri", "fmri", "clinical", "genetics"):
        assert f"Anchor round: {TITLES[anchor]}" in text, anchor

    # --- the next run reuses the loaded pipeline; an emptied genetics box = missing modality
    widgets["Subject"].genetics_edit.setPlainText("")
    widgets["Subject"].validate_now()
    assert session.overrides() == {"genetics": None}
    assert diagnose.run() is not None
    qtbot.waitUntil(lambda: diagnose.worker is None, timeout=LONG)
    assert PIPELINES.loads == loads
    rows = diagnose.table_rows()
    assert [r["kind"] for r in rows] == ["round", "round", "round", "missing", "aggregate"]
    assert "Genetics" in diagnose.missing_label.text() and "masked" in diagnose.missing_label.text()
    assert session.result.diagnosis.modalities_missing == ["genetics"]
    wait_idle(qtbot, session)
