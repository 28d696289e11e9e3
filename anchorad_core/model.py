"""The whole AnchorAD model: phase-1 backbones and heads, and one anchored round per modality."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence, cast

import torch
from peft import PeftModel
from torch import nn

from .backbones.base import BackboneOutput, ModalityBackbone, batch_to
from .fusion.aggregation import AggregationParameters, Stacker, aggregate, round_confidences
from .fusion.anchored_round import AnchoredRound, RoundOutput
from .fusion.lora import LoraSettings, attach_lora
from .fusion.qformer import AuxiliaryFeatures
from .modality import ALL_MODALITIES, Modality, keys_from_json, keys_to_json


@dataclass
class AnchorStacker:
    """The ``stacking`` rule's logistic regression: a weight per anchor and a bias.

    In the bundle manifest it is ``{"weights": {"<modality>": w, ...}, "bias": b}``.
    """

    weights: dict[Modality, float]
    bias: float

    def for_anchors(self, anchors: Sequence[Modality]) -> Stacker:
        """The per-round form :func:`~anchorad_core.fusion.aggregation.aggregate` takes (0 for an unknown anchor)."""
        return {"weights": [self.weights.get(m, 0.0) for m in anchors], "bias": self.bias}

    def to_json(self) -> dict[str, Any]:
        """JSON form (modality names as keys)."""
        return {"weights": keys_to_json(self.weights), "bias": self.bias}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "AnchorStacker":
        """Inverse of :meth:`to_json`."""
        return cls({m: float(w) for m, w in keys_from_json(data["weights"]).items()}, float(data["bias"]))


class AnchorADModel(nn.Module):
    """Phase-1 uni-modal models plus phase-2 anchored rounds for one binary (or K-way) task.

    Parameters
    ----------
    backbones
        One backbone per modality the model uses.
    labels
        Class labels in output order, e.g. ``["NC", "AD"]``.
    """

    def __init__(self, backbones: dict[Modality, ModalityBackbone], labels: Sequence[str]) -> None:
        super().__init__()
        self.labels = list(labels)
        self.modalities: tuple[Modality, ...] = tuple(m for m in ALL_MODALITIES if m in backbones)
        # torch's ModuleDict keys must be strings: the three ModuleDicts are keyed by the
        # modality's value (their state-dict prefixes, e.g. ``rounds.smri.``); look them up
        # through backbone() / head() / anchored_round().
        self.backbones = nn.ModuleDict({m.value: backbones[m] for m in self.modalities})
        self.heads = nn.ModuleDict(
            {m.value: nn.Linear(backbones[m].pooled_width, len(self.labels)) for m in self.modalities}
        )
        self.rounds = nn.ModuleDict()
        #: Modalities whose backbone weights are still exactly the pretrained ones (phase 1 in
        #: ``head`` mode): a bundle references them by hash instead of copying them.
        self.pretrained_frozen: set[Modality] = set()
        self.aggregation_rule = "mean"
        #: Per-anchor weights of the ``validation`` rule, temperatures of the ``confidence``
        #: rule, the ``stacking`` rule's logistic regression, and how the default rule was chosen.
        self.round_weights: dict[Modality, float] = {}
        self.round_temperatures: dict[Modality, float] = {}
        self.stacker: AnchorStacker | None = None
        self.aggregation_selection: dict[str, Any] = {}
        # peft wrappers of the backbones that are anchors (the LoRA layers live inside the
        # backbone modules; this dict only holds the switch). Not a ModuleDict on purpose.
        self._peft: dict[Modality, PeftModel] = {}

    # ------------------------------------------------------------------ structure
    def backbone(self, modality: Modality) -> ModalityBackbone:
        """The (possibly LoRA-injected) backbone of ``modality``."""
        return cast(ModalityBackbone, self.backbones[modality.value])

    def head(self, modality: Modality) -> nn.Linear:
        """The phase-1 linear head of ``modality``."""
        return cast(nn.Linear, self.heads[modality.value])

    def anchored_round(self, anchor: Modality) -> AnchoredRound:
        """The anchored round of ``anchor`` (after :meth:`add_round`)."""
        return cast(AnchoredRound, self.rounds[anchor.value])

    def anchors(self) -> tuple[Modality, ...]:
        """Modalities that have an anchored round, in canonical order."""
        return tuple(m for m in self.modalities if m.value in self.rounds)

    def add_round(
        self,
        anchor: Modality,
        num_queries: int,
        lora: LoraSettings,
        num_heads: int = 4,
        depth: int = 1,
        peft_model: "PeftModel | None" = None,
        qformer_width: int = 256,
        gated: bool = True,
        pool_extra: bool = False,
        readout_keys: bool = False,
    ) -> AnchoredRound:
        """Create the anchored round of ``anchor`` (Q-former + head) and attach its LoRA.

        The round's head starts from the phase-1 head of the anchor (a warm start), and the
        backbone is frozen apart from the LoRA adapter (and the backbone's declared
        ``phase2_trainable_modules``). ``peft_model`` re-uses an adapter loaded from disk.
        """
        backbone = self.backbone(anchor)
        aux_widths = {m: self.backbone(m).width for m in self.modalities if m != anchor}
        round_ = AnchoredRound(
            anchor, aux_widths, backbone.extra_token_width, backbone.pooled_width,
            num_classes=len(self.labels), num_queries=num_queries, num_heads=num_heads, depth=depth,
            qformer_width=qformer_width, attention_heads=backbone.attention_heads if gated else None,
            pool_extra=pool_extra,
            readout_widths={m: self.backbone(m).pooled_width for m in aux_widths} if readout_keys else None,
        )
        round_.head.load_state_dict(self.head(anchor).state_dict())
        round_.to(next(backbone.parameters()).device)
        self.rounds[anchor.value] = round_
        self._peft[anchor] = peft_model if peft_model is not None else attach_lora(backbone, lora)
        return round_

    def set_peft(self, anchor: Modality, peft_model: "PeftModel") -> None:
        """Register a LoRA wrapper loaded from a bundle."""
        self._peft[anchor] = peft_model

    # ------------------------------------------------------------------ passes
    @contextlib.contextmanager
    def phase1(self, modality: Modality) -> Iterator[ModalityBackbone]:
        """Context in which ``modality``'s backbone computes its phase-1 features (LoRA off)."""
        peft_model = self._peft.get(modality)
        if peft_model is None:
            yield self.backbone(modality)
        else:
            with peft_model.disable_adapter():
                yield self.backbone(modality)

    def encode(self, modality: Modality, batch: dict[str, torch.Tensor]) -> BackboneOutput:
        """Phase-1 features of a collated batch (LoRA off)."""
        with self.phase1(modality) as backbone:
            return backbone(batch_to(batch, self.device))

    def unimodal_logits(self, modality: Modality, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Phase-1 prediction of ``modality`` alone."""
        head = self.head(modality)
        return head(self.encode(modality, batch).pooled.to(head.weight.dtype))

    def float32_heads(self) -> "AnchorADModel":
        """Put every linear head (phase 1 and the rounds') back in float32, whatever the model's dtype.

        A half-precision model still reads its readouts in float32: the demo readouts differ
        across subjects by ~1e-3 around values near 1 (network similarities), below
        bfloat16's resolution there (2^-8), and the heads weight them by ~1e3. The heads are a
        few hundred parameters each.
        """
        self.heads.float()
        for round_ in self.rounds.values():
            round_.head.float()
        return self

    def anchored(
        self,
        anchor: Modality,
        batch: dict[str, torch.Tensor],
        aux: dict[Modality, AuxiliaryFeatures],
        return_attention: bool = False,
    ) -> RoundOutput:
        """The anchored pass of ``anchor`` with its LoRA on and ``H_a`` appended."""
        peft_model = self._peft[anchor]
        dtype = self.round_dtype(anchor)
        # The Q-former runs in the round's dtype (bfloat16 / float16 after ``model.to(dtype)``),
        # but backbones may hand their phase-1 tokens back in float32: cast at this boundary.
        aux = {
            m: AuxiliaryFeatures(
                f.tokens.to(self.device, dtype) if f.tokens.is_floating_point() else f.tokens.to(self.device),
                f.mask.to(self.device),
                f.present.to(self.device),
                None if f.readout is None else f.readout.to(self.device, dtype),
            )
            for m, f in aux.items() if m != anchor
        }
        return self.anchored_round(anchor)(peft_model, batch_to(batch, self.device), aux, return_attention)

    def aggregation_parameters(self) -> AggregationParameters:
        """Keyword arguments of :func:`~anchorad_core.fusion.aggregation.aggregate` for this model's anchors."""
        anchors = self.anchors()
        return {"round_weights": [self.round_weights.get(m, 1.0) for m in anchors],
                "temperatures": [self.round_temperatures.get(m, 1.0) for m in anchors],
                "stacker": None if self.stacker is None else self.stacker.for_anchors(anchors)}

    def aggregate(self, probabilities: torch.Tensor, present: torch.Tensor, rule: str | None = None) -> torch.Tensor:
        """Aggregate ``(R, B, K)`` round probabilities over the model's anchors."""
        return aggregate(probabilities, present, rule or self.aggregation_rule, **self.aggregation_parameters())

    def aggregation_weights(self, probabilities: torch.Tensor, present: torch.Tensor,
                            rule: str | None = None) -> torch.Tensor:
        """Normalised weight ``(R, B)`` of each round in the aggregate."""
        weights = round_confidences(probabilities, present, rule or self.aggregation_rule,
                                    **self.aggregation_parameters())
        return weights / weights.sum(dim=0, keepdim=True).clamp_min(1e-12)

    def round_dtype(self, anchor: Modality) -> torch.dtype:
        """Floating dtype of ``anchor``'s round (its Q-former weights)."""
        for p in self.anchored_round(anchor).parameters():
            if p.is_floating_point():
                return p.dtype
        return self.dtype

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of the model's parameters (``float32`` unless cast)."""
        for p in self.parameters():
            if p.is_floating_point():
                return p.dtype
        return torch.float32

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        return next(self.parameters()).device
