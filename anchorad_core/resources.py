"""Find the data files AnchorAD ships (atlas, gradients, demo subject, demo bundle...).

The top-level ``resources/`` folder of a source checkout is installed as the package
``anchorad_resources`` (see ``setup.cfg``). :func:`resource_path` finds a file in either
place: first through :func:`importlib.resources.files`, then in the source tree next to
``anchorad_core``.

Configs refer to shipped files with the ``resource:`` scheme, e.g.
``"gradient_path": "resource:gradients/schaefer400_17n_gradients.csv"``, so that a preset
works the same from a checkout and from a wheel; :func:`resolve_path` understands it.
"""
from __future__ import annotations

import importlib.resources
import importlib.util
from pathlib import Path

from .errors import ConfigError

__all__ = ["RESOURCE_SCHEME", "resource_path", "resolve_path", "resources_root"]

#: Prefix of config values that name a shipped resource.
RESOURCE_SCHEME = "resource:"

_PACKAGE = "anchorad_resources"
_SOURCE_ROOT = Path(__file__).resolve().parent.parent / "resources"


def resources_root() -> Path:
    """Folder holding the shipped resources (installed package or source checkout)."""
    try:
        spec = importlib.util.find_spec(_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        if Path(location).is_dir():
            return Path(location)
    return _SOURCE_ROOT


def resource_path(relative: str) -> Path:
    """Absolute path of the shipped file ``relative`` (``/``-separated, e.g. ``gradients/x.csv``).

    Raises
    ------
    ConfigError
        If no installed package nor source checkout holds the file.
    """
    parts = [p for p in str(relative).replace("\\", "/").split("/") if p]
    if not parts or any(p == ".." for p in parts):
        raise ConfigError(f"invalid resource name {relative!r}")
    candidates: list[Path] = []
    try:
        node = importlib.resources.files(_PACKAGE)
        for part in parts:
            node = node.joinpath(part)
        candidates.append(Path(str(node)))
    except (ModuleNotFoundError, TypeError, ValueError):
        pass
    candidates.append(_SOURCE_ROOT.joinpath(*parts))
    for candidate in candidates:
        if candidate.is_file() or candidate.is_dir():
            return candidate
    raise ConfigError(
        f"shipped resource {relative!r} not found (looked in the installed package "
        f"{_PACKAGE!r} and in {_SOURCE_ROOT}); reinstall AnchorAD or point the config at a file"
    )


def resolve_path(value: "str | Path", base_dir: "Path | None" = None) -> Path:
    """Turn a path from a config into an absolute path.

    ``resource:<name>`` names a shipped file; a relative path is taken relative to
    ``base_dir`` (a bundle folder) when given, else to the working directory; ``~`` is
    expanded.
    """
    text = str(value)
    if text.startswith(RESOURCE_SCHEME):
        return resource_path(text[len(RESOURCE_SCHEME):])
    path = Path(text).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = Path(base_dir) / path
    return path.resolve()
