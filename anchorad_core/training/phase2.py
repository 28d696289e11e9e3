"""Phase 2: one anchored round per modality, on cached auxiliary features."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..fusion.qformer import AuxiliaryFeatures
from ..modality import Modality
from ..progress import SILENT, Progress
from .config import StageSettings, TrainConfig
from .features import FeatureCache
from .gradient_checkpointing import keep_checkpointing_in_eval
from .inputs import CohortInputs
from .length_batching import DEFAULT_MAX_SAMPLES, batched_by_length
from .loop import TrainHistory, fit
from .standardised_head import standardised_head


if TYPE_CHECKING:  # the model imports nothing from training; the annotation only
    from accelerate import Accelerator

    from ..model import AnchorADModel


#: Learning-rate factor of the zero-initialised injection gates: Adam moves a parameter by
#: about ``lr`` per step, so at the rounds' 1e-3 a gate would stay below 0.1 for a demo-sized
#: run and the Q-former (whose gradient is scaled by the gate) would barely train.
GATE_LR_FACTOR = 10.0


def phase2_train_mode(model: "AnchorADModel", anchor: Modality) -> None:
    """Put the round of ``anchor`` in training mode the way phase 2 trains it.

    The anchor backbone stays in ``eval()`` (frozen, BatchNorm statistics included), except
    LoRA's own dropout, which is active while training, and checkpointed layers, which still
    checkpoint; the round's Q-former, projections, gates and head train.
    """
    backbone = model.backbone(anchor)
    backbone.eval()
    for name, module in backbone.named_modules():
        if name.endswith("lora_dropout") or ".lora_dropout." in name:
            module.train()
    keep_checkpointing_in_eval(backbone)
    model.anchored_round(anchor).train()


def anchored_batch(
    model: "AnchorADModel", anchor: Modality, inputs: CohortInputs, cache: FeatureCache, index: Sequence[int],
) -> tuple[dict[str, torch.Tensor], dict[Modality, AuxiliaryFeatures]]:
    """The anchor's collated batch of the subjects ``index`` of ``inputs`` and their cached auxiliary features."""
    batch = model.backbone(anchor).collate([inputs.samples[anchor][i] for i in index])
    return batch, cache.aux_for_anchor(anchor, [inputs.subject_ids[i] for i in index])


def anchored_loss(
    model: "AnchorADModel", anchor: Modality, batch: dict[str, torch.Tensor],
    aux: "dict[Modality, AuxiliaryFeatures]", labels: torch.Tensor,
) -> torch.Tensor:
    """Phase 2's training loss: cross-entropy of the anchored round on a collated ``batch``.

    ``aux`` holds the batch's cached auxiliary features (:meth:`FeatureCache.aux_for_anchor`).
    The benchmark times this very function (``anchorad bench``, phase 2).
    """
    return F.cross_entropy(model.anchored(anchor, batch, aux).logits, labels)


def train_phase2(
    model: "AnchorADModel",
    anchor: Modality,
    train: CohortInputs,
    val: CohortInputs,
    cache: FeatureCache,
    settings: StageSettings,
    config: TrainConfig,
    seed: int,
    progress: Progress = SILENT,
    checkpoint: "Path | None" = None,
    accelerator: "Accelerator | None" = None,
) -> TrainHistory:
    """Train the anchored round of ``anchor``: its Q-former, head and LoRA adapter.

    The auxiliary features come from ``cache`` (computed once with the frozen phase-1
    models), so no auxiliary encoder runs during training. Only subjects that have the
    anchor modality take part; their missing auxiliary modalities are masked.
    """
    train, val = train.with_modality(anchor), val.with_modality(anchor)
    torch.manual_seed(seed)
    round_ = model.add_round(anchor, config.num_queries, config.lora, **config.round_options())
    backbone = model.backbone(anchor)
    device = model.device
    y_train = torch.as_tensor(train.labels, device=device)
    y_val = torch.as_tensor(val.labels, device=device)

    def logits(inputs: CohortInputs, index: list[int]) -> torch.Tensor:
        return model.anchored(anchor, *anchored_batch(model, anchor, inputs, cache, index)).logits

    def step(index: list[int]) -> torch.Tensor:
        return anchored_loss(model, anchor, *anchored_batch(model, anchor, train, cache, index), y_train[index])

    def validate() -> float:
        if len(val) == 0:
            return float("nan")  # no validation subjects: no early stopping, no validation weight
        total = 0.0
        for s in range(0, len(val), settings.batch_size):
            index = list(range(s, min(s + settings.batch_size, len(val))))
            total += float(F.cross_entropy(logits(val, index), y_val[index], reduction="sum"))
        return total / len(val)

    # With the gated injection the round starts as the phase-1 model (head warm start, gates
    # at 0, LoRA's B at 0): keeping the start unless an epoch beats it on validation means
    # phase 2 never ends worse on validation than phase 1. The head trains in coordinates
    # standardised on the training subjects' phase-1 features (:mod:`.standardised_head`).
    with standardised_head(round_, "head", cache.pooled_batch(anchor, train.subject_ids)[0]):
        return fit(
            [round_, backbone], step, validate, len(train), settings, seed,
            stage=f"phase 2 · anchor {anchor.title}", progress=progress,
            train_mode=lambda: phase2_train_mode(model, anchor),
            checkpoint=checkpoint, accelerator=accelerator, keep_initial=config.gated and len(val) > 0,
            lr_multipliers={id(g): GATE_LR_FACTOR for g in (round_.gates or [])},
        )


def anchored_probabilities(
    model: "AnchorADModel", inputs: CohortInputs, cache: FeatureCache, batch_size: int = DEFAULT_MAX_SAMPLES,
    max_tokens: "int | None" = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-round probabilities ``(R, n, K)`` and presence ``(R, n)`` over the model's anchors.

    Each round runs over batches of similar anchor length (:func:`.length_batching.batched_by_length`:
    at most ``batch_size`` subjects and ``max_tokens`` padded anchor tokens), written back in
    the subjects' order.
    """
    anchors = model.anchors()
    probs = np.full((len(anchors), len(inputs), len(model.labels)), np.nan)
    present = np.zeros((len(anchors), len(inputs)), dtype=bool)
    with torch.no_grad():
        for r, anchor in enumerate(anchors):
            backbone = model.backbone(anchor)
            index = np.flatnonzero(inputs.present(anchor))
            present[r, index] = True
            for chunk, batch in batched_by_length(backbone, inputs.samples[anchor], index, batch_size, max_tokens):
                ids = [inputs.subject_ids[i] for i in chunk]
                out = model.anchored(anchor, batch, cache.aux_for_anchor(anchor, ids))
                probs[r, chunk] = torch.softmax(out.logits, -1).float().cpu().numpy()
    return probs, present
