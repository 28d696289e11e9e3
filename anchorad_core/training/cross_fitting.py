"""Cross-fitted auxiliary features: no training subject's tokens come from a model that saw it.

Phase 2 learns which auxiliary tokens to trust. If the tokens of a training subject came
from a phase-1 encoder fine-tuned on that very subject, the Q-former would learn to trust
whichever modality memorised its training subjects best — stacking leakage. So, for every
modality whose phase 1 changes the backbone (``full``, ``lora``, ``lp-ft``, ``lp-lora``), the
training subjects are split into ``folds`` parts (whole participants: the other visits of a
person are held out with it, :mod:`.splits`); for each part a phase-1 model is fitted on
the other parts (same recipe, a fold seed) and computes that part's tokens. Validation and
test subjects keep the tokens of the final phase-1 model (fitted on all training subjects),
which never saw them. A ``head`` phase 1 leaves the backbone frozen, so its tokens never
depend on labels and need no cross-fitting.

Cost: ``folds`` extra phase-1 fits per fine-tuned modality (the final model is still fitted
on all training subjects).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..modality import Modality
from ..progress import SILENT, Progress
from .config import TrainConfig
from .features import FeatureCache
from .inputs import CohortInputs
from .phase1 import train_phase1
from .splits import grouped_kfold, max_grouped_folds

#: Phase-1 modes that leave the backbone exactly as pretrained.
FROZEN_MODES = ("head",)


def modalities_to_cross_fit(config: TrainConfig) -> tuple[Modality, ...]:
    """Modalities whose phase-1 training changes the backbone."""
    return tuple(m for m in config.modalities if config.phase1[m].mode not in FROZEN_MODES)


def cross_fit_cache(
    cache: FeatureCache,
    config: TrainConfig,
    labels: Sequence[str],
    train: CohortInputs,
    val: CohortInputs,
    folds: int,
    progress: Progress = SILENT,
    device: "torch.device | str" = "cpu",
) -> list[Modality]:
    """Replace the training subjects' features in ``cache`` by cross-fitted ones; returns the modalities done."""
    from .trainer import build_model

    done = []
    for modality in modalities_to_cross_fit(config):
        have = train.with_modality(modality)
        present_classes = len(np.unique(have.labels)) == len(labels)
        k = int(min(folds, max_grouped_folds(have.labels, have.group_ids))) if present_classes else 0
        if k < 2:
            continue
        for fold, (fit_idx, held_idx) in enumerate(grouped_kfold(have.labels, have.group_ids, k, config.seed)):
            progress.update(f"cross-fitting {modality.title}", fold, k)
            model = build_model(config.restricted((modality,)), labels, device=device)
            train_phase1(model, modality, have.subset(fit_idx), val, config.phase1[modality],
                         config.seed + 500 + fold)
            held = FeatureCache.compute(model, have.subset(held_idx), modalities=(modality,),
                                         ram_budget_mb=cache.ram_budget_mb)
            cache.update(held, modality)
        progress.update(f"cross-fitting {modality.title}", k, k)
        done.append(modality)
    return done
