"""napari plugin, robustness: every job's failure reaches the user, one subject per viewer, stale results.

They run on the shared tiny bundle (``tiny_bundle`` in ``tests/conftest.py``, trained once per
version of the core, then cached) and copies of its complete demo subject: a diagnosis takes a second or two on a CPU.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from gui_helpers import wait_idle  # noqa: E402
from pdf_pages import check_report, needs_poppler  # noqa: E402

pytestmark = pytest.mark.gui

T = 120_000  # ms


def _messages():
    from napari.utils.notifications import notification_manager

    return [str(r.message) for r in notification_manager.records]


@pytest.fixture(scope="session")
def demo_bundle(tiny_bundle) -> Path:
    return tiny_bundle


def _copy_subject(src: Path, dest: Path, sid: str) -> Path:
    """The subject folder ``src`` copied as ``dest/sid`` (its files renamed)."""
    folder = dest / sid
    for path in src.rglob("*"):
        if path.is_file():
            out = folder / path.relative_to(src).parent / path.name.replace(src.name, sid)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, out)
    return folder


@pytest.fixture
def subjects(tiny_subject, tmp_path) -> tuple[Path, Path]:
    """Two subjects, A and B (copies of the complete demo subject)."""
    return _copy_subject(tiny_subject, tmp_path, "sub-101"), _copy_subject(tiny_subject, tmp_path, "sub-102")


def _open(qtbot, widgets, folder):
    panel = widgets["Subject"]
    panel.open_folder(folder)
    wait_idle(qtbot, panel.session, T)
    assert panel.session.subject is not None and panel.session.subject.folder == Path(folder), _messages()[-3:]


def _diagnose(qtbot, widgets, bundle, dtype="float32"):
    panel = widgets["Diagnose"]
    panel.set_bundle(bundle)
    panel.device_combo.setCurrentText("cpu")
    panel.dtype_combo.setCurrentText(dtype)
    assert panel.run() is not None
    qtbot.waitUntil(lambda: panel.worker is None, timeout=T)
    wait_idle(qtbot, panel.session, T)  # the Inspect panel reads the attention next
    assert panel.session.result is not None, _messages()[-3:]


def _reason_shown(reason, new_messages, label_text):
    """The reason is in one notification, whole, on one line, and in the panel's label."""
    hits = [m for m in new_messages if reason in m]
    assert len(hits) == 1, new_messages
    assert "\n" not in hits[0]
    assert reason in label_text.replace("&#39;", "'")


# a long, real-looking reason: the notification and the panel must show it whole
LONG_REASON = ("mat1 and mat2 must have the same dtype, but got Float and BFloat16 "
               "(injected at this stage by the test; the rest of this sentence must not be cut off)")


@pytest.mark.parametrize("stage", ["diagnose", "attention", "attribution",
                                   pytest.param("report", marks=needs_poppler)])  # the retried report is read back
