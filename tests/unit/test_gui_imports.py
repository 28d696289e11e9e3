"""The napari plugin uses only the core's public names, and the core imports no Qt.

``anchorad_gui`` may import from ``anchorad_core`` only what its top level exports
(``anchorad_core.__all__``) and what ``anchorad_core.session`` exports (its ``__all__``); these
tests parse every module of the plugin, without importing it (no Qt needed).
"""
from __future__ import annotations

import ast
import subprocess
import sys
import types
from pathlib import Path

import pytest

import anchorad_core
import anchorad_core.session

GUI = Path(__file__).resolve().parents[2] / "anchorad_gui"
ALLOWED = {
    "anchorad_core": set(anchorad_core.__all__),
    "anchorad_core.session": set(anchorad_core.session.__all__),
}


def _core_imports(path: Path) -> list[tuple[int, str, str]]:
    """``(line, module, name)`` of every import from ``anchorad_core`` in a file (``name`` empty for ``import x``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name, "") for a in node.names if a.name.split(".")[0] == "anchorad_core"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "anchorad_core":
            found += [(node.lineno, node.module, a.name) for a in node.names]
    return found


def _violations(path: Path) -> list[str]:
    bad = []
    for line, module, name in _core_imports(path):
        if not name:  # "import anchorad_core" is fine; "import anchorad_core.x" reaches inside
            if module != "anchorad_core":
                bad.append(f"{path.name}:{line}: import {module}")
        elif module not in ALLOWED or name not in ALLOWED[module]:
            bad.append(f"{path.name}:{line}: from {module} import {name}")
    return bad


def test_the_gui_imports_only_public_core_names():
    modules = sorted(GUI.rglob("*.py"))
    assert len(modules) > 10
    bad = [v for path in modules for v in _violations(path)]
    assert not bad, "anchorad_gui reaches inside anchorad_core:\n" + "\n".join(bad)


def test_the_public_names_exist_and_are_not_modules():
    for module, names in ALLOWED.items():
        owner = sys.modules[module]
        for name in names - {"__version__"}:
            value = getattr(owner, name)
            assert not isinstance(value, types.ModuleType), f"{module}.{name} is a module"


def test_the_checker_catches_a_private_import(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import anchorad_core\nfrom anchorad_core import Session\n"
                      "def f():\n    from anchorad_core.explain.attributions import round_attributions\n"
                      "    import anchorad_core.data.fmri\n    from anchorad_core.session import Secret\n")
    assert _violations(sample) == [
        "sample.py:4: from anchorad_core.explain.attributions import round_attributions",
        "sample.py:5: import anchorad_core.data.fmri",
        "sample.py:6: from anchorad_core.session import Secret",
    ]


@pytest.mark.slow  # a subprocess
def test_importing_the_core_imports_no_qt_or_napari():
    code = ("import sys, anchorad_core, anchorad_core.session\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'napari', 'magicgui', 'vispy'})\n"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(GUI.parent))
    assert out.stdout.strip() == "", out.stdout
