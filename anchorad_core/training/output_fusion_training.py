"""Training of the output-level fusion baselines on cached pooled phase-1 features."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..fusion.output_fusion import OutputFusion
from ..modality import Modality
from .config import StageSettings
from .features import FeatureCache
from .inputs import CohortInputs
from .loop import fit


def _pooled(cache: FeatureCache, modalities: tuple[Modality, ...], ids: list[str]):
    feats, present = {}, {}
    for m in modalities:
        feats[m], present[m] = cache.pooled_batch(m, ids)
    return feats, present


def train_output_fusion(
    method: str,
    modalities: tuple[Modality, ...],
    cache: FeatureCache,
    train: CohortInputs,
    val: CohortInputs,
    num_classes: int,
    seed: int,
    settings: StageSettings | None = None,
) -> OutputFusion:
    """Fit a ``concat`` / ``linear`` / ``self-attention`` fusion head with early stopping."""
    settings = settings or StageSettings(epochs=60, batch_size=16, lr=3e-3, weight_decay=0.01, patience=10)
    torch.manual_seed(seed)
    fusion = OutputFusion(method, {m: cache.pooled_widths[m] for m in modalities}, num_classes)
    train_f, train_p = _pooled(cache, modalities, train.subject_ids)
    val_f, val_p = _pooled(cache, modalities, val.subject_ids)
    y_train = torch.as_tensor(train.labels)
    y_val = torch.as_tensor(val.labels)

    def step(index: list[int]) -> torch.Tensor:
        f = {m: v[index] for m, v in train_f.items()}
        p = {m: v[index] for m, v in train_p.items()}
        return F.cross_entropy(fusion(f, p), y_train[index])

    def validate() -> float:
        return float(F.cross_entropy(fusion(val_f, val_p), y_val)) if len(val) else 0.0

    fit([fusion], step, validate, len(train), settings, seed)
    return fusion


@torch.no_grad()
def output_fusion_probabilities(
    fusion: OutputFusion, modalities: tuple[Modality, ...], cache: FeatureCache, inputs: CohortInputs
) -> np.ndarray:
    """``(n, K)`` probabilities of a trained fusion head."""
    fusion.eval()
    f, p = _pooled(cache, modalities, inputs.subject_ids)
    return torch.softmax(fusion(f, p), -1).numpy()
