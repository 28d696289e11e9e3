"""Both phases end to end: build the model, fine-tune each modality, train the anchored rounds."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..backbones.registry import build_backbone
from ..fusion.aggregation import validation_round_weights
from ..fusion.lora import base_state_dict
from ..model import AnchorADModel
from ..modality import Modality
from ..progress import SILENT, Progress
from .config import TrainConfig
from .features import FeatureCache
from .inputs import CohortInputs
from .loop import TrainHistory
from .phase1 import train_phase1
from .phase2 import train_phase2


@dataclass
class TrainingResult:
    """A trained model and how its training went."""

    model: AnchorADModel
    phase1: dict[str, TrainHistory] = field(default_factory=dict)
    phase2: dict[str, TrainHistory] = field(default_factory=dict)
    cache: FeatureCache | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU determinism)."""
    import random

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def build_model(
    config: TrainConfig,
    labels: Sequence[str],
    base_dir: "Path | None" = None,
    load_weights: bool = True,
    device: "torch.device | str" = "cpu",
) -> AnchorADModel:
    """Instantiate the backbones of ``config`` and an untrained model around them."""
    torch.manual_seed(config.seed)
    backbones = {}
    for modality in config.modalities:
        spec = config.backbones[modality.value]
        if isinstance(spec, dict) and base_dir is not None:
            spec = dict(spec)
        backbones[modality] = build_backbone(spec, base_dir=base_dir, load_weights=load_weights)
    return AnchorADModel(backbones, labels).to(device)


def phase1_state(model: AnchorADModel) -> dict[str, dict[str, torch.Tensor]]:
    """Copies of the phase-1 backbone and head weights (LoRA of phase 2 removed)."""
    state = {}
    for m in model.modalities:
        state[f"backbone.{m.value}"] = {k: v.detach().clone() for k, v in base_state_dict(model.backbone(m)).items()}
        state[f"head.{m.value}"] = {k: v.detach().clone() for k, v in model.heads[m.value].state_dict().items()}
    return state


def load_phase1_state(model: AnchorADModel, state: dict[str, dict[str, torch.Tensor]]) -> None:
    """Inverse of :func:`phase1_state` on a freshly built model."""
    for m in model.modalities:
        model.backbone(m).load_state_dict(state[f"backbone.{m.value}"])
        model.heads[m.value].load_state_dict(state[f"head.{m.value}"])
    model.requires_grad_(False)
    model.eval()


def run_phase1(
    config: TrainConfig,
    labels: Sequence[str],
    train: CohortInputs,
    val: CohortInputs,
    progress: Progress = SILENT,
    device: "torch.device | str" = "cpu",
) -> TrainingResult:
    """Build the model and fine-tune every modality alone."""
    import time

    seed_everything(config.seed)
    model = build_model(config, labels, device=device)
    result = TrainingResult(model)
    for i, modality in enumerate(model.modalities):
        start = time.perf_counter()
        result.phase1[modality.value] = train_phase1(
            model, modality, train, val, config.phase1[modality.value], config.seed + i, progress
        )
        result.seconds[f"phase1.{modality.value}"] = time.perf_counter() - start
    return result


def run_phase2(
    result: TrainingResult,
    config: TrainConfig,
    train: CohortInputs,
    val: CohortInputs,
    cache: FeatureCache,
    progress: Progress = SILENT,
) -> TrainingResult:
    """Train one anchored round per modality on the cached auxiliary features."""
    import time

    model = result.model
    val_losses = {}
    for i, anchor in enumerate(model.modalities):
        start = time.perf_counter()
        history = train_phase2(
            model, anchor, train, val, cache, config.phase2[anchor.value], config, config.seed + 100 + i, progress
        )
        result.phase2[anchor.value] = history
        val_losses[anchor.value] = history.best_val_loss if np.isfinite(history.best_val_loss) else 1.0
        result.seconds[f"phase2.{anchor.value}"] = time.perf_counter() - start
    weights = validation_round_weights([val_losses[m.value] for m in model.anchors()])
    model.round_weights = {m.value: w for m, w in zip(model.anchors(), weights)}
    model.aggregation_rule = config.aggregation
    model.requires_grad_(False)
    model.eval()
    return result


def train_anchorad(
    config: TrainConfig,
    labels: Sequence[str],
    train: CohortInputs,
    val: CohortInputs,
    progress: Progress = SILENT,
    device: "torch.device | str" = "cpu",
    extra_cache_inputs: "CohortInputs | None" = None,
) -> TrainingResult:
    """Phase 1, the auxiliary-feature cache, then phase 2.

    ``extra_cache_inputs`` (e.g. the test split) are added to the feature cache so that
    evaluation re-uses it instead of running the phase-1 encoders again.
    """
    import time

    result = run_phase1(config, labels, train, val, progress, device)
    start = time.perf_counter()
    everyone = _concat(train, val, extra_cache_inputs)
    result.cache = FeatureCache.compute(result.model, everyone, progress=progress)
    result.seconds["feature_cache"] = time.perf_counter() - start
    return run_phase2(result, config, train, val, result.cache, progress)


def _concat(*parts: "CohortInputs | None") -> CohortInputs:
    parts = [p for p in parts if p is not None]
    ids: list[str] = []
    labels: list[Any] = []
    samples: dict[Modality, list[Any]] = {m: [] for m in parts[0].samples}
    seen = set()
    for p in parts:
        for i, sid in enumerate(p.subject_ids):
            if sid in seen:
                continue
            seen.add(sid)
            ids.append(sid)
            labels.append(int(p.labels[i]))
            for m in samples:
                samples[m].append(p.samples[m][i])
    return CohortInputs(ids, np.asarray(labels, dtype=np.int64), samples)
