"""Training configuration: which backbones, how each phase trains, the method's knobs."""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, TypeVar, Union

from ..errors import ConfigError
from ..fusion.aggregation import RULES
from ..fusion.lora import LoraSettings
from ..modality import ALL_MODALITIES, Modality, keys_to_json

#: A backbone as a configuration names it: a preset name or a config dict (:mod:`..backbones.registry`).
BackboneSpec = Union[str, dict[str, Any]]
_V = TypeVar("_V")

PHASE1_MODES = ("full", "lora", "head", "lp-ft", "lp-lora")
#: Default RAM budget (MB) of the auxiliary-feature cache before it spills to a memory-mapped file.
DEFAULT_CACHE_RAM_MB = 2048.0


@dataclass
class StageSettings:
    """Optimiser and early-stopping settings of one training stage.

    Attributes
    ----------
    epochs
        Maximum number of epochs.
    batch_size
        Subjects per step.
    lr
        AdamW learning rate.
    weight_decay
        AdamW weight decay.
    patience
        Stop after this many epochs without a better validation loss (the best epoch's
        weights are restored).
    mode
        Phase 1 only: ``full`` fine-tunes the whole backbone, ``lora`` trains LoRA adapters
        (merged into the backbone afterwards), ``head`` fits the linear head on frozen
        features (a regularised logistic regression, :mod:`.linear_probe`); ``lp-ft`` and
        ``lp-lora`` fit that probe first, then fine-tune the whole backbone or LoRA adapters
        from it, keeping the probe if fine-tuning never improves the validation loss.
    warmup_epochs
        Linear learning-rate warm-up from ``lr / steps`` to ``lr`` over this many epochs
        (0: constant ``lr`` from the first step).
    """

    epochs: int = 20
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.01
    patience: int = 5
    mode: str = "full"
    warmup_epochs: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in PHASE1_MODES:
            raise ConfigError(f"unknown phase-1 mode {self.mode!r}; choose one of {', '.join(PHASE1_MODES)}")
        if not self.warmup_epochs >= 0:
            raise ConfigError(f"warmup_epochs must be >= 0, got {self.warmup_epochs!r}")


