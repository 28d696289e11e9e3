"""Backbone families (one package each) and the registry that builds them from configs.

Importing this package imports every family package; each registers its backbone class and
presets with :mod:`.registry`, which itself imports no family (no import cycle).

* ``uniformer3d/`` (sMRI, BrainMVP's 3-D UniFormer), ``brainjepa/`` (fMRI, Brain-JEPA),
  ``hf_text/`` (clinical text, any Hugging Face language model), ``nucleotide_transformer/``
  (DNA): ``config``, ``modeling``, ``conversion`` (published checkpoints), ``presets``.
* Shared across families: ``base`` (the backbone interface), ``layers`` (attention layers of
  the native families), ``hf_common`` (Hugging Face loading and packing), ``checkpoints``
  (safe checkpoint reading), ``gradients``, ``packaged_models``, ``inventory``.
"""
from __future__ import annotations

from . import brainjepa, hf_text, nucleotide_transformer, uniformer3d  # noqa: F401  (they register themselves)
from .registry import build_backbone, families, presets, register_backbone, register_preset, resolve_config

__all__ = ["build_backbone", "families", "presets", "register_backbone", "register_preset", "resolve_config"]
