"""AnchorAD napari plugin: load a subject, diagnose it, inspect each anchor round, export a report.

The plugin is declared in ``napari.yaml`` (npe2). It is a set of thin views over the Qt-free
core session, :class:`anchorad_core.session.Session` (subject, model, diagnosis, explanations,
report), which ``anchorad predict`` and ``anchorad report`` use too. It imports from the core
only the names :mod:`anchorad_core` exports at its top level and those of
:mod:`anchorad_core.session` (``tests/test_gui_imports.py`` enforces it).

Modules: :mod:`._session` (the viewer's session and its Qt signals), :mod:`._workers` (the
core's generators in napari workers), :mod:`._layers` (the AnchorAD layers of a viewer),
:mod:`._panel` (the panels' base), one module per panel, and the reader, sample data and the
drawing helpers.

Importing this package imports neither Qt nor napari (npe2 imports it to find the manifest).
``from anchorad_gui.launch import launch; launch("path/to/sub-001")`` opens a viewer with
every panel docked.
"""
from __future__ import annotations

__version__ = "0.1.0"
