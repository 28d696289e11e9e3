"""Take the documentation screenshots of the napari plugin on the shipped demo subject.

    xvfb-run -a -s "-screen 0 1600x1000x24" python scripts/gui_screenshots.py [--out docs/images]

Drives the real panels (as a researcher would): opens ``resources/demo/sub-001`` with the
shipped demo bundle, runs the diagnosis on the CPU, then shows three maps of the Inspect panel
and saves a screenshot of the whole window for each:

* ``gui.png``: the sMRI round's Q-former attention over the clinical note (not uniform);
* ``gui_fmri_attention.png``: the same round's attention over the fMRI tokens, which is near
  uniform, and the panel says so instead of listing top ROIs;
* ``gui_diagnose.png``: the Diagnose panel's table of the anchor rounds and the aggregate;
* ``gui_subject.png``: the Subject panel (modalities found, note and genetics boxes);
* ``gui_report.png``: the Report panel after exporting the PDF (to a temporary folder) with
  Integrated Gradients computed for every round first.

The subject is SYNTHETIC and the bundle was trained on synthetic subjects.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _wait(app, condition, timeout: float = 600.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        app.processEvents()
        if time.monotonic() > end:
            raise TimeoutError("the GUI did not finish in time")
        time.sleep(0.05)


def _dismiss_toasts(viewer) -> None:
    """Close notification toasts (napari's PyQt5 deprecation notice would cover the canvas)."""
    from qtpy.QtWidgets import QWidget

    for widget in viewer.window._qt_window.findChildren(QWidget):
        if type(widget).__name__ == "NapariQtNotification":
            widget.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "images"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import napari
    from qtpy.QtWidgets import QApplication

    from anchorad_core.resources import resource_path
    from anchorad_gui._session import session_for
    from anchorad_gui._subject_panel import open_subject
    from anchorad_gui.launch import dock_panels, show_panel

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1600, 950)
    app = QApplication.instance()
    widgets = dock_panels(viewer)
    session = session_for(viewer)
    open_subject(viewer, resource_path("demo/sub-001"))
    _wait(app, lambda: not session.busy)
    diagnose, inspect = widgets["Diagnose"], widgets["Inspect"]
    diagnose.set_bundle(resource_path("demo/bundle"))
    diagnose.device_combo.setCurrentText("cpu")
    diagnose.run()
    _wait(app, lambda: diagnose.worker is None and not session.busy)
    _wait(app, lambda: inspect.explanations is not None)
    viewer.dims.set_point(0, viewer.dims.range[0].stop / 2)

    _dismiss_toasts(viewer)
    show_panel(viewer, "Subject")
    _wait(app, lambda: True)
    viewer.screenshot(str(out / "gui_subject.png"), canvas_only=False)
    show_panel(viewer, "Diagnose")
    viewer.screenshot(str(out / "gui_diagnose.png"), canvas_only=False)

    show_panel(viewer, "Inspect")
    for name, (anchor, block) in {"gui.png": ("smri", "clinical"),
                                  "gui_fmri_attention.png": ("smri", "fmri")}.items():
        inspect.select(anchor, "attention", block)
        for _ in range(20):
            app.processEvents()
            time.sleep(0.05)
        viewer.screenshot(str(out / name), canvas_only=False)
        print(f"{out / name}: {inspect.info_label.text()[:160]}")

    report = widgets["Report"]
    show_panel(viewer, "Report")
    report.all_ig_check.setChecked(True)
    with tempfile.TemporaryDirectory() as tmp:
        report.export(Path(tmp) / "sub-001_report.pdf")
        _wait(app, lambda: report.worker is None and not session.busy, timeout=900)
    _dismiss_toasts(viewer)
    viewer.screenshot(str(out / "gui_report.png"), canvas_only=False)
    viewer.close()


if __name__ == "__main__":
    main()
