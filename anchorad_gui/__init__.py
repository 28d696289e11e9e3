"""AnchorAD napari plugin: load a subject, diagnose it, inspect each anchor round, export a report.

The plugin is declared in ``napari.yaml`` (npe2). It talks to the Qt-free core
(:mod:`anchorad_core`) only through its public API: :class:`~anchorad_core.inference.DiagnosisPipeline`,
:mod:`anchorad_core.data`, :mod:`anchorad_core.device`, :mod:`anchorad_core.explain` and
:mod:`anchorad_core.report`.

Importing this package imports neither Qt nor napari (npe2 imports it to find the manifest).
``from anchorad_gui.launch import launch; launch("path/to/sub-001")`` opens a viewer with
every panel docked.
"""
from __future__ import annotations

__version__ = "0.1.0"