def test_a_failing_job_is_reported_and_the_panel_recovers(stage, gui_viewer, subjects, demo_bundle, qtbot,
                                                          monkeypatch, caplog, tmp_path):
    import anchorad_core.explain.attributions as attributions
    import anchorad_core.explain.subject as explain_subject
    import anchorad_core.inference as inference
    import anchorad_core.report as report_mod

    viewer, widgets = gui_viewer
    diagnose, inspect, report = widgets["Diagnose"], widgets["Inspect"], widgets["Report"]
    session = diagnose.session
    _open(qtbot, widgets, subjects[0])
    if stage != "diagnose":
        _diagnose(qtbot, widgets, demo_bundle)

    def boom(*args, **kwargs):
        raise RuntimeError(LONG_REASON)  # RuntimeError is what napari's worker used to swallow

    target = {"diagnose": (inference.DiagnosisPipeline, "run"), "attention": (explain_subject, "explain_subject"),
              "attribution": (attributions, "round_attributions"), "report": (report_mod, "write_report")}[stage]
    original = getattr(*target)
    monkeypatch.setattr(*target, boom)
    before = len(_messages())
    caplog.set_level(logging.ERROR, logger="anchorad_gui")

    # --- the stage fails
    if stage == "diagnose":
        diagnose.set_bundle(demo_bundle)
        diagnose.device_combo.setCurrentText("cpu")
        assert diagnose.run() is not None
        qtbot.waitUntil(lambda: diagnose.worker is None, timeout=T)
        label = diagnose.status_label.text()
    elif stage == "attention":
        session.set_result(session.result)  # a fresh diagnosis: the Inspect panel reads its attention
        qtbot.waitUntil(lambda: inspect.attention_worker is None, timeout=T)
        label = inspect.info_label.text()
    elif stage == "attribution":
        inspect.select("smri", "attribution")
        inspect.steps_spin.setValue(2)
        assert inspect.compute_attribution() is not None
        qtbot.waitUntil(lambda: inspect.worker is None, timeout=T)
        label = inspect.info_label.text()
    else:
        assert report.export(tmp_path / "r.pdf") is not None
        qtbot.waitUntil(lambda: report.worker is None, timeout=T)
        label = report.status_label.text()
    wait_idle(qtbot, session, T)

    # --- the user is told, whole, once; the log has the traceback
    reason = f"RuntimeError: {LONG_REASON}"
    _reason_shown(reason, _messages()[before:], label)
    logged = [r for r in caplog.records if r.name == "anchorad_gui" and r.levelno >= logging.ERROR]
    assert any("Traceback" in r.getMessage() and "boom" in r.getMessage() for r in logged), logged

    # --- nothing is left busy or disabled
    assert not session.busy
    assert diagnose.run_button.isEnabled() and not diagnose.cancel_button.isEnabled()
    assert diagnose.bundle_edit.isEnabled() and diagnose.dtype_combo.isEnabled()
    assert widgets["Subject"].browse_button.isEnabled()
    if stage == "diagnose":
        assert label.startswith("Failed") and session.result is None
    if stage == "attention":
        assert inspect.retry_button.isVisible() or inspect.retry_button.isVisibleTo(inspect)
        assert inspect.retry_button.isEnabled()
    if stage == "attribution":
        assert inspect.compute_button.isEnabled() and not inspect.cancel_button.isEnabled()
    if stage == "report":
        assert report.export_button.isEnabled() and not report.cancel_button.isEnabled()
        assert not (tmp_path / "r.pdf").exists()

    # --- and the same action works once the cause is gone
    monkeypatch.setattr(*target, original)
    if stage == "diagnose":
        _diagnose(qtbot, widgets, demo_bundle)
    elif stage == "attention":
        assert inspect.read_attention() is not None
        wait_idle(qtbot, session, T)
        assert inspect.explanations is not None and not inspect.retry_button.isVisibleTo(inspect)
    elif stage == "attribution":
        assert inspect.compute_attribution() is not None
        qtbot.waitUntil(lambda: inspect.worker is None, timeout=T)
        assert session.explanation.round("smri").attribution is not None
    else:
        assert report.export(tmp_path / "r.pdf") is not None
        qtbot.waitUntil(lambda: report.worker is None, timeout=T)
        assert (tmp_path / "r.pdf").read_bytes()[:5] == b"%PDF-"
        check_report(tmp_path / "r.pdf", subjects[0].name, 2 + len(session.explanation.rounds))
    wait_idle(qtbot, session, T)


