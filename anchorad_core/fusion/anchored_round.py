"""One anchored round: a LoRA-adapted frozen anchor that sees ``H_a`` among its input tokens."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
from torch import nn

from ..backbones.base import ModalityBackbone
from ..modality import Modality
from .gated_injection import gated_injection, new_gates
from .qformer import AuxiliaryFeatures, ModalityAwareQFormer, QFormerOutput


@dataclass
class RoundOutput:
    """Logits of an anchored pass and the pieces explanations need."""

    logits: torch.Tensor
    qformer: QFormerOutput
    pooled: torch.Tensor
    attention: dict[str, torch.Tensor] = field(default_factory=dict)


class AnchoredRound(nn.Module):
    """The trainable part of one anchor round: the Q-former, the injection gates, the head.

    The anchor backbone itself is passed to :meth:`forward` (it is shared with the model and
    carries its own LoRA adapter), so the round's state dict is only what phase 2 learns
    besides LoRA.

    Parameters
    ----------
    anchor
        The anchor modality ``m̂``.
    aux_widths
        Phase-1 token widths of the auxiliary modalities ``M'``.
    anchor_token_width
        Width at which the anchor accepts appended tokens.
    anchor_width
        Width of the anchor's pooled feature.
    num_classes
        Number of diagnosis labels (2 for the binary tasks).
    num_queries, num_heads, depth
        Q-former shape.
    qformer_width
        The Q-former's own width (``H_a`` is projected from it to ``anchor_token_width``).
    attention_heads
        Heads of each anchor attention layer ``H_a`` passes through (one zero-initialised
        gate per head and layer: :mod:`.gated_injection`); ``None`` injects ungated.
    pool_extra
        Pool the anchor's output over ``H_a`` as well as its own tokens (off by default:
        that would let the head read ``H_a`` directly, output-level fusion in disguise).
    readout_widths
        Readout width of each auxiliary modality when the Q-former reads the readouts as
        keys too (:class:`~.qformer.ModalityAwareQFormer`); ``None``: tokens only.
    """

    def __init__(
        self,
        anchor: Modality,
        aux_widths: dict[Modality, int],
        anchor_token_width: int,
        anchor_width: int,
        num_classes: int = 2,
        num_queries: int = 16,
        num_heads: int = 4,
        depth: int = 1,
        dropout: float = 0.0,
        qformer_width: int = 256,
        attention_heads: "list[int] | None" = None,
        pool_extra: bool = False,
        readout_widths: "dict[Modality, int] | None" = None,
    ) -> None:
        super().__init__()
        self.anchor = anchor
        self.qformer = ModalityAwareQFormer(
            aux_widths, anchor_token_width, num_queries=num_queries, num_heads=num_heads,
            depth=depth, dropout=dropout, width=qformer_width, readout_widths=readout_widths,
        )
        self.gates = new_gates(attention_heads) if attention_heads is not None else None
        self.pool_extra = bool(pool_extra)
        self.head = nn.Linear(anchor_width, num_classes)

    def forward(
        self,
        backbone: "ModalityBackbone | nn.Module",
        anchor_batch: dict[str, torch.Tensor],
        aux: dict[Modality, AuxiliaryFeatures],
        return_attention: bool = False,
    ) -> RoundOutput:
        """Anchored prediction: ``head(pool(anchor(X_anchor ⊕ H_a)))``."""
        batch_size = _batch_size(anchor_batch)
        h_a = self.qformer(aux, batch_size, return_attention=return_attention)
        if h_a.tokens.shape[1] == 0:
            out = backbone(anchor_batch)
            pooled = out.pooled
        else:
            gated = gated_injection(self.gates) if self.gates is not None else contextlib.nullcontext()
            with gated:
                out = backbone(anchor_batch, extra_tokens=h_a.tokens, extra_mask=h_a.mask)
            pooled = out.pooled_with_extra if self.pool_extra and out.pooled_with_extra is not None else out.pooled
        # some backbones return float32 features whatever their weights' dtype
        logits = self.head(pooled.to(self.head.weight.dtype))
        return RoundOutput(logits, h_a, pooled, h_a.attention)


def _batch_size(batch: dict[str, torch.Tensor]) -> int:
    for value in batch.values():
        if isinstance(value, torch.Tensor):
            return int(value.shape[0])
    raise ValueError("empty anchor batch")
