"""The modality-aware Q-former that turns auxiliary-modality features into ``H_a``.

For an anchor ``m̂`` and each auxiliary modality ``m``: ``Z_m = Linear_m(F_m(X_m))`` projects
the frozen phase-1 tokens to the Q-former's own width ``D``; ``N_q`` learnable uni-modal
queries go through ``depth`` layers of (query self-attention, cross-attention to ``Z_m``,
feed-forward), as BLIP-2's Q-former does, and give ``X̂_m``. Then ``N_q`` cross-modal
queries do the same over ``Z_a = concat(X̂_m)`` and give ``X̂_c``. The output
``H_a = concat(X̂_m for m in M', X̂_c)`` is projected once to the anchor's token width
``C``, with a mask that hides the blocks of missing modalities (and the cross block of a
subject with no auxiliary modality at all).

The Q-former's width is its own (256 by default, as is usual for BLIP-2-style bridges): at
LLaMA-2-13B's ``C = 5120`` an anchor-width Q-former would train about a billion parameters
per round; at ``D = 256`` the whole round's Q-former is a few million (``anchorad
backbones --plan``).

Missing-modality rule: a missing auxiliary modality's block is *masked* (its queries never
attend to its placeholder tokens, the cross-modal queries never attend to its block, and the
anchor never attends to its block) — never zero-filled tokens that attention can still see.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch import nn

from ..modality import Modality


@dataclass
class AuxiliaryFeatures:
    """Frozen phase-1 token features of one auxiliary modality for a batch.

    Attributes
    ----------
    tokens
        ``(B, N, C_m)``; rows of subjects lacking the modality may hold anything.
    mask
        ``(B, N)`` bool, ``True`` for real tokens.
    present
        ``(B,)`` bool, ``True`` where the subject has this modality.
    readout
        ``(B, P_m)`` the backbone's readout (its pooled feature), for a Q-former that reads it
        as one more key (``readout_widths``); ``None`` otherwise.
    """

    tokens: torch.Tensor
    mask: torch.Tensor
    present: torch.Tensor
    readout: "torch.Tensor | None" = None

    @classmethod
    def of(cls, output: "Any") -> "AuxiliaryFeatures":
        """The features of a batch whose subjects all have the modality, from a backbone's output."""
        present = torch.ones(output.tokens.shape[0], dtype=torch.bool, device=output.tokens.device)
        return cls(output.tokens, output.mask, present, output.pooled)

    def to(self, device: "torch.device | str") -> "AuxiliaryFeatures":
        """Copy to ``device``."""
        readout = None if self.readout is None else self.readout.to(device)
        return AuxiliaryFeatures(self.tokens.to(device), self.mask.to(device), self.present.to(device), readout)


@dataclass
class QFormerOutput:
    """``H_a`` and what explanations need.

    Attributes
    ----------
    tokens
        ``(B, (|M'| + 1) * N_q, C)`` the auxiliary blocks in canonical order, then the cross block.
    mask
        ``(B, (|M'| + 1) * N_q)`` bool, ``False`` for blocks of missing modalities.
    block_names
        One name per block: the auxiliary modality values, then ``"cross"``.
    attention
        When requested: ``{"smri": (B, heads, N_q, N_smri), ..., "cross": (B, heads, N_q, |M'| N_q)}``
        cross-attention weights of the last layer of each block (softmax over keys, so each
        query row sums to 1 over the valid keys). With readout keys, a block's weights are over
        its tokens given that the query attends to a token (renormalised without the readout).
    readout_attention
        With readout keys: ``{"smri": (B, heads, N_q), ...}`` the share of each query's
        attention that went to the modality's readout key.
    """

    tokens: torch.Tensor
    mask: torch.Tensor
    block_names: list[str]
    attention: dict[str, torch.Tensor] = field(default_factory=dict)
    readout_attention: dict[str, torch.Tensor] = field(default_factory=dict)


