"""Layers shared by the native backbone families (sMRI UniFormer, fMRI Brain-JEPA).

Stochastic depth, the token MLP and masked multi-head self-attention with the parameter
names of both original codes (``fc1``/``fc2``, ``qkv``/``proj``), so the published state
dicts of either family load into them unchanged. Attention runs through
:func:`anchorad_core.fusion.gated_injection.attend`, which adds the zero-initialised gate for
appended tokens inside an anchored pass and is plain scaled dot-product attention otherwise.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from ..fusion.gated_injection import attend

__all__ = ["DropPath", "MaskedSelfAttention", "TokenMlp"]


class DropPath(nn.Module):
    """Stochastic depth per sample (identity in eval or with ``drop_prob == 0``)."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        return x.div(keep) * torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(keep)


class TokenMlp(nn.Module):
    """Linear → GELU → Linear on tokens."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class MaskedSelfAttention(nn.Module):
    """Multi-head self-attention (``qkv`` and ``proj`` Linear) with an optional key mask.

    Parameters
    ----------
    key_mask (forward)
        ``(B, N)`` bool, ``True`` where a token may be attended to; ``None`` = all.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, attn_drop: float, proj_drop: float) -> None:
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = float(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, key_mask: "torch.Tensor | None" = None) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        mask = None if key_mask is None else key_mask[:, None, None, :]
        x = attend(q, k, v, mask, self.scale, self.attn_drop if self.training else 0.0)
        x = x.transpose(1, 2).reshape(b, n, c)
        return self.proj_drop(self.proj(x))
