"""LoRA on a frozen anchor backbone with peft, and the key bookkeeping around it."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import torch
from peft import LoraConfig, PeftModel, get_peft_model

from ..backbones.base import ModalityBackbone

ADAPTER_NAME = "default"


@dataclass
class LoraSettings:
    """LoRA hyper-parameters of an anchored round (peft ``LoraConfig`` fields)."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LoraSettings":
        """Inverse of :meth:`to_dict`."""
        return cls(**data)


def attach_lora(backbone: ModalityBackbone, settings: LoraSettings) -> PeftModel:
    """Freeze ``backbone`` and inject LoRA adapters on its attention projections.

    The backbone module is modified in place (peft wraps the targeted layers); the returned
    :class:`peft.PeftModel` switches the adapter on (default) or off
    (``with model.disable_adapter(): ...``), which gives back the phase-1 backbone exactly.
    """
    config = lora_config(settings, backbone.lora_target_modules, backbone.phase2_trainable_modules)
    return get_peft_model(backbone, config, adapter_name=ADAPTER_NAME)


def lora_config(settings: LoraSettings, target_modules: "list[str] | str",
                modules_to_save: "Sequence[str]" = ()) -> LoraConfig:
    """The peft ``LoraConfig`` of an anchored round (also what ``anchorad backbones --plan`` injects).

    Parameters
    ----------
    settings
        Rank, alpha and dropout.
    target_modules
        peft ``target_modules``: module-name suffixes or one regular expression.
    modules_to_save
        Modules that are not LoRA-wrapped but train (peft keeps a trainable copy of each).
    """
    return LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=target_modules,
        modules_to_save=list(modules_to_save) or None,
        bias="none",
    )


def load_lora(backbone: ModalityBackbone, adapter_dir: str) -> PeftModel:
    """Inject the adapter saved by ``PeftModel.save_pretrained`` into ``backbone`` (frozen)."""
    model = PeftModel.from_pretrained(backbone, adapter_dir, adapter_name=ADAPTER_NAME, is_trainable=False)
    return model


def base_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """State dict of ``module`` as it was before LoRA injection.

    peft renames wrapped layers' parameters (``qkv.weight`` -> ``qkv.base_layer.weight``), adds
    ``lora_`` tensors and keeps ``modules_to_save`` twice (``original_module`` and a trainable
    copy). This undoes all three so the result loads into a plain backbone.
    """
    clean: dict[str, torch.Tensor] = {}
    for key, value in module.state_dict().items():
        if "lora_" in key or ".modules_to_save." in key:
            continue
        key = key.replace(".base_layer.", ".").replace(".original_module.", ".")
        clean[key] = value
    return clean