def test_half_precision_runs_in_the_panel(gui_viewer, subjects, demo_bundle, qtbot, monkeypatch):
    import anchorad_core.device as device

    viewer, widgets = gui_viewer
    panel = widgets["Diagnose"]
    assert all(panel.dtype_supported(d) for d in ("float32", "bfloat16", "float16"))  # all run on this CPU
    # a device that cannot run float16: it is greyed out and a float16 choice falls back to float32
    monkeypatch.setattr(device, "dtype_supported", lambda dev, dt: dt != "float16")
    panel.dtype_combo.setCurrentText("float16")
    panel._device_changed("cpu")
    assert not panel.dtype_supported("float16") and panel.dtype_supported("bfloat16")
    assert panel.dtype_combo.currentText() == "float32"
    monkeypatch.undo()
    panel._device_changed("cpu")
    assert panel.dtype_supported("float16")
    _open(qtbot, widgets, subjects[0])
    _diagnose(qtbot, widgets, demo_bundle, "float32")
    reference = widgets["Diagnose"].session.result.diagnosis.aggregate_probabilities
    reference_rounds = widgets["Diagnose"].session.result.diagnosis.rounds
    _diagnose(qtbot, widgets, demo_bundle, "bfloat16")
    result = widgets["Diagnose"].session.result
    assert result.key[2] == "bfloat16"
    assert result.diagnosis.label == max(reference, key=reference.__getitem__)  # bf16: the float32 label
    # Rounds agree within test_half_precision's tolerance, except those anchored on the fMRI and
    # DNA readouts: their subjects differ by ~1e-3 or less around values near 1, below bfloat16's
    # resolution of the tokens they are computed from (the tiny bundle's genetics round reads
    # p(AD) 0.93 in bfloat16 against 0.34 in float32; the shipped bundle's fMRI round is the
    # open xfail of test_half_precision). The heads and readouts themselves run in float32.
    float32_rounds = {r.anchor.value: r for r in reference_rounds}
    for r in result.diagnosis.rounds:
        if r.anchor.value in ("fmri", "genetics"):
            continue
        for label, p in float32_rounds[r.anchor.value].probabilities.items():
            assert r.probabilities[label] == pytest.approx(p, abs=0.03), r.anchor
    assert widgets["Inspect"].explanations is not None  # the attention of a bf16 run is read too


