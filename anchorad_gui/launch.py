"""``anchorad gui [SUBJECT_DIR]``: open napari with the AnchorAD panels docked and a subject loaded."""
from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["launch", "dock_panels", "show_panel", "PANELS"]

#: (manifest widget display name, dock area) in docking order.
PANELS: tuple[tuple[str, str], ...] = (
    ("Subject", "right"),
    ("Diagnose", "right"),
    ("Inspect", "right"),
    ("Report", "right"),
)


def ensure_registered() -> None:
    """Register the plugin manifest with npe2 when the package is not installed (source checkout)."""
    from npe2 import PluginManager

    pm = PluginManager.instance()
    if "anchorad" not in pm:
        pm.register(str(Path(__file__).with_name("napari.yaml")))


def dock_panels(viewer: Any, tabify: bool = True) -> dict[str, Any]:
    """Dock every AnchorAD panel on ``viewer`` (as the Plugins menu does); returns name -> widget."""
    ensure_registered()
    widgets: dict[str, Any] = {}
    docks: dict[str, Any] = {}
    for name, _area in PANELS:
        docks[name], widgets[name] = viewer.window.add_plugin_dock_widget("anchorad", name, tabify=False)
    if tabify:
        _tabify(viewer, docks)
    return widgets


def _tabify(viewer: Any, docks: dict[str, Any]) -> None:
    """All panels as tabs of one dock (each gets the full height), the Subject tab in front."""
    qt_window = getattr(viewer.window, "_qt_window", None)
    names = [name for name, _ in PANELS if docks.get(name) is not None]
    if qt_window is None or len(names) < 2:
        return
    for name in names[1:]:
        qt_window.tabifyDockWidget(docks[names[0]], docks[name])
    docks[names[0]].raise_()


def show_panel(viewer: Any, name: str) -> None:
    """Bring the AnchorAD panel ``name`` (``"Diagnose"``...) to the front of its tab stack."""
    from qtpy.QtWidgets import QDockWidget

    qt_window = getattr(viewer.window, "_qt_window", None)
    if qt_window is None:
        return
    for dock in qt_window.findChildren(QDockWidget):
        if dock.windowTitle().startswith(name) or dock.objectName().startswith(name):
            dock.show()
            dock.raise_()
            return


def launch(
    subject_dir: "str | Path | None" = None,
    bundle_dir: "str | Path | None" = None,
    *,
    block: bool = True,
    viewer: Any = None,
) -> Any:
    """Open napari with the AnchorAD panels docked and a subject opened.

    Parameters
    ----------
    subject_dir : str or Path, optional
        A ``sub-*`` folder; default: the shipped demo subject (SYNTHETIC data).
    bundle_dir : str or Path, optional
        A model bundle for the Diagnose panel; default: the shipped demo bundle, if any.
    block : bool
        Run napari's event loop until the window closes (``False`` returns at once).
    viewer : napari.Viewer, optional
        Use this viewer instead of a new one.

    Returns
    -------
    napari.Viewer
    """
    import napari

    from ._demo import demo_subject_dir
    from ._session import report_error
    from ._subject_panel import open_subject

    ensure_registered()
    if viewer is None:
        viewer = napari.Viewer(title="AnchorAD - research use only")
    widgets = dock_panels(viewer)
    if bundle_dir is not None:
        widgets["Diagnose"].set_bundle(bundle_dir)
    folder: Path | None
    if subject_dir is not None:
        folder = Path(subject_dir)
    else:
        try:
            folder = demo_subject_dir()
        except Exception as exc:  # no demo: open an empty viewer
            report_error(exc, "demo subject")
            folder = None
    if folder is not None:
        widgets["Subject"].folder_edit.setText(str(folder))
        open_subject(viewer, folder)
    if block:
        napari.run()
    return viewer
