"""npe2 sample data: the demo subject (SYNTHETIC, built on real templates)."""
from __future__ import annotations

from typing import Any

__all__ = ["demo_subject"]


def demo_subject() -> list[tuple[Any, dict[str, Any], str]]:
    """Layers of the demo subject (T1 and fMRI), as the subject-folder reader makes them."""
    from anchorad_core import InputDataError

    from ._demo import demo_subject_dir
    from ._reader import read_subject_layers, watch_current_viewer

    folder = demo_subject_dir()
    if folder is None:
        raise InputDataError("no demo subject is shipped with this installation")
    watch_current_viewer()  # the viewer's session adopts the subject (one subject per viewer)
    layers = read_subject_layers(folder)
    for _, kwargs, _ in layers:
        kwargs.setdefault("metadata", {}).setdefault("anchorad", {})["sample"] = True
    return layers
