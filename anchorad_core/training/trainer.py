"""Both phases end to end: build the model, fine-tune each modality, train the anchored rounds."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from ..backbones.registry import build_backbone
from ..fusion.aggregation import fit_stacker, fit_temperature, select_rule, validation_round_weights
from ..fusion.lora import base_state_dict
from ..model import AnchorADModel, AnchorStacker
from ..modality import Modality
from ..progress import SILENT, Progress
from .config import BackboneSpec, TrainConfig
from .cross_fitting import cross_fit_cache, modalities_to_cross_fit
from .features import FeatureCache
from .gradient_checkpointing import enable_gradient_checkpointing
from .inputs import CohortInputs
from .loop import TrainHistory
from .run_state import RunState
from .phase1 import train_phase1
from .phase2 import anchored_probabilities, train_phase2
from .profile import timed

if TYPE_CHECKING:  # accelerate ships no type information: the name documents what is passed
    from accelerate import Accelerator


@dataclass
class TrainingResult:
    """A trained model and how its training went."""

    model: AnchorADModel
    phase1: dict[Modality, TrainHistory] = field(default_factory=dict)
    phase2: dict[Modality, TrainHistory] = field(default_factory=dict)
    cache: FeatureCache | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    #: Modalities whose training-subject features were cross-fitted.
    cross_fitted: list[Modality] = field(default_factory=list)

    def feature_cache(self) -> FeatureCache:
        """The auxiliary-feature cache, which :func:`train_anchorad` computes after phase 1."""
        if self.cache is None:
            raise RuntimeError("this training result has no feature cache yet (phase 1 only)")
        return self.cache


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
    """Instantiate the backbones of ``config`` and an untrained model around them.

    With ``config.gradient_checkpointing`` the Hugging Face backbones checkpoint their layers
    (:func:`~.gradient_checkpointing.enable_gradient_checkpointing`; the others are unchanged).
    """
    torch.manual_seed(config.seed)
    backbones = {}
    for modality in config.modalities:
        backbones[modality] = build_backbone(config.backbones[modality], base_dir=base_dir,
                                             load_weights=load_weights)
        if config.gradient_checkpointing:
            enable_gradient_checkpointing(backbones[modality])
    return AnchorADModel(backbones, labels).to(device)


def phase1_state(model: AnchorADModel) -> dict[str, dict[str, torch.Tensor]]:
    """Copies of the phase-1 backbone and head weights (LoRA of phase 2 removed)."""
    state = {}
    for m in model.modalities:
        state[f"backbone.{m.value}"] = {k: v.detach().clone() for k, v in base_state_dict(model.backbone(m)).items()}
        state[f"head.{m.value}"] = {k: v.detach().clone() for k, v in model.head(m).state_dict().items()}
    return state


def load_phase1_state(model: AnchorADModel, state: dict[str, dict[str, torch.Tensor]]) -> None:
    """Inverse of :func:`phase1_state` on a freshly built model."""
    for m in model.modalities:
        model.backbone(m).load_state_dict(state[f"backbone.{m.value}"])
        model.head(m).load_state_dict(state[f"head.{m.value}"])
    model.requires_grad_(False)
    model.eval()


def run_phase1(
    config: TrainConfig,
    labels: Sequence[str],
    train: CohortInputs,
    val: CohortInputs,
    progress: Progress = SILENT,
    device: "torch.device | str" = "cpu",
    run: "RunState | None" = None,
    accelerator: "Accelerator | None" = None,
    features: "FeatureCache | None" = None,
) -> TrainingResult:
    """Build the model and fine-tune every modality alone.

    With a ``run`` folder, finished modalities are loaded instead of retrained and an
    interrupted one resumes from its last epoch. ``features`` (phase-1 features of the
    backbones as built: :func:`frozen_feature_cache`) feed the linear probes of the
    modalities they hold instead of running those backbones again.
    """
    seconds: dict[str, float] = {}
    with timed(seconds, "phase1.build"):
        seed_everything(config.seed)
        model = build_model(config, labels, device=device)
    result = TrainingResult(model, seconds=seconds)
    for i, modality in enumerate(model.modalities):
        stage = f"phase1.{modality.value}"
        with timed(result.seconds, stage):
            if run is not None and run.is_done(stage):
                saved = run.stage_result(stage)
                model.backbone(modality).load_state_dict(saved["backbone"])
                model.head(modality).load_state_dict(saved["head"])
                model.backbone(modality).requires_grad_(False)
                result.phase1[modality] = TrainHistory(**saved["history"])
            else:
                result.phase1[modality] = train_phase1(
                    model, modality, train, val, config.phase1[modality], config.seed + i, progress,
                    checkpoint=run.epoch_file(stage) if run is not None else None, accelerator=accelerator,
                    features=features if features is not None and modality in features.pooled else None,
                )
                if run is not None:
                    run.finish_stage(stage, {
                        "backbone": base_state_dict(model.backbone(modality)),
                        "head": model.head(modality).state_dict(),
                        "history": result.phase1[modality].to_dict(),
                    })
        if config.phase1[modality].mode == "head" and _loads_pretrained(config.backbones[modality]):
            model.pretrained_frozen.add(modality)
    return result


def run_phase2(
    result: TrainingResult,
    config: TrainConfig,
    train: CohortInputs,
    val: CohortInputs,
    cache: FeatureCache,
    progress: Progress = SILENT,
    run: "RunState | None" = None,
    accelerator: "Accelerator | None" = None,
) -> TrainingResult:
    """Train one anchored round per modality on the cached auxiliary features."""
    model = result.model
    val_losses: dict[Modality, float] = {}
    for i, anchor in enumerate(model.modalities):
        stage = f"phase2.{anchor.value}"
        with timed(result.seconds, stage):
            if run is not None and run.is_done(stage):
                saved = run.stage_result(stage)
                round_ = model.add_round(anchor, config.num_queries, config.lora, **config.round_options())
                round_.load_state_dict(saved["round"])
                trainable = dict(model.backbone(anchor).named_parameters())
                with torch.no_grad():
                    for name, value in saved["adapter"].items():
                        trainable[name].copy_(value)
                history = TrainHistory(**saved["history"])
            else:
                history = train_phase2(
                    model, anchor, train, val, cache, config.phase2[anchor], config, config.seed + 100 + i,
                    progress, checkpoint=run.epoch_file(stage) if run is not None else None,
                    accelerator=accelerator,
                )
                if run is not None:
                    backbone = model.backbone(anchor)
                    run.finish_stage(stage, {
                        "round": model.anchored_round(anchor).state_dict(),
                        "adapter": {n: p.detach().clone() for n, p in backbone.named_parameters() if p.requires_grad},
                        "history": history.to_dict(),
                    })
        result.phase2[anchor] = history
        # no finite validation loss (an empty split): NaN, which validation_round_weights turns into equal weights
        val_losses[anchor] = history.best_val_loss if np.isfinite(history.best_val_loss) else float("nan")
    with timed(result.seconds, "phase2.aggregation"):
        weights = validation_round_weights([val_losses[m] for m in model.anchors()])
        model.round_weights = dict(zip(model.anchors(), weights))
        fit_aggregation(model, config.aggregation, val, cache)
    model.requires_grad_(False)
    model.eval()
    return result


def fit_aggregation(model: AnchorADModel, rule: str, val: CohortInputs, cache: FeatureCache) -> None:
    """Fit the rounds' temperatures and the stacker on ``val`` and set the default rule.

    ``rule="auto"`` keeps the mean unless another rule is better by more than one standard
    error (:func:`~anchorad_core.fusion.aggregation.select_rule`); the choice and every
    rule's score are kept in ``model.aggregation_selection`` (the bundle and the report say them).
    """
    anchors = model.anchors()
    model.round_temperatures, model.stacker = {}, None
    if len(val) == 0 or len(np.unique(val.labels)) < 2:
        model.aggregation_rule = "mean" if rule == "auto" else rule
        model.aggregation_selection = {"rule": model.aggregation_rule, "validation_log_loss": {},
                                       "why": "no validation subjects of both classes: the paper's mean rule"
                                       if rule == "auto" else "set in the training configuration"}
        return
    probs, present = anchored_probabilities(model, val, cache)
    for r, anchor in enumerate(anchors):
        model.round_temperatures[anchor] = fit_temperature(probs[r][present[r]], val.labels[present[r]])
    stacker = fit_stacker(np.nan_to_num(probs, nan=0.5), present, val.labels)
    if stacker is not None:
        model.stacker = AnchorStacker(dict(zip(anchors, stacker["weights"])), stacker["bias"])
    params = model.aggregation_parameters()
    best, scores = select_rule(probs, present, val.labels, params["round_weights"], params["temperatures"],
                               params["stacker"], groups=val.group_ids)
    if rule == "auto":
        model.aggregation_rule = best
        why = (f"{'the mean' if best == 'mean' else best}: one-standard-error rule on the validation log-loss "
               f"({', '.join(f'{k} {v:.3f}' for k, v in scores.items())}; {len(val)} validation subjects; "
               f"another rule replaces the mean only if it is lower by more than one standard error)")
    else:
        model.aggregation_rule = rule
        why = "set in the training configuration"
    model.aggregation_selection = {"rule": model.aggregation_rule, "validation_log_loss": scores, "why": why}


def train_anchorad(
    config: TrainConfig,
    labels: Sequence[str],
    train: CohortInputs,
    val: CohortInputs,
    progress: Progress = SILENT,
    device: "torch.device | str" = "cpu",
    extra_cache_inputs: "CohortInputs | None" = None,
    run: "RunState | None" = None,
    accelerator: "Accelerator | None" = None,
    features: "FeatureCache | None" = None,
) -> TrainingResult:
    """Phase 1, the auxiliary-feature cache, then phase 2.

    ``extra_cache_inputs`` (e.g. the test split) are added to the feature cache so that
    evaluation re-uses it instead of running the phase-1 encoders again. ``features``, when
    every backbone stays frozen (:func:`features_are_fold_independent`), is that cache
    computed beforehand (:func:`frozen_feature_cache`, e.g. once for all folds of a
    cross-validation): the probes read it and no phase-1 encoder runs here.
    """
    if features is not None:
        if not features_are_fold_independent(config):
            raise ValueError("precomputed phase-1 features need every modality in phase-1 'head' mode")
        _check_covers(features, CohortInputs.concat(train, val, extra_cache_inputs), config.modalities)
    result = run_phase1(config, labels, train, val, progress, device, run, accelerator, features)
    with timed(result.seconds, "feature_cache"):
        if features is not None:
            result.cache = features
        else:
            everyone = CohortInputs.concat(train, val, extra_cache_inputs)
            result.cache = FeatureCache.compute(result.model, everyone, progress=progress,
                                                ram_budget_mb=config.feature_cache_ram_mb)
    if config.cross_fit_folds >= 2:
        with timed(result.seconds, "cross_fitting"):
            result.cross_fitted = cross_fit_cache(result.cache, config, labels, train, val, config.cross_fit_folds,
                                                  progress, device)
    return run_phase2(result, config, train, val, result.cache, progress, run, accelerator)


def features_are_fold_independent(config: TrainConfig) -> bool:
    """Whether every modality's phase 1 leaves its backbone exactly as built (``head`` mode).

    Then a subject's phase-1 features depend neither on labels nor on which subjects a
    fold trains on (the backbones are built from the same weights and seed every time),
    so one :func:`frozen_feature_cache` serves every fold.
    """
    return not modalities_to_cross_fit(config)


def frozen_feature_cache(
    config: TrainConfig,
    labels: Sequence[str],
    inputs: CohortInputs,
    progress: Progress = SILENT,
    device: "torch.device | str" = "cpu",
) -> FeatureCache:
    """Phase-1 features of every subject in ``inputs`` from the backbones as :func:`build_model` builds them."""
    model = build_model(config, labels, device=device)
    return FeatureCache.compute(model, inputs, progress=progress, ram_budget_mb=config.feature_cache_ram_mb)


def _check_covers(features: FeatureCache, inputs: CohortInputs, modalities: Sequence[Modality]) -> None:
    """Raise ``ValueError`` unless ``features`` hold every subject of ``inputs`` that has each of ``modalities``."""
    for modality in modalities:
        held = features.pooled.get(modality)
        if held is None:
            raise ValueError(f"precomputed phase-1 features lack the {modality.value} modality")
        missing = [sid for sid, x in zip(inputs.subject_ids, inputs.samples[modality])
                   if x is not None and sid not in held]
        if missing:
            raise ValueError(f"precomputed {modality.value} features lack {len(missing)} subjects "
                             f"(e.g. {missing[0]})")


def _loads_pretrained(spec: BackboneSpec) -> bool:
    """Whether a backbone spec names pretrained weights (a model folder or a checkpoint)."""
    from ..backbones.registry import resolve_config

    config = resolve_config(spec)
    return bool(config.get("model_path") or config.get("checkpoint"))
