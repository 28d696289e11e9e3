"""Brain-JEPA's ViT over ROI × time as the fMRI backbone (family ``"brainjepa"``).

``modeling`` (gradient positional embedding, blocks and :class:`BrainJEPABackbone`,
registered on import), ``connectivity_readout`` (the network-similarity readout),
``conversion`` (:func:`load_brainjepa_checkpoint`: the released Brain-JEPA checkpoint into
the model) and ``presets`` (``brainjepa-vit-b``, ``brainjepa-demo``). Its attention layers are
the shared ones of :mod:`anchorad_core.backbones.layers`.
"""
from __future__ import annotations

from . import presets  # noqa: F401  (registers the presets)
from .conversion import load_brainjepa_checkpoint
from .modeling import Block, BrainJEPABackbone, GradientPositionalEmbedding, PatchEmbed1d, sincos_1d

__all__ = ["BrainJEPABackbone", "GradientPositionalEmbedding", "load_brainjepa_checkpoint", "sincos_1d",
           "Block", "PatchEmbed1d"]
