"""Trainable and frozen parameters of one anchored round, counted on meta-device builds.

The round is the real one: :class:`~anchorad_core.fusion.anchored_round.AnchoredRound` built
under ``torch.device("meta")`` and the anchor's LoRA injected by peft with the round's own
:func:`~anchorad_core.fusion.lora.lora_config`, so the counts are those of training (peft's
``modules_to_save`` copies included), with no weight allocated.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import torch
from peft import get_peft_model

from ..fusion.anchored_round import AnchoredRound
from ..fusion.lora import ADAPTER_NAME, LoraSettings, lora_config
from ..modality import Modality
from .backbone_shape import BackboneShape

#: Trainable parameter groups, in display order.
GROUPS = ("lora", "qformer", "projections", "gates", "head")


@dataclass
class RoundParameters:
    """Parameter counts of one anchored round.

    Attributes
    ----------
    lora
        LoRA A and B matrices of the anchor's attention projections.
    qformer
        Q-former layers, queries, block embeddings and output norm.
    projections
        The Q-former's input (and readout) projections to its width ``D`` and its output
        projection to the anchor's token width, plus the anchor's own trainable bridge modules
        (``phase2_trainable_modules``, e.g. the UniFormer's ``extra_bridge``).
    gates
        The zero-initialised injection gates (one per head and attention layer).
    head
        The round's classification head.
    frozen
        The anchor backbone's frozen parameters.
    """

    lora: int
    qformer: int
    projections: int
    gates: int
    head: int
    frozen: int

    @property
    def trainable(self) -> int:
        """All trainable parameters of the round."""
        return self.lora + self.qformer + self.projections + self.gates + self.head

    def to_dict(self) -> dict[str, int]:
        """JSON form, with ``trainable``."""
        return {**asdict(self), "trainable": self.trainable}


def meta_round(
    anchor: BackboneShape, aux: "dict[Modality, BackboneShape]", num_classes: int, num_queries: int,
    num_heads: int, depth: int, qformer_width: int, gated: bool, readout_keys: bool,
) -> AnchoredRound:
    """The anchored round of ``anchor`` on the meta device (its Q-former reads ``aux``)."""
    with torch.device("meta"):
        return AnchoredRound(
            anchor.modality, {m: s.width for m, s in aux.items()}, anchor.extra_token_width, anchor.pooled_width,
            num_classes=num_classes, num_queries=num_queries, num_heads=num_heads, depth=depth,
            qformer_width=qformer_width, attention_heads=anchor.attention_heads if gated else None,
            readout_widths={m: s.pooled_width for m, s in aux.items()} if readout_keys else None,
        )


def inject_lora(anchor: BackboneShape, settings: LoraSettings) -> None:
    """Inject the round's LoRA into ``anchor.module`` (in place, on the meta device)."""
    config = lora_config(settings, anchor.lora_target_modules, anchor.trainable_modules)
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # peft's notes on custom models
        get_peft_model(anchor.module, config, adapter_name=ADAPTER_NAME)


def count_round_parameters(anchor: BackboneShape, round_: AnchoredRound) -> RoundParameters:
    """Split the trainable parameters of ``round_`` and of the LoRA-injected ``anchor.module``."""
    counts = dict.fromkeys(GROUPS, 0)
    frozen = 0
    for name, p in anchor.module.named_parameters():
        if "lora_" in name:
            counts["lora"] += p.numel()
        elif p.requires_grad:  # a modules_to_save copy
            counts["projections"] += p.numel()
        else:
            frozen += p.numel()
    for name, p in round_.named_parameters():
        if name.startswith("gates."):
            counts["gates"] += p.numel()
        elif name.startswith("head."):
            counts["head"] += p.numel()
        elif name.startswith(("qformer.input_projections.", "qformer.readout_projections.", "qformer.output_projection.")):
            counts["projections"] += p.numel()
        else:
            counts["qformer"] += p.numel()
    return RoundParameters(**{k: int(v) for k, v in counts.items()}, frozen=int(frozen))