class QFormerLayer(nn.Module):
    """Pre-norm query self-attention, cross-attention of the queries over keys, feed-forward.

    Parameters
    ----------
    width
        Width of queries and keys.
    num_heads
        Attention heads (``width`` must be divisible by it).
    mlp_ratio
        Hidden width of the feed-forward layer relative to ``width``.
    dropout
        Dropout on attention weights and feed-forward output.
    """

    def __init__(self, width: int, num_heads: int, mlp_ratio: float = 2.0, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm_self = nn.LayerNorm(width)
        self.self_attention = nn.MultiheadAttention(width, num_heads, dropout=dropout, batch_first=True)
        self.norm_query = nn.LayerNorm(width)
        self.norm_key = nn.LayerNorm(width)
        self.attention = nn.MultiheadAttention(width, num_heads, dropout=dropout, batch_first=True)
        self.norm_ffn = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.ffn = nn.Sequential(
            nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, width)
        )

    def forward(
        self, queries: torch.Tensor, keys: torch.Tensor, key_mask: torch.Tensor, need_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Update ``queries`` ``(B, Q, D)`` from ``keys`` ``(B, N, D)`` where ``key_mask`` is ``True``.

        Rows with no valid key attend to all keys instead (to stay finite); the caller masks
        their output. Returns the updated queries and, if asked, the cross-attention weights
        per head ``(B, H, Q, N)``.
        """
        q = self.norm_self(queries)
        queries = queries + self.self_attention(q, q, q, need_weights=False)[0]
        empty = ~key_mask.any(dim=1)
        padding = ~key_mask
        if empty.any():
            padding = padding.clone()
            padding[empty] = False
        k = self.norm_key(keys)
        attended, weights = self.attention(
            self.norm_query(queries), k, k, key_padding_mask=padding,
            need_weights=need_weights, average_attn_weights=False,
        )
        queries = queries + attended
        queries = queries + self.ffn(self.norm_ffn(queries))
        return queries, weights


class ModalityAwareQFormer(nn.Module):
    """Uni-modal queries per auxiliary modality plus cross-modal queries over their outputs.

    Parameters
    ----------
    aux_widths
        Width of the phase-1 tokens of each auxiliary modality (the modalities ``M'``).
    out_width
        The anchor's token width ``C`` (``H_a`` is projected to it).
    width
        The Q-former's own width ``D``.
    num_queries
        ``N_q`` queries per block; ``0`` gives an empty ``H_a`` (the round is then the anchor
        alone and aggregating rounds is late fusion).
    num_heads, depth, mlp_ratio, dropout
        Shape of each block's layer stack.
    readout_widths
        Width of each auxiliary modality's readout (pooled feature). When given, the readout,
        projected to ``D``, is one more key of the modality's block, before its tokens: a token
        mean cannot say what a second-order readout (network connectivity) says, and the
        queries could otherwise only reach it through single tokens.
    """

    def __init__(
        self,
        aux_widths: dict[Modality, int],
        out_width: int,
        num_queries: int = 16,
        num_heads: int = 4,
        depth: int = 1,
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
        width: int = 256,
        readout_widths: "dict[Modality, int] | None" = None,
    ) -> None:
        super().__init__()
        if num_queries < 0:
            raise ValueError("num_queries must be >= 0")
        heads = _compatible_heads(width, num_heads)
        self.aux_modalities: list[Modality] = [Modality.parse(m) for m in aux_widths]
        self.width = width
        self.out_width = out_width
        self.num_queries = num_queries
        # torch's ModuleDict / ParameterDict keys must be strings: keyed by the modality's value.
        self.input_projections = nn.ModuleDict(
            {m.value: nn.Linear(aux_widths[m], width) for m in self.aux_modalities}
        )
        readout_widths = {Modality.parse(m): w for m, w in (readout_widths or {}).items()}
        self.readout_projections = nn.ModuleDict(
            {m.value: nn.Linear(readout_widths[m], width) for m in self.aux_modalities if m in readout_widths}
        )
        self.unimodal_queries = nn.ParameterDict(
            {m.value: nn.Parameter(torch.randn(num_queries, width) * 0.02) for m in self.aux_modalities}
        )
        self.unimodal_blocks = nn.ModuleDict(
            {
                m.value: nn.ModuleList([QFormerLayer(width, heads, mlp_ratio, dropout) for _ in range(depth)])
                for m in self.aux_modalities
            }
        )
        self.cross_queries = nn.Parameter(torch.randn(num_queries, width) * 0.02)
        self.cross_blocks = nn.ModuleList([QFormerLayer(width, heads, mlp_ratio, dropout) for _ in range(depth)])
        # One learned embedding per block so that the cross-modal queries and the anchor know
        # which modality a token summarises ("modality-aware").
        self.block_embedding = nn.Parameter(torch.zeros(len(self.aux_modalities) + 1, width))
        self.output_norm = nn.LayerNorm(width)
        self.output_projection = nn.Linear(width, out_width)

    @property
    def num_tokens(self) -> int:
        """Length of ``H_a``."""
        return (len(self.aux_modalities) + 1) * self.num_queries

    def forward(
        self, aux: dict[Modality, AuxiliaryFeatures], batch_size: int, return_attention: bool = False
    ) -> QFormerOutput:
        """Build ``H_a`` from the auxiliary features present in ``aux``.

        Modalities of ``M'`` absent from ``aux`` count as missing for every subject.
        """
        device = self.cross_queries.device
        dtype = self.cross_queries.dtype
        names = [m.value for m in self.aux_modalities] + ["cross"]
        if self.num_queries == 0:
            empty = torch.zeros(batch_size, 0, self.out_width, device=device, dtype=dtype)
            return QFormerOutput(empty, torch.zeros(batch_size, 0, dtype=torch.bool, device=device), names)

        blocks, block_masks, attention, readout_attention = [], [], {}, {}
        for index, modality in enumerate(self.aux_modalities):
            queries = self.unimodal_queries[modality.value].unsqueeze(0).expand(batch_size, -1, -1)
            features = aux.get(modality)
            if features is None:
                present = torch.zeros(batch_size, dtype=torch.bool, device=device)
                block = queries
            else:
                present = features.present.to(device) & features.mask.any(dim=1).to(device)
                keys = self.input_projections[modality.value](features.tokens.to(device=device, dtype=dtype))
                key_mask = features.mask.to(device)
                with_readout = modality.value in self.readout_projections
                if with_readout:
                    if features.readout is None:
                        raise ValueError(f"this Q-former reads the {modality.value} readout; none was given")
                    readout = self.readout_projections[modality.value](features.readout.to(device=device, dtype=dtype))
                    keys = torch.cat([readout.unsqueeze(1), keys], dim=1)
                    key_mask = torch.cat([present.unsqueeze(1), key_mask], dim=1)
                block = queries
                for layer in cast(nn.ModuleList, self.unimodal_blocks[modality.value]):
                    block, weights = layer(block, keys, key_mask, return_attention)
                if return_attention and with_readout:
                    share = weights[..., 0]
                    readout_attention[modality.value] = share
                    weights = weights[..., 1:] / (1.0 - share).clamp_min(1e-12).unsqueeze(-1)
                if return_attention:
                    attention[modality.value] = weights
            blocks.append(block + self.block_embedding[index])
            block_masks.append(present.unsqueeze(1).expand(-1, self.num_queries))

        aux_tokens = torch.cat(blocks, dim=1)
        aux_mask = torch.cat(block_masks, dim=1)
        cross = self.cross_queries.unsqueeze(0).expand(batch_size, -1, -1)
        for layer in self.cross_blocks:
            cross, weights = layer(cross, aux_tokens, aux_mask, return_attention)
        if return_attention:
            attention["cross"] = weights
        cross = cross + self.block_embedding[-1]
        cross_present = aux_mask.any(dim=1, keepdim=True).expand(-1, self.num_queries)

        tokens = self.output_projection(self.output_norm(torch.cat([aux_tokens, cross], dim=1)))
        mask = torch.cat([aux_mask, cross_present], dim=1)
        # Zero the masked tokens as well, so that nothing downstream can depend on them even if
        # a backbone ignored the mask (it must not; this is a second guard).
        tokens = tokens * mask.unsqueeze(-1).to(tokens.dtype)
        return QFormerOutput(tokens, mask, names, attention, readout_attention)


def _compatible_heads(width: int, wanted: int) -> int:
    """Largest head count ``<= wanted`` that divides ``width``."""
    for heads in range(max(1, wanted), 0, -1):
        if width % heads == 0:
            return heads
    return 1
