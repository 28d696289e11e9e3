"""BrainMVP's 3-D UniFormer as an sMRI backbone (family ``"uniformer3d"``).

A faithful re-implementation of ``UniFormer`` in ``Downstream/model/uniformer.py`` of
shaohao011/BrainMVP (commit a466bb2); parameter names equal the original state-dict keys
(``patch_embed1.proj.weight``, ``blocks3.0.attn.qkv.weight``, ``norm.running_var``...), so a
bare state dict loads with ``strict=True``. With no appended tokens the output equals the
original code (checked against recorded outputs in ``tests/fixtures/reference-models``).

Architecture (input ``(B, C, X, Y, Z)``, each spatial size divisible by 16):

* ``x.permute(0, 1, 4, 2, 3)``: the volume is processed as ``(B, C, Z, X, Y)``, which the
  original code calls ``(D, H, W)``. All stage outputs and the token order use it.
* Four patch embeddings ``patch_embed1..4``: Conv3d(kernel 2, stride 2) + channel LayerNorm
  (eps 1e-5). Total stride 16.
* Stages 1-2 (``blocks1``, ``blocks2``): convolutional blocks (depthwise 3³ position conv,
  BatchNorm, 1³ conv → depthwise 5³ conv named ``attn`` → 1³ conv, conv MLP).
* Stages 3-4 (``blocks3``, ``blocks4``): depthwise 3³ position conv on the 3-D map, then
  pre-norm multi-head self-attention and MLP blocks (LayerNorm eps 1e-6) on the flattened
  tokens.
* Final BatchNorm3d ``norm`` on the stage-4 map only.

Appended tokens (the anchored round's ``H_a``, width ``embed_dim[2]``) join the attention
stages: in every stage-3 block they are concatenated after the flattened map (so the 3-D
position conv only ever sees the spatial map), then they are carried to stage 4 by the
trainable ``extra_bridge`` Linear(``embed_dim[2]`` → ``embed_dim[3]``), take part in the
stage-4 attention and receive the per-channel affine of the final BatchNorm in its eval form
(running statistics). Masked appended tokens are never attended to and never pooled.

Readout (``readout``): ``"mean"`` pools the stage-4 tokens (the original downstream head);
``"pyramid"`` appends to that mean the stage-1 and stage-2 maps average-pooled to a 2³ grid
(``8 x (embed_dim[0] + embed_dim[1])`` values): a spatial-pyramid readout that keeps *where*
the fine-scale intensity and texture changes are (atrophy is regional; a global mean of the
coarse stage-4 tokens washes it out). Appended tokens reach only the stage-4 part.

Token order: stage-4 token ``i`` of an input ``(X, Y, Z)`` sits at
``(z, x, y) = np.unravel_index(i, token_grid((X, Y, Z)))``, i.e. the grid is
``(Z/16, X/16, Y/16)``; :meth:`UniFormer3DBackbone.tokens_to_input_grid` turns per-token
values back into the input's axis order ``(X/16, Y/16, Z/16)``.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError, InputDataError
from ...fusion.gated_injection import extra_keys
from ...modality import Modality
from ...resources import resolve_path
from ..base import BackboneOutput, ModalityBackbone, extra_token_mask, stack_arrays
from ..layers import DropPath, MaskedSelfAttention, TokenMlp
from ..registry import register_backbone
from .config import PYRAMID_CELLS, PYRAMID_GRID, READOUTS, TOTAL_STRIDE, InChannelsRule
from .conversion import load_brainmvp_checkpoint


class UniFormerStages(NamedTuple):
    """All stage outputs, as the original ``UniFormer.forward`` returns them.

    ``x0`` is the permuted input ``(B, C, D, H, W)``; ``x1``-``x3`` are the unnormalised
    stage outputs; ``x4`` is the stage-4 output after the final BatchNorm ``norm``.
    Unpacks like the original: ``x0, x1, x2, x3, x4 = model.forward_stages(image)``.
    """

    x0: torch.Tensor
    x1: torch.Tensor
    x2: torch.Tensor
    x3: torch.Tensor
    x4: torch.Tensor


# --------------------------------------------------------------------------- layers


class PatchEmbed3d(nn.Module):
    """Conv3d(kernel 2, stride 2) then LayerNorm (eps 1e-5) over channels at every voxel."""

    def __init__(self, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=2, stride=2)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        b, c, d, h, w = x.shape
        x = self.norm(x.flatten(2).transpose(1, 2))
        # The permuted view is already in channels-last order: keep it that way. Same values
        # as the original ``.contiguous()``, but the depthwise 3-D convolutions that follow
        # run several times faster on CPU in this layout (mostly their backward pass).
        return x.reshape(b, d, h, w, c).permute(0, 4, 1, 2, 3).contiguous(memory_format=torch.channels_last_3d)


class ConvMlp(nn.Module):
    """1³ conv → GELU → 1³ conv (stages 1-2)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Conv3d(dim, hidden, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv3d(hidden, dim, 1)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class ConvBlock(nn.Module):
    """UniFormer's convolutional block (``CBlock``) of stages 1-2.

    ``attn`` is a depthwise 5³ convolution (local aggregation), not an attention layer.
    """

    def __init__(self, dim: int, mlp_ratio: float, drop: float, drop_path: float) -> None:
        super().__init__()
        self.pos_embed = nn.Conv3d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.BatchNorm3d(dim)
        self.conv1 = nn.Conv3d(dim, dim, 1)
        self.conv2 = nn.Conv3d(dim, dim, 1)
        self.attn = nn.Conv3d(dim, dim, 5, padding=2, groups=dim)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.BatchNorm3d(dim)
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embed(x)
        x = x + self.drop_path(self.conv2(self.attn(self.conv1(self.norm1(x)))))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class AttentionBlock(nn.Module):
    """UniFormer's self-attention block (``SABlock``) of stages 3-4, with appended tokens."""

    def __init__(
        self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool,
        drop: float, attn_drop: float, drop_path: float,
    ) -> None:
        super().__init__()
        self.pos_embed = nn.Conv3d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MaskedSelfAttention(dim, num_heads, qkv_bias, attn_drop, drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = TokenMlp(dim, int(dim * mlp_ratio), drop)

    def forward(
        self,
        x: torch.Tensor,
        extra: "torch.Tensor | None" = None,
        key_mask: "torch.Tensor | None" = None,
    ) -> "tuple[torch.Tensor, torch.Tensor | None]":
        """``x`` ``(B, C, D, H, W)``; ``extra`` ``(B, E, C)``; ``key_mask`` ``(B, D·H·W + E)``."""
        x = x + self.pos_embed(x)
        b, c, d, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        n = tokens.shape[1]
        if extra is not None:
            tokens = torch.cat([tokens, extra], dim=1)
        tokens = tokens + self.drop_path(self.attn(self.norm1(tokens), key_mask))
        tokens = tokens + self.drop_path(self.mlp(self.norm2(tokens)))
        spatial = tokens[:, :n].transpose(1, 2).reshape(b, c, d, h, w)
        return spatial, (tokens[:, n:] if extra is not None else None)


# --------------------------------------------------------------------------- backbone


@register_backbone
class UniFormer3DBackbone(ModalityBackbone):
    """BrainMVP 3-D UniFormer encoder for T1 volumes.

    Parameters
    ----------
    depth
        Blocks per stage (4 values).
    embed_dim
        Width per stage (4 values); stage ``i`` has ``embed_dim[i] // head_dim`` heads.
    head_dim
        Width of one attention head.
    mlp_ratio
        Hidden width of the MLPs relative to the stage width.
    qkv_bias
        Bias on the ``qkv`` projections.
    in_chans
        Input channels (1 for a T1 volume; BrainMVP pretraining used 1).
    img_size
        Edge of the cubic input that :meth:`collate` accepts; divisible by 16.
    drop_rate, attn_drop_rate, drop_path_rate
        Dropout, attention dropout and stochastic-depth rate (0 in the reference).
    checkpoint
        Optional path of a BrainMVP checkpoint loaded by :meth:`from_config`.
    in_channels_rule
        Rule for the first conv when the checkpoint's input channels differ (see
        :func:`load_brainmvp_checkpoint`).
    readout
        ``"mean"`` (stage-4 token mean) or ``"pyramid"`` (that mean plus the 2³-pooled stage-1
        and stage-2 maps); see the module docstring.
    """

    modality = Modality.SMRI
    family = "uniformer3d"
    #: Only the Linear projections of the attention stages (stage 1-2 ``attn`` is a Conv3d).
    lora_target_modules = r"(?:.*\.)?blocks[34]\.\d+\.attn\.(?:qkv|proj)"
    phase2_trainable_modules = ["extra_bridge"]

    def __init__(
        self,
        depth: Sequence[int] = (3, 4, 8, 3),
        embed_dim: Sequence[int] = (64, 128, 320, 512),
        head_dim: int = 64,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        in_chans: int = 1,
        img_size: int = 96,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        checkpoint: "str | None" = None,
        in_channels_rule: InChannelsRule = "skip",
        readout: str = "mean",
    ) -> None:
        super().__init__()
        depth, embed_dim = [int(v) for v in depth], [int(v) for v in embed_dim]
        if len(depth) != 4 or len(embed_dim) != 4:
            raise ConfigError(f"depth and embed_dim need 4 values each, got {depth} and {embed_dim}")
        if int(img_size) <= 0 or int(img_size) % TOTAL_STRIDE:
            raise ConfigError(f"img_size must be a positive multiple of 16, got {img_size}")
        for dim in embed_dim[2:]:
            if dim % int(head_dim):
                raise ConfigError(f"stage width {dim} is not divisible by head_dim {head_dim}")
        if in_channels_rule not in ("skip", "repeat", "error"):
            raise ConfigError(f"in_channels_rule must be 'skip', 'repeat' or 'error', got {in_channels_rule!r}")
        if readout not in READOUTS:
            raise ConfigError(f"uniformer3d readout must be one of {READOUTS}, got {readout!r}")
        self.readout = readout
        self.depth, self.embed_dim = depth, embed_dim
        self.head_dim, self.mlp_ratio, self.qkv_bias = int(head_dim), float(mlp_ratio), bool(qkv_bias)
        self.in_chans, self.img_size = int(in_chans), int(img_size)
        self.drop_rate, self.attn_drop_rate, self.drop_path_rate = (
            float(drop_rate), float(attn_drop_rate), float(drop_path_rate))
        self.checkpoint = checkpoint
        self.in_channels_rule: InChannelsRule = in_channels_rule

        self.patch_embed1 = PatchEmbed3d(self.in_chans, embed_dim[0])
        self.patch_embed2 = PatchEmbed3d(embed_dim[0], embed_dim[1])
        self.patch_embed3 = PatchEmbed3d(embed_dim[1], embed_dim[2])
        self.patch_embed4 = PatchEmbed3d(embed_dim[2], embed_dim[3])
        self.pos_drop = nn.Dropout(self.drop_rate)
        dpr = torch.linspace(0, self.drop_path_rate, sum(depth)).tolist()
        start = np.cumsum([0] + depth).tolist()
        self.blocks1 = nn.ModuleList(
            ConvBlock(embed_dim[0], self.mlp_ratio, self.drop_rate, dpr[start[0] + i]) for i in range(depth[0]))
        self.blocks2 = nn.ModuleList(
            ConvBlock(embed_dim[1], self.mlp_ratio, self.drop_rate, dpr[start[1] + i]) for i in range(depth[1]))
        self.blocks3 = nn.ModuleList(
            AttentionBlock(embed_dim[2], embed_dim[2] // self.head_dim, self.mlp_ratio, self.qkv_bias,
                           self.drop_rate, self.attn_drop_rate, dpr[start[2] + i]) for i in range(depth[2]))
        self.blocks4 = nn.ModuleList(
            AttentionBlock(embed_dim[3], embed_dim[3] // self.head_dim, self.mlp_ratio, self.qkv_bias,
                           self.drop_rate, self.attn_drop_rate, dpr[start[3] + i]) for i in range(depth[3]))
        self.norm = nn.BatchNorm3d(embed_dim[3])
        #: Carries appended tokens from stage 3 to stage 4 (new; trains in phase 2).
        self.extra_bridge = nn.Linear(embed_dim[2], embed_dim[3])
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # The original initialiser (Kaiming fan-out for convs, zero conv biases).
        if isinstance(module, nn.Conv3d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    # ------------------------------------------------------------------ interface

    @property
    def width(self) -> int:
        return self.embed_dim[3]

    @property
    def pooled_width(self) -> int:
        if self.readout == "pyramid":
            return self.embed_dim[3] + PYRAMID_CELLS * (self.embed_dim[0] + self.embed_dim[1])
        return self.embed_dim[3]

    @property
    def pooled_blocks(self) -> tuple[tuple[str, int], ...]:
        """The stage-4 token mean, then (pyramid readout) the stage-1 and stage-2 grids."""
        mean = ("stage-4 token mean", self.embed_dim[3])
        if self.readout == "mean":
            return (mean,)
        return (mean, ("stage-1 grid", PYRAMID_CELLS * self.embed_dim[0]),
                ("stage-2 grid", PYRAMID_CELLS * self.embed_dim[1]))

    @property
    def attention_heads(self) -> list[int]:
        return [self.embed_dim[2] // self.head_dim] * self.depth[2] + [self.embed_dim[3] // self.head_dim] * self.depth[3]

    @property
    def extra_token_width(self) -> int:
        return self.embed_dim[2]

    def token_grid(self, input_shape: "Sequence[int] | None" = None) -> tuple[int, int, int]:
        """Stage-4 token grid ``(d, h, w)`` for an input of spatial shape ``(X, Y, Z)``.

        Because of the original axis permutation, ``(d, h, w) = (Z/16, X/16, Y/16)`` and token
        ``i`` (C order) sits at ``np.unravel_index(i, (d, h, w))``. Defaults to the
        ``img_size`` cube.
        """
        shape = (self.img_size,) * 3 if input_shape is None else tuple(int(s) for s in input_shape)[-3:]
        if any(s % TOTAL_STRIDE for s in shape):
            raise InputDataError(f"every spatial size must be divisible by 16, got {shape}")
        x, y, z = (s // TOTAL_STRIDE for s in shape)
        return z, x, y

    def tokens_to_input_grid(self, values: torch.Tensor, input_shape: "Sequence[int] | None" = None) -> torch.Tensor:
        """Reshape per-token values ``(..., N4)`` to the input's axis order ``(..., X/16, Y/16, Z/16)``."""
        d, h, w = self.token_grid(input_shape)
        grid = values.reshape(*values.shape[:-1], d, h, w)
        return grid.movedim(-3, -1)

    def collate(self, samples: Sequence[Any]) -> dict[str, torch.Tensor]:
        """Stack ``(X, Y, Z)`` volumes (``img_size`` cubes) into ``{"image": (B, 1, X, Y, Z)}``."""
        image = stack_arrays(samples, (self.img_size,) * 3, "sMRI volume", "preprocess to an img_size cube")[:, None]
        if self.in_chans != 1:
            image = image.expand(-1, self.in_chans, -1, -1, -1).contiguous()
        return {"image": image}

    def forward(
        self,
        batch: dict[str, torch.Tensor],
        extra_tokens: "torch.Tensor | None" = None,
        extra_mask: "torch.Tensor | None" = None,
    ) -> BackboneOutput:
        """Encode ``batch["image"]`` ``(B, C, X, Y, Z)``; see the module docstring for extras."""
        image = batch["image"]
        stages, extra = self._encode(image, extra_tokens, extra_mask)
        tokens = stages.x4.flatten(2).transpose(1, 2)
        b, n, _ = tokens.shape
        mask = torch.ones(b, n, dtype=torch.bool, device=tokens.device)
        pyramid = self._pyramid(stages)
        pooled = torch.cat([tokens.mean(dim=1).float(), *pyramid], dim=1)
        if extra is None:
            return BackboneOutput(tokens=tokens, mask=mask, pooled=pooled, extra=None)
        valid = extra_token_mask(extra_mask, extra.shape[:2], extra.device)
        with_extra = torch.cat([_pool_with_extras(tokens, extra, valid).float(), *pyramid], dim=1)
        return BackboneOutput(tokens=tokens, mask=mask, pooled=pooled, extra=extra, pooled_with_extra=with_extra)

    def _pyramid(self, stages: UniFormerStages) -> list[torch.Tensor]:
        """The ``"pyramid"`` readout's part besides the token mean: stages 1-2 pooled to 2³ (none for ``"mean"``)."""
        if self.readout == "mean":
            return []
        # pooled and returned in float32: a half-precision average over 4096 voxels per cell loses the signal
        return [F.adaptive_avg_pool3d(x.float(), PYRAMID_GRID).flatten(1) for x in (stages.x1, stages.x2)]

    def forward_stages(self, image: torch.Tensor) -> UniFormerStages:
        """The original ``UniFormer.forward``: ``(x0, x1, x2, x3, x4)`` for ``(B, C, X, Y, Z)``.

        (The original calls the input axes ``(B, C, H, W, D)``.)
        """
        return self._encode(image)[0]

    def _encode(
        self,
        image: torch.Tensor,
        extra_tokens: "torch.Tensor | None" = None,
        extra_mask: "torch.Tensor | None" = None,
    ) -> "tuple[UniFormerStages, torch.Tensor | None]":
        """Stage outputs plus the appended tokens after stage 4 and the final norm.

        ``extra_tokens`` ``(B, E, embed_dim[2])`` join the attention stages; ``extra_mask``
        ``(B, E)`` bool is ``True`` for real tokens (``None``: all real). Masked appended tokens
        come back as zeros.
        """
        if image.ndim != 5:
            raise InputDataError(f"expected a (B, C, X, Y, Z) image tensor, got shape {tuple(image.shape)}")
        x0 = image.permute(0, 1, 4, 2, 3)
        extra, valid = self._prepare_extras(extra_tokens, extra_mask, x0)
        # with every appended token masked there is nothing to attend to: run without them
        # (_prepare_extras returns both or neither)
        extra_in = extra if extra is not None and valid is not None and bool(valid.any()) else None

        x1 = self.pos_drop(self.patch_embed1(x0))
        for blk in self.blocks1:
            x1 = blk(x1)
        x2 = self.patch_embed2(x1)
        for blk in self.blocks2:
            x2 = blk(x2)

        x3 = self.patch_embed3(x2)
        key_mask = _key_mask(x3, extra_in, valid)
        with extra_keys(_extra_positions(x3, extra_in)):
            for blk in self.blocks3:
                x3, extra_in = blk(x3, extra_in, key_mask)

        x4 = self.patch_embed4(x3)
        if extra_in is not None:
            extra_in = self.extra_bridge(extra_in)
        key_mask = _key_mask(x4, extra_in, valid)
        with extra_keys(_extra_positions(x4, extra_in)):
            for blk in self.blocks4:
                x4, extra_in = blk(x4, extra_in, key_mask)
        x4 = self.norm(x4)

        extra_out = None
        if extra is not None and valid is not None:
            if extra_in is None:
                extra_out = x4.new_zeros(extra.shape[0], extra.shape[1], self.width)
            else:
                extra_out = F.batch_norm(
                    extra_in.transpose(1, 2), self.norm.running_mean, self.norm.running_var,
                    self.norm.weight, self.norm.bias, training=False, eps=self.norm.eps,
                ).transpose(1, 2)
                extra_out = extra_out.masked_fill(~valid[..., None], 0.0)
        return UniFormerStages(x0, x1, x2, x3, x4), extra_out

    def _prepare_extras(
        self, extra_tokens: "torch.Tensor | None", extra_mask: "torch.Tensor | None", ref: torch.Tensor
    ) -> "tuple[torch.Tensor | None, torch.Tensor | None]":
        if extra_tokens is None:
            return None, None
        expected = (ref.shape[0], self.extra_token_width)
        if extra_tokens.ndim != 3 or (extra_tokens.shape[0], extra_tokens.shape[2]) != expected:
            raise ValueError(
                f"extra_tokens must be (B={expected[0]}, E, {expected[1]}), got {tuple(extra_tokens.shape)}")
        extra = extra_tokens.to(dtype=ref.dtype)
        valid = extra_token_mask(extra_mask, extra.shape[:2], extra.device)
        return extra, valid

    # ------------------------------------------------------------------ config

    @classmethod
    def from_config(
        cls, config: dict[str, Any], base_dir: "Path | None" = None, load_weights: bool = True
    ) -> "UniFormer3DBackbone":
        kwargs = {k: v for k, v in config.items() if k != "family"}
        try:
            model = cls(**kwargs)
        except TypeError as exc:
            raise ConfigError(f"bad uniformer3d config: {exc}") from None
        if load_weights and model.checkpoint:
            load_brainmvp_checkpoint(model, resolve_path(model.checkpoint, base_dir),
                                     in_channels_rule=model.in_channels_rule)
        return model

    def get_config(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "depth": list(self.depth),
            "embed_dim": list(self.embed_dim),
            "head_dim": self.head_dim,
            "mlp_ratio": self.mlp_ratio,
            "qkv_bias": self.qkv_bias,
            "in_chans": self.in_chans,
            "img_size": self.img_size,
            "drop_rate": self.drop_rate,
            "attn_drop_rate": self.attn_drop_rate,
            "drop_path_rate": self.drop_path_rate,
            "checkpoint": self.checkpoint,
            "in_channels_rule": self.in_channels_rule,
            "readout": self.readout,
        }


def _key_mask(x: torch.Tensor, extra: "torch.Tensor | None", valid: "torch.Tensor | None") -> "torch.Tensor | None":
    """``(B, N + E)`` key mask, or ``None`` when every token may be attended to."""
    if extra is None or valid is None or bool(valid.all()):
        return None
    n = math.prod(x.shape[2:])
    spatial = torch.ones(x.shape[0], n, dtype=torch.bool, device=valid.device)
    return torch.cat([spatial, valid], dim=1)


def _extra_positions(spatial: torch.Tensor, extra: "torch.Tensor | None") -> "torch.Tensor | None":
    """``(B, N + E)`` bool: which attention keys are appended tokens (``None`` without them)."""
    if extra is None:
        return None
    b, n = spatial.shape[0], int(np.prod(spatial.shape[2:]))
    flags = torch.zeros(b, n + extra.shape[1], dtype=torch.bool, device=spatial.device)
    flags[:, n:] = True
    return flags


def _pool_with_extras(tokens: torch.Tensor, extra: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean over all own tokens and the valid appended tokens."""
    if not bool(valid.any()):
        return tokens.mean(dim=1)
    weights = valid.to(tokens.dtype)[..., None]
    total = tokens.sum(dim=1) + (extra * weights).sum(dim=1)
    count = tokens.shape[1] + weights.sum(dim=1)
    return total / count