@dataclass
class TrainConfig:
    """Everything that determines a training run (stored in the bundle).

    The three per-modality dicts (``backbones``, ``phase1``, ``phase2``) are keyed by
    :class:`~anchorad_core.modality.Modality`: names such as ``"smri"`` given to the
    constructor are parsed into it, and :meth:`to_dict` writes the names.

    Attributes
    ----------
    backbones
        Backbone spec (preset name or config dict) per modality.
    preprocess
        :class:`anchorad_core.data.PreprocessConfig` as a dict.
    phase1
        Phase-1 settings per modality.
    phase2
        Phase-2 settings per anchor modality.
    num_queries
        ``N_q`` of the Q-former (0 = late fusion of the anchor rounds).
    qformer_heads, qformer_depth
        Q-former attention heads and layers per block.
    qformer_width
        The Q-former's own width (``H_a`` is projected from it to each anchor's width).
    gated
        Inject ``H_a`` through zero-initialised per-layer, per-head attention gates (the
        anchor is unchanged at initialisation); ``False`` injects it at full strength.
    pool_extra
        Pool each anchored pass over ``H_a`` too (default: the anchor's own tokens only).
    readout_keys
        The Q-former also reads each auxiliary modality's readout (its pooled feature) as one
        more key of the modality's block (default: tokens only, as in the paper).
    cross_fit_folds
        Folds of the cross-fitting of the auxiliary features of training subjects for
        modalities whose phase 1 changes the backbone (:mod:`.cross_fitting`); ``0`` turns
        it off (in-sample features, leaky: an ablation).
    lora
        LoRA settings of the anchored rounds.
    aggregation
        Default aggregation rule of the bundle; ``auto`` (default) keeps the paper's mean unless
        another rule's validation log-loss is lower by more than one standard error
        (:func:`~anchorad_core.fusion.aggregation.select_rule`).
    val_fraction
        Fraction of the training subjects held out for early stopping and aggregation weights.
    seed
        Seed of every random choice (splits, initialisation, shuffling).
    gradient_checkpointing
        Recompute each transformer layer of the Hugging Face backbones (``hf-text``,
        ``nucleotide-transformer``) in the backward pass instead of keeping its activations
        (:mod:`.gradient_checkpointing`); the same gradients for less memory and more time.
    feature_cache_ram_mb
        RAM budget of the auxiliary-feature cache (:class:`~.features.FeatureCache`, float16
        tokens): beyond it the cache moves to a memory-mapped file in a temporary folder.
    """

    backbones: dict[Modality, BackboneSpec] = field(default_factory=dict)
    preprocess: dict[str, Any] = field(default_factory=dict)
    phase1: dict[Modality, StageSettings] = field(default_factory=dict)
    phase2: dict[Modality, StageSettings] = field(default_factory=dict)
    num_queries: int = 16
    qformer_heads: int = 4
    qformer_depth: int = 1
    qformer_width: int = 256
    gated: bool = True
    pool_extra: bool = False
    readout_keys: bool = False
    cross_fit_folds: int = 5
    lora: LoraSettings = field(default_factory=LoraSettings)
    aggregation: str = "auto"
    val_fraction: float = 0.2
    seed: int = 0
    gradient_checkpointing: bool = False
    feature_cache_ram_mb: float = DEFAULT_CACHE_RAM_MB

    def __post_init__(self) -> None:
        self.backbones = _modality_keys(self.backbones)
        self.phase1 = _modality_keys(self.phase1)
        self.phase2 = _modality_keys(self.phase2)
        if self.aggregation not in RULES + ("auto",):
            raise ConfigError(f"unknown aggregation rule {self.aggregation!r}")
        if self.num_queries < 0:
            raise ConfigError("num_queries must be >= 0")
        if not isinstance(self.gradient_checkpointing, bool):
            raise ConfigError(f"gradient_checkpointing must be true or false, got {self.gradient_checkpointing!r}")
        budget = self.feature_cache_ram_mb
        if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not budget >= 0:
            raise ConfigError(f"feature_cache_ram_mb must be a number of megabytes >= 0, got {budget!r}")

    def round_options(self) -> dict[str, Any]:
        """Keyword arguments of :meth:`AnchorADModel.add_round` besides anchor, ``N_q`` and LoRA."""
        return {"num_heads": self.qformer_heads, "depth": self.qformer_depth, "qformer_width": self.qformer_width,
                "gated": self.gated, "pool_extra": self.pool_extra, "readout_keys": self.readout_keys}

    @property
    def modalities(self) -> tuple[Modality, ...]:
        """Modalities with a backbone, canonical order."""
        return tuple(m for m in ALL_MODALITIES if m in self.backbones)

    def restricted(self, modalities: "tuple[Modality, ...]") -> "TrainConfig":
        """A copy that only uses ``modalities``."""
        keep = set(modalities)
        clone = copy.deepcopy(self)
        clone.backbones = {k: v for k, v in clone.backbones.items() if k in keep}
        clone.phase1 = {k: v for k, v in clone.phase1.items() if k in keep}
        clone.phase2 = {k: v for k, v in clone.phase2.items() if k in keep}
        return clone

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        data = asdict(self)
        for name in ("backbones", "phase1", "phase2"):
            data[name] = keys_to_json(data[name])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """Inverse of :meth:`to_dict`."""
        data = dict(data)
        data["phase1"] = {k: StageSettings(**v) for k, v in data.get("phase1", {}).items()}
        data["phase2"] = {k: StageSettings(**v) for k, v in data.get("phase2", {}).items()}
        data["lora"] = LoraSettings.from_dict(data.get("lora", {}))
        return cls(**data)

    @classmethod
    def demo(cls, quick: bool = False) -> "TrainConfig":
        """The embedded default: small pretrained backbones of the four architectures (CPU-friendly).

        Phase 1 is a linear probe of each frozen pretrained backbone (the sMRI / fMRI / DNA
        models pretrained by ``anchorad pretrain``, the real MiniLM text encoder): their
        features never see a label, so the auxiliary tokens of phase 2 carry no memory of the
        training subjects (no cross-fitting needed). Phase 2 adapts each anchor with LoRA
        through the gated Q-former. ``quick`` shrinks epochs for tests and smoke runs.
        """
        from ..data import PreprocessConfig

        scale = 0.4 if quick else 1.0

        def stage(epochs: int, **kw: Any) -> StageSettings:
            return StageSettings(epochs=max(2, round(epochs * scale)), patience=max(2, round(4 * scale)), **kw)

        return cls(
            backbones={
                Modality.SMRI: "brainmvp-demo",
                Modality.FMRI: "brainjepa-demo",
                Modality.CLINICAL: "minilm-l6",
                Modality.GENETICS: "nt-demo",
            },
            preprocess=PreprocessConfig().to_dict(),
            phase1={m: stage(1, mode="head") for m in ALL_MODALITIES},
            phase2={m: stage(12, lr=5e-4, batch_size=8, weight_decay=0.05) for m in ALL_MODALITIES},
            num_queries=8,
            qformer_width=64,
            lora=LoraSettings(r=8, alpha=16, dropout=0.0),
        )


def _modality_keys(mapping: "Mapping[Modality, _V] | Mapping[str, _V]") -> dict[Modality, _V]:
    """``mapping`` keyed by :class:`Modality` (names parsed; an unknown name raises ``ValueError``)."""
    return {Modality.parse(k): v for k, v in mapping.items()}
