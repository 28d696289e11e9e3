"""BrainMVP's 3-D UniFormer as the sMRI backbone (family ``"uniformer3d"``).

``config`` (readouts, strides, the checkpoint's input-channel rule), ``modeling`` (the
UniFormer stages and :class:`UniFormer3DBackbone`, registered on import), ``conversion``
(:func:`load_brainmvp_checkpoint`: the released BrainMVP checkpoint into the model) and
``presets`` (``brainmvp-uniformer-s``, ``brainmvp-demo``). The layers it shares with the
fMRI family live in :mod:`anchorad_core.backbones.layers`.
"""
from __future__ import annotations

from . import presets  # noqa: F401  (registers the presets)
from .config import InChannelsRule
from .conversion import load_brainmvp_checkpoint
from .modeling import (
    AttentionBlock,
    ConvBlock,
    ConvMlp,
    PatchEmbed3d,
    UniFormer3DBackbone,
    UniFormerStages,
)

__all__ = [
    "UniFormer3DBackbone",
    "UniFormerStages",
    "load_brainmvp_checkpoint",
    "InChannelsRule",
    "AttentionBlock",
    "ConvBlock",
    "ConvMlp",
    "PatchEmbed3d",
]