# ---------------------------------------------------------------------------------------- one subject
def _drop(viewer, folder):
    """Drag ``folder`` from a file manager and drop it on the canvas."""
    from qtpy.QtCore import QMimeData, QPointF, Qt, QUrl
    from qtpy.QtGui import QDropEvent

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(folder))])
    event = QDropEvent(QPointF(10, 10), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    viewer.window._qt_viewer.dropEvent(event)


def _open_by(way, viewer, widgets, folder, monkeypatch):
    if way == "panel":
        widgets["Subject"].open_folder(folder)
    elif way == "reader":  # File > Open Folder
        viewer.open(str(folder), plugin="anchorad")
    elif way == "drop":
        # napari asks which reader opens a dropped folder when several accept folders: the
        # user picks AnchorAD (the dialog is modal, so the test answers it)
        from napari._qt.dialogs.qt_reader_dialog import QtReaderDialog

        def choose(dialog):
            offered = [button.text() for button in dialog.reader_btn_group.buttons()]
            assert "AnchorAD" in offered, offered
            return "AnchorAD", False

        monkeypatch.setattr(QtReaderDialog, "get_user_choices", choose)
        _drop(viewer, folder)
    else:  # File > Open Sample
        from anchorad_gui import _demo

        monkeypatch.setattr(_demo, "demo_subject_dir", lambda generate=True: folder)
        viewer.open_sample("anchorad", "demo_subject")


def _assert_only(viewer, widgets, folder):
    from anchorad_gui._session import anchorad_meta

    session = widgets["Subject"].session
    sid = folder.name
    assert session.subject is not None and session.subject.folder == folder
    assert [layer.name for layer in viewer.layers] == [f"{sid} T1", f"{sid} fMRI"]
    assert {anchorad_meta(layer)["folder"] for layer in viewer.layers} == {str(folder.resolve())}
    assert widgets["Subject"].folder_edit.text() == str(folder)
    assert f"<b>{sid}</b>" in widgets["Subject"].modalities_label.text()
    assert widgets["Diagnose"].status_label.text().startswith(f"{sid} open")
    assert f"<b>{sid}</b>" in widgets["Report"].subject_label.text()
    assert session.result is None and widgets["Diagnose"].table.rowCount() == 0
    assert widgets["Inspect"].round_combo.count() == 0 and widgets["Inspect"].caption() == ""


@pytest.mark.parametrize("way", ["panel", "reader", "drop", "sample"])
def test_opening_b_after_a_leaves_only_b(way, gui_viewer, subjects, demo_bundle, qtbot, monkeypatch):
    viewer, widgets = gui_viewer
    a, b = subjects
    session = widgets["Subject"].session
    _open(qtbot, widgets, a)
    _diagnose(qtbot, widgets, demo_bundle)
    widgets["Inspect"].select("fmri", "attention", "smri")  # an overlay of A's diagnosis
    assert session.overlay("overlay-smri") is not None and len(viewer.layers) >= 3

    _open_by(way, viewer, widgets, b, monkeypatch)
    qtbot.waitUntil(lambda: session.subject is not None and session.subject.folder == b and not session.busy,
                    timeout=T)
    qtbot.wait(50)
    _assert_only(viewer, widgets, b)

    # and back to A the same way: still one subject (same-name layers are replaced too)
    _open_by(way, viewer, widgets, a, monkeypatch)
    qtbot.waitUntil(lambda: session.subject.folder == a and not session.busy, timeout=T)
    qtbot.wait(50)
    _assert_only(viewer, widgets, a)
    _open_by(way, viewer, widgets, a, monkeypatch)  # the same subject again
    qtbot.wait(100)
    wait_idle(qtbot, session, T)
    _assert_only(viewer, widgets, a)


@pytest.mark.parametrize("way", ["panel", "reader"])
def test_a_failed_open_changes_nothing(way, gui_viewer, subjects, demo_bundle, qtbot, tmp_path, monkeypatch):
    viewer, widgets = gui_viewer
    a, _ = subjects
    session = widgets["Subject"].session
    _open(qtbot, widgets, a)
    _diagnose(qtbot, widgets, demo_bundle)
    result, names = session.result, [layer.name for layer in viewer.layers]
    bad = tmp_path / "sub-bad"
    (bad / "anat").mkdir(parents=True)
    (bad / "anat" / "sub-bad_T1w.nii.gz").write_bytes(b"not a NIfTI file at all")
    before = len(_messages())
    if way == "panel":
        widgets["Subject"].open_folder(bad)
        wait_idle(qtbot, session, T)
        assert any("sub-bad_T1w.nii.gz" in m for m in _messages()[before:]), _messages()[before:]
        assert "Not opened" in widgets["Subject"].open_status.text()
    else:
        with pytest.raises(Exception, match="sub-bad_T1w"):
            viewer.open(str(bad), plugin="anchorad")
        qtbot.wait(50)
    assert session.subject.folder == a and session.result is result
    assert [layer.name for layer in viewer.layers] == names
    assert widgets["Subject"].folder_edit.text() == str(a)  # the box is back on the open subject
    assert widgets["Diagnose"].run_button.isEnabled()


# ---------------------------------------------------------------------------------------- stale results
def _stale_marks(widgets):
    """Whether the table, the overlays and the Report panel each say the result is stale."""
    session = widgets["Diagnose"].session
    overlays = [layer for layer in session.anchorad_layers(("overlay-smri", "overlay-fmri"))]
    assert overlays, "no overlay shown"
    return {
        "table": widgets["Diagnose"].stale_label.isVisibleTo(widgets["Diagnose"])
        and widgets["Diagnose"].summary_label.text().startswith("[STALE]"),
        "overlays": all(layer.name.endswith("[STALE]") for layer in overlays) and "[STALE]" in widgets["Inspect"].caption(),
        "inspect": widgets["Inspect"].stale_label.isVisibleTo(widgets["Inspect"]),
        "report": widgets["Report"].stale_label.isVisibleTo(widgets["Report"]),
    }


def test_edits_and_cancel_mark_the_result_stale(gui_viewer, subjects, demo_bundle, qtbot):
    viewer, widgets = gui_viewer
    subject, diagnose = widgets["Subject"], widgets["Diagnose"]
    session = subject.session
    _open(qtbot, widgets, subjects[0])
    _diagnose(qtbot, widgets, demo_bundle)
    widgets["Inspect"].select("fmri", "attention", "smri")
    assert session.result.inputs == session.current_inputs()
    assert _stale_marks(widgets) == dict.fromkeys(("table", "overlays", "inspect", "report"), False)

    # editing the note marks everything stale; putting it back clears the marks
    note = subject.clinical_edit.toPlainText()
    subject.clinical_edit.setPlainText(note + " Reports worsening memory.")
    subject.validate_now()
    assert session.stale_reasons() == ["the clinical note changed after this diagnosis"]
    assert _stale_marks(widgets) == dict.fromkeys(("table", "overlays", "inspect", "report"), True)
    assert "clinical note changed" in diagnose.stale_label.text()
    subject.clinical_edit.setPlainText(note)
    subject.validate_now()
    assert not session.stale and not any(_stale_marks(widgets).values())

    # genetics too
    subject.genetics_edit.setPlainText("E2/E2")
    subject.validate_now()
    assert session.stale_reasons() == ["the genetics changed after this diagnosis"]
    subject._reset_genetics()
    subject.validate_now()
    assert not session.stale

    # a later run that is cancelled leaves the earlier result, marked stale
    worker = diagnose.run()
    worker.yielded.connect(lambda step: diagnose.cancel())
    qtbot.waitUntil(lambda: diagnose.worker is None, timeout=T)
    wait_idle(qtbot, session, T)
    assert diagnose.status_label.text() == "Cancelled."
    assert session.stale_reasons() == ["a later run was cancelled"]
    assert all(_stale_marks(widgets).values())
    # a finished run clears the marks
    _diagnose(qtbot, widgets, demo_bundle)
    widgets["Inspect"].select("fmri", "attention", "smri")
    assert not session.stale and not any(_stale_marks(widgets).values())


# ---------------------------------------------------------------------------------------- smaller items
def test_a_missing_modality_is_shown_as_missing_in_the_cross_modal_chart(gui_viewer, subjects, demo_bundle, qtbot):
    viewer, widgets = gui_viewer
    _open(qtbot, widgets, subjects[0])
    widgets["Subject"].genetics_edit.setPlainText("")  # genetics missing
    widgets["Subject"].validate_now()
    _diagnose(qtbot, widgets, demo_bundle)
    inspect = widgets["Inspect"]
    inspect.select("smri", "attention", "cross")
    texts = dict(zip(["fMRI", "Clinical text", "Genetics"], inspect.plot.cell_texts))
    assert set(texts["Genetics"]) == {"missing"}
    assert all(t != "missing" for t in texts["fMRI"] + texts["Clinical text"])
    assert "Genetics missing" in inspect.info_label.text() and "Genetics 0%" not in inspect.info_label.text()


def test_report_dialog_never_starts_inside_the_package(tmp_path, monkeypatch):
    import anchorad_core
    from anchorad_core.resources import resource_path
    from anchorad_gui._report_panel import default_report_folder

    package = Path(anchorad_core.__file__).parent
    demo = Path(resource_path("demo/sub-001"))
    monkeypatch.chdir(tmp_path)
    assert default_report_folder(demo) == tmp_path  # the demo subject lives in the package's resources
    monkeypatch.chdir(demo)
    assert default_report_folder(demo) == Path.home()
    monkeypatch.chdir(package)
    assert default_report_folder(demo) == Path.home()
    subject = _copy_subject(demo, tmp_path, "sub-103")
    assert default_report_folder(subject) == tmp_path  # next to a subject of one's own
    (tmp_path / "out").mkdir()
    assert default_report_folder(subject, tmp_path / "out") == tmp_path / "out"  # the last report's folder
