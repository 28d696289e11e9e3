"""Backbone families and presets, chosen by configuration rather than code.

A backbone config is a JSON dict with a ``"family"`` key (one of :func:`families`) and that
family's constructor arguments. A *preset* is a named config (``brainmvp-uniformer-s``,
``brainjepa-demo``...). Users plug another model by writing a config, e.g.
``{"family": "hf-text", "model_path": "/models/medgemma"}``.

The registry imports none of the families: each family package registers its class
(:func:`register_backbone`) and presets (:func:`register_preset`) when it is imported, and
``anchorad_core/backbones/__init__.py`` imports every family, so the catalogue is complete as
soon as anything under ``anchorad_core.backbones`` is imported. A name registered twice is
refused (:class:`~anchorad_core.errors.ConfigError`) instead of silently replacing the first.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .base import ModalityBackbone

_FAMILIES: dict[str, type[ModalityBackbone]] = {}
_PRESETS: dict[str, dict[str, Any]] = {}


def register_backbone(cls: type[ModalityBackbone]) -> type[ModalityBackbone]:
    """Class decorator: make ``cls`` buildable from configs naming ``cls.family``.

    Raises
    ------
    ConfigError
        If another class already registered that family name (a silent overwrite would
        change what every config of that family builds).
    """
    known = _FAMILIES.get(cls.family)
    if known is not None and (known.__module__, known.__qualname__) != (cls.__module__, cls.__qualname__):
        raise ConfigError(f"backbone family {cls.family!r} is already registered by "
                          f"{known.__module__}.{known.__qualname__}; choose another family name")
    _FAMILIES[cls.family] = cls
    return cls


def register_preset(name: str, config: dict[str, Any], description: str = "") -> None:
    """Register a named backbone config.

    Raises
    ------
    ConfigError
        If ``name`` is already registered with another config.
    """
    entry = {"config": dict(config), "description": description}
    known = _PRESETS.get(name)
    if known is not None and known["config"] != entry["config"]:
        raise ConfigError(f"backbone preset {name!r} is already registered with another config; "
                          f"choose another name")
    _PRESETS[name] = entry


def families() -> dict[str, type[ModalityBackbone]]:
    """All registered families by name."""
    return dict(_FAMILIES)


def presets() -> dict[str, dict[str, Any]]:
    """All registered presets: name -> ``{"config": ..., "description": ...}``."""
    return copy.deepcopy(_PRESETS)


def resolve_config(spec: "str | dict[str, Any]") -> dict[str, Any]:
    """Turn a preset name or a config dict (possibly ``{"preset": name, **overrides}``) into a config."""
    config: dict[str, Any] = {"preset": spec} if isinstance(spec, str) else dict(spec)
    name = config.pop("preset", None)
    if name is not None:
        if name not in _PRESETS:
            raise ConfigError(f"unknown backbone preset {name!r}; known: {', '.join(sorted(_PRESETS))}")
        base = copy.deepcopy(_PRESETS[name]["config"])
        base.update(config)
        config = base
    if config.get("family") not in _FAMILIES:
        raise ConfigError(
            f"unknown backbone family {config.get('family')!r}; known: {', '.join(sorted(_FAMILIES))}"
        )
    return config


def build_backbone(
    spec: "str | dict[str, Any]", base_dir: "Path | None" = None, load_weights: bool = True
) -> ModalityBackbone:
    """Build a backbone from a preset name or config.

    Parameters
    ----------
    spec
        Preset name or config dict.
    base_dir
        Folder that relative paths in the config (model folders, gradient files) refer to.
    load_weights
        Load pretrained weights named in the config (``model_path``, ``checkpoint``); when
        ``False`` only the architecture is built (a bundle then loads its own weights).
    """
    config = resolve_config(spec)
    cls = _FAMILIES[config["family"]]
    kwargs = {k: v for k, v in config.items() if k != "family"}
    return cls.from_config(kwargs, base_dir=base_dir, load_weights=load_weights)

