"""Gradient checkpointing of the Hugging Face backbones (``TrainConfig.gradient_checkpointing``).

With checkpointing a transformer layer keeps only its input for the backward pass and runs its
forward again there, instead of keeping every intermediate tensor: the activation memory of a
training step drops from all layers' intermediates to one layer's plus every layer's input
(``anchorad backbones --plan`` prints both), for about one more forward pass of compute.

It is switched on with Transformers' own ``activation_checkpointing_enable`` (the former
``gradient_checkpointing_enable``) and ``use_reentrant=False``, on the backbones that wrap a
Hugging Face model (``hf-text``, ``nucleotide-transformer``); the UniFormer and Brain-JEPA
backbones have no checkpointing (their activations are small next to their weights' and the
text model's: the plan says so per round).

Two details make it exact inside an anchored round:

* the recomputed layer must see the gated injection the original forward saw; the
  ``context_fn`` :func:`~anchorad_core.fusion.gated_injection.checkpoint_contexts` replays it;
* Transformers checkpoints a layer only while the layer is in training mode, but phase 2 keeps
  the frozen anchor in eval mode (no dropout, fixed statistics). :func:`keep_checkpointing_in_eval`
  sets the training flag of the checkpointed layer modules alone (not of their sub-modules:
  dropout stays off); the layers themselves read the flag only to decide on checkpointing.
"""
from __future__ import annotations

from torch import nn

from ..fusion.gated_injection import checkpoint_contexts

__all__ = ["enable_gradient_checkpointing", "checkpointed_layers", "keep_checkpointing_in_eval", "supports_checkpointing"]


def _hf_model(backbone: nn.Module) -> "nn.Module | None":
    """The Hugging Face model inside a backbone (its ``model`` attribute), or ``None``."""
    model = getattr(backbone, "model", None)
    if model is None or not getattr(model, "supports_gradient_checkpointing", False):
        return None
    return model


def supports_checkpointing(backbone: nn.Module) -> bool:
    """Whether :func:`enable_gradient_checkpointing` can checkpoint ``backbone``."""
    return _hf_model(backbone) is not None


def enable_gradient_checkpointing(backbone: nn.Module) -> bool:
    """Checkpoint every transformer layer of ``backbone``'s Hugging Face model.

    Returns
    -------
    bool
        ``True`` if checkpointing was switched on, ``False`` for a backbone without a Hugging
        Face model (left unchanged).
    """
    model = _hf_model(backbone)
    if model is None:
        return False
    kwargs = {"use_reentrant": False, "context_fn": checkpoint_contexts}
    enable = getattr(model, "activation_checkpointing_enable", None)
    if enable is not None:
        enable(activation_checkpointing_kwargs=kwargs)
    else:  # transformers before the rename
        getattr(model, "gradient_checkpointing_enable")(gradient_checkpointing_kwargs=kwargs)
    return True


def checkpointed_layers(module: nn.Module) -> list[nn.Module]:
    """The layer modules of ``module`` whose forward is checkpointed."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    return [m for m in module.modules() if isinstance(m, GradientCheckpointingLayer) and m.gradient_checkpointing]


def keep_checkpointing_in_eval(module: nn.Module) -> None:
    """Let the checkpointed layers of an eval-mode ``module`` checkpoint (see the module docstring).

    Only the layer modules' own ``training`` flag is set; every sub-module keeps its mode.
    Nothing happens for a module without checkpointed layers.
    """
    if not any(getattr(m, "gradient_checkpointing", False) for m in module.modules()):
        return
    for layer in checkpointed_layers(module):
        layer.training = True
