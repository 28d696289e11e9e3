"""The backbone registry: a complete eager catalogue, duplicates refused, no import cycle."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import anchorad_core
from anchorad_core.backbones import registry
from anchorad_core.backbones.base import ModalityBackbone
from anchorad_core.errors import ConfigError

ROOT = Path(anchorad_core.__file__).resolve().parents[1]
BACKBONES = Path(registry.__file__).parent
FAMILIES = {"uniformer3d": "uniformer3d", "brainjepa": "brainjepa", "hf_text": "hf-text",
            "nucleotide_transformer": "nucleotide-transformer"}
PRESETS = {"brainmvp-uniformer-s", "brainmvp-demo", "brainjepa-vit-b", "brainjepa-demo", "minilm-l6", "llama-2-7b",
           "llama-2-13b", "smollm2-135m", "nt-demo", "nt-v1-500m-human-ref"}


def test_the_registry_rejects_a_second_family_or_preset_under_a_taken_name():
    registry.presets()  # every family registered
    config = registry.presets()["nt-demo"]["config"]
    registry.register_preset("nt-demo", config, "the same config again: harmless")
    with pytest.raises(ConfigError, match="already registered"):
        registry.register_preset("nt-demo", {**config, "max_length": 7})
    impostor = type("Impostor", (ModalityBackbone,), {"family": "hf-text"})
    with pytest.raises(ConfigError, match="already registered by anchorad_core.backbones.hf_text.modeling"):
        registry.register_backbone(impostor)
    assert registry.families()["hf-text"].__name__ == "HFTextBackbone"
    assert registry.presets()["nt-demo"]["config"] == config  # the refused one replaced nothing


def test_the_catalogue_is_complete_once_the_package_is_imported():
    assert set(FAMILIES.values()) <= set(registry.families())
    assert PRESETS <= set(registry.presets())
    for name in registry.presets():
        assert registry.resolve_config(name)["family"] in registry.families(), name


def _imported_modules(path: Path) -> set[str]:
    """Every module a file imports (relative ones resolved against the backbones package)."""
    package = "anchorad_core." + ".".join(path.relative_to(ROOT / "anchorad_core").with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[: len(base) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            names.add(module)
            names |= {f"{module}.{a.name}" for a in node.names}
    return names


def test_the_registry_module_imports_no_family():
    imported = _imported_modules(BACKBONES / "registry.py")
    families = {f"anchorad_core.backbones.{f}" for f in FAMILIES}
    assert not {m for m in imported if any(m == f or m.startswith(f + ".") for f in families)}
    assert "_import_families" not in (BACKBONES / "registry.py").read_text()


@pytest.mark.parametrize("first", ["anchorad_core.backbones.registry", *(
    pytest.param(f"anchorad_core.backbones.{f}.{part}", marks=pytest.mark.slow)  # a fresh interpreter each
    for f in FAMILIES for part in ("modeling", "presets"))])
def test_any_backbone_module_imported_first_gives_the_whole_catalogue(first):
    """In a fresh interpreter, whichever module comes first: no ImportError from a cycle, and
    every family and preset is registered by the time it returns."""
    code = (f"import {first}\n"
            "from anchorad_core.backbones import registry\n"
            "print(sorted(registry.families())); print(sorted(registry.presets()))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    families, presets = (eval(line) for line in proc.stdout.strip().splitlines()[-2:])
    assert set(families) == set(FAMILIES.values()) and set(presets) == PRESETS


def test_families_share_layers_through_one_module_not_each_other():
    """The fMRI family's attention layers come from backbones/layers.py, not from the sMRI family."""
    for family in FAMILIES:
        others = {f"anchorad_core.backbones.{f}" for f in FAMILIES if f != family}
        for path in (BACKBONES / family).glob("*.py"):
            imported = _imported_modules(path)
            assert not {m for m in imported if any(m == o or m.startswith(o + ".") for o in others)}, path
    assert "anchorad_core.backbones.layers" in _imported_modules(BACKBONES / "brainjepa" / "modeling.py")
