"""Phase 1: each backbone with a linear head, fine-tuned alone on its own modality."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from ..fusion.lora import LoraSettings, attach_lora
from ..modality import Modality
from ..progress import SILENT, Progress
from .config import StageSettings
from .features import FeatureCache
from .inputs import CohortInputs
from .linear_probe import fit_linear_probe
from .loop import TrainHistory, fit
from .standardised_head import standardised_head


if TYPE_CHECKING:  # the model imports nothing from training; the annotation only
    from accelerate import Accelerator

    from ..model import AnchorADModel


def train_phase1(
    model: "AnchorADModel",
    modality: Modality,
    train: CohortInputs,
    val: CohortInputs,
    settings: StageSettings,
    seed: int,
    progress: Progress = SILENT,
    checkpoint: "Path | None" = None,
    accelerator: "Accelerator | None" = None,
    features: "FeatureCache | None" = None,
) -> TrainHistory:
    """Fine-tune ``modality``'s backbone and phase-1 head with cross-entropy.

    Only subjects that have the modality take part. ``settings.mode`` picks the recipe:

    - ``full`` / ``lora``: fine-tune the whole backbone or LoRA adapters (merged back into
      the backbone afterwards, so phase 2 sees a plain backbone) together with the head;
    - ``head``: a linear probe on the frozen pooled features (:func:`fit_linear_probe`);
    - ``lp-ft`` / ``lp-lora``: the probe first, then full or LoRA fine-tuning from it with
      the starting point kept unless an epoch improves the validation loss.

    BatchNorm layers keep their (pretrained) running statistics while fine-tuning: with a
    few subjects per batch their batch statistics would be noise.

    ``features`` (pooled features of this very backbone as built, e.g. computed once for
    every fold of a cross-validation) feed the probe instead of running the backbone again.
    """
    train, val = train.with_modality(modality), val.with_modality(modality)
    backbone = model.backbone(modality)
    head = model.head(modality)
    device = model.device
    torch.manual_seed(seed)

    def samples(inputs: CohortInputs, index: list[int]) -> dict[str, torch.Tensor]:
        batch = backbone.collate([inputs.samples[modality][i] for i in index])
        return {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}

    probe = None
    if settings.mode in ("head", "lp-ft", "lp-lora"):
        backbone.requires_grad_(False)
        backbone.eval()
        with torch.no_grad():
            feats = {
                name: np.zeros((0, backbone.pooled_width), dtype=np.float32) if not len(inp)
                else features.pooled_batch(modality, inp.subject_ids)[0].numpy() if features is not None
                else torch.cat([backbone(samples(inp, list(range(s, min(s + 8, len(inp)))))).pooled.float()
                                for s in range(0, len(inp), 8)]).cpu().numpy()
                for name, inp in (("train", train), ("val", val))
            }
        probe = fit_linear_probe(head, feats["train"], train.labels, feats["val"], val.labels,
                                 blocks=backbone.pooled_blocks)
        progress.update(f"phase 1 · {modality.title} (linear probe)", 1, 1)
        if settings.mode == "head":
            history = TrainHistory(best_epoch=-1, best_val_loss=probe.val_log_loss,
                                   initial_val_loss=probe.val_log_loss, probe=probe.to_dict())
            head.requires_grad_(False)
            return history

    peft_model = None
    encoder: torch.nn.Module
    if settings.mode in ("full", "lp-ft"):
        backbone.requires_grad_(True)
        encoder = backbone
    else:
        backbone.requires_grad_(False)
        peft_model = attach_lora(backbone, LoraSettings(r=8, alpha=16, dropout=0.0))
        encoder = peft_model
    head.requires_grad_(True)

    y_train = torch.as_tensor(train.labels, device=device)
    y_val = torch.as_tensor(val.labels, device=device)

    def logits(inputs: CohortInputs, index: list[int]) -> torch.Tensor:
        # the head is looked up each time: it is a StandardisedHead stand-in while fitting
        return model.heads[modality.value](encoder(samples(inputs, index)).pooled)

    def step(index: list[int]) -> torch.Tensor:
        return F.cross_entropy(logits(train, index), y_train[index])

    def validate() -> float:
        if len(val) == 0:
            return float("nan")  # no validation subjects: no early stopping
        losses = [
            F.cross_entropy(logits(val, list(range(s, min(s + settings.batch_size, len(val))))),
                            y_val[s : s + settings.batch_size], reduction="sum")
            for s in range(0, len(val), settings.batch_size)
        ]
        return float(torch.stack(losses).sum() / len(val))

    def train_mode() -> None:
        backbone.train()
        model.heads[modality.value].train()
        freeze_batchnorm_statistics(backbone)

    # after a probe, its head trains in the coordinates standardised on the probe's features
    standardised = (standardised_head(model.heads, modality.value, torch.as_tensor(feats["train"]))
                    if probe is not None else contextlib.nullcontext())
    with standardised:
        history = fit(
            [backbone, model.heads[modality.value]], step, validate, len(train), settings, seed,
            stage=f"phase 1 · {modality.title}", progress=progress, train_mode=train_mode,
            checkpoint=checkpoint, accelerator=accelerator, keep_initial=probe is not None and len(val) > 0,
        )
    if probe is not None:
        history.probe = probe.to_dict()
    if peft_model is not None:
        peft_model.merge_and_unload()
    backbone.requires_grad_(False)
    head.requires_grad_(False)
    backbone.eval()
    return history


def freeze_batchnorm_statistics(module: torch.nn.Module) -> None:
    """Put every BatchNorm layer of ``module`` in eval mode (running statistics used and kept)."""
    for layer in module.modules():
        if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
            layer.eval()
