"""setup.cfg lists its packages by hand: every Python package of the project must be there.

A package missing from the list still imports in an editable install (how the tests run),
and is silently left out of a wheel (how a user installs).
"""
from __future__ import annotations

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _listed() -> set[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return {line.strip() for line in config["options"]["packages"].splitlines() if line.strip()}


def test_every_package_is_listed_in_setup_cfg():
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("anchorad_core", "anchorad_gui")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert found, "no packages found"
    missing = sorted(found - _listed())
    assert not missing, f"packages missing from setup.cfg [options] packages: {missing}"


def test_every_listed_package_exists():
    listed = {p for p in _listed() if not p.startswith("anchorad_resources")}
    absent = sorted(p for p in listed if not (ROOT / Path(*p.split(".")) / "__init__.py").is_file())
    assert not absent, f"setup.cfg lists packages that do not exist: {absent}"
