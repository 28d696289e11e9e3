"""Brain-JEPA's ViT over ROI × time as an fMRI backbone (family ``"brainjepa"``).

A faithful re-implementation of ``VisionTransformer`` in ``src/models/vision_transformer.py``
of Eric-LRL/Brain-JEPA (commit b1dfa93, ``add_w='mapping'``) plus the global-pool part of
``downstream_tasks/models_vit.py``. Parameter names equal the original keys
(``patch_embed.proj.weight``, ``pos_embed_proj.emb_h``,
``pos_embed_proj.predictor_pos_embed_proj.weight``, ``blocks.0.attn.qkv.weight``,
``norm.weight``) plus the downstream pooling norm ``fc_norm.*``.

Model (input ``(B, 1, n_rois, n_frames)``):

* ``patch_embed``: Conv2d kernel/stride ``(1, patch_size)`` → ``n_rois × n_time_patches``
  tokens, flattened ROI-major: token ``roi * n_time_patches + t``. No cls token.
* Positional embedding, ``[first half | second half]`` of the channels:

  - first half ``pos_embed_proj.emb_h``: fixed 1-D sin-cos of the time-patch index ``t``;
  - second half: ``Linear(n_gradients → D/2)`` (``pos_embed_proj.predictor_pos_embed_proj``)
    of the ROI's connectivity-gradient row, repeated for the ROI's ``n_time_patches``
    tokens, then min-max scaled to [-1, 1] with one global min and max. (The original
    hard-codes 10 = 160 / 16 time patches; here it is ``n_frames // patch_size``.)

* Pre-norm ViT blocks (LayerNorm eps 1e-6), final LayerNorm ``norm``.
* Pooling as in the fine-tuning code (``global_pool=True``): mean over tokens, then
  ``fc_norm`` = LayerNorm(D, eps 1e-6).
* ``readout="connectivity"`` (new; the demo preset's) appends to that pooled mean the
  ``2 K`` network similarities of :mod:`.connectivity_readout`, computed on the residual
  stream after the last block (before ``norm``) minus the positional embedding, with
  ``K = connectivity_groups`` networks found by k-means on the gradient rows.

Appended tokens (width D) are added after the positional embedding (they carry none), pass
through the blocks and ``norm`` and join the mean pooling; masked ones are never attended to
and never pooled.

ROI order and gradient file
---------------------------
The gradient CSV has one row per ROI, **in the same order as the rows of the time series**.

* ``brainjepa-vit-b`` (the released UK Biobank model, configs/ukb_vitb_ep300.yaml): 450 ROIs =
  Tian Scale III subcortex (50 ROIs, ``Tian_Subcortex_S3_3T``) **followed by** Schaefer-400 in
  its **17-network** order (the UKB loader ``src/datasets/ukbiobank_scale.py`` reads
  ``fMRI.Schaefer17n400p`` and concatenates subcortex first). 160 frames: the loader takes an
  evenly spaced clip of 160 frames out of 480 (every 3rd frame of UKB's 490 at TR 0.735 s) and
  robust-scales every ROI with training-set median/IQR. The row order of the released
  ``data/gradient_mapping_450.csv`` is this same 450-ROI order. Supply that file and the
  checkpoint yourself::

      {"preset": "brainjepa-vit-b", "gradient_path": "/path/gradient_mapping_450.csv",
       "checkpoint": "/path/jepa-ep300.pth.tar"}

* ``brainjepa-demo``: the 400 Schaefer ROIs in CBIG **17-network** order (the order of the
  shipped atlas and demo time series) and the shipped real-data gradients
  ``resource:gradients/schaefer400_17n_gradients.csv``; 48 frames.

To use another atlas, compute its gradients from a group connectivity matrix in the same ROI
order with :func:`anchorad_core.backbones.gradients.build_gradient_csv` and set
``gradient_path`` and ``n_rois``.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ...errors import ConfigError, InputDataError
from ...fusion.gated_injection import extra_keys
from ...modality import Modality
from ...resources import resolve_path
from ..base import BackboneOutput, ModalityBackbone, extra_token_mask, stack_arrays
from ..gradients import load_gradient_csv
from ..layers import DropPath, MaskedSelfAttention, TokenMlp
from ..registry import register_backbone
from .connectivity_readout import gradient_groups, network_similarity
from .conversion import load_brainjepa_checkpoint


def sincos_1d(dim: int, positions: np.ndarray) -> np.ndarray:
    """1-D sin-cos embedding ``(M, dim)`` laid out ``[sin | cos]``, frequencies ``1/10000^(i/(dim/2))``.

    Computed in float64 like the original (numpy).
    """
    if dim % 2:
        raise ConfigError(f"sin-cos embedding width must be even, got {dim}")
    omega = np.arange(dim // 2, dtype=np.float64) / (dim / 2.0)
    omega = 1.0 / 10000 ** omega
    out = np.einsum("m,d->md", np.asarray(positions, dtype=np.float64).reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


class PatchEmbed1d(nn.Module):
    """Conv2d over ``(ROI, time)`` with kernel and stride ``(1, patch_size)``; tokens ROI-major."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=(1, patch_size), stride=(1, patch_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class GradientPositionalEmbedding(nn.Module):
    """Brain-JEPA's ``GradTs_2dPE`` with ``add_w='mapping'`` (module name ``pos_embed_proj``).

    Parameters
    ----------
    n_gradients
        Columns of the gradient matrix.
    embed_dim
        Token width D (even; each half is D/2).
    n_rois, n_time_patches
        Token grid.
    """

    #: Buffer (registered in ``__init__``): the fixed sin-cos half, ``(n_rois * n_time_patches, D/2)``.
    emb_h: torch.Tensor

    def __init__(self, n_gradients: int, embed_dim: int, n_rois: int, n_time_patches: int) -> None:
        super().__init__()
        if embed_dim % 4:
            raise ConfigError(f"embed_dim must be divisible by 4 for the sin-cos half, got {embed_dim}")
        self.n_rois, self.n_time_patches = n_rois, n_time_patches
        time_index = np.tile(np.arange(n_time_patches, dtype=np.float64), n_rois)
        emb_h = torch.from_numpy(sincos_1d(embed_dim // 2, time_index)).float()
        #: Fixed sin-cos of the time-patch index, ``(n_rois * n_time_patches, D/2)`` (stored in
        #: checkpoints, hence a persistent buffer; the original keeps a frozen Parameter).
        self.register_buffer("emb_h", emb_h)
        self.predictor_pos_embed_proj = nn.Linear(n_gradients, embed_dim // 2)

    def gradient_rows(self, gradient: torch.Tensor) -> torch.Tensor:
        """Second half per ROI ``(n_rois, D/2)``, already min-max scaled to [-1, 1].

        Scaling before repeating over time patches gives the same values as the original
        (which repeats first): the min and max are the same.
        """
        rows = self.predictor_pos_embed_proj(gradient).reshape(self.n_rois, -1)
        return (rows - rows.min()) / (rows.max() - rows.min()) * 2 - 1

    def forward(self, gradient: torch.Tensor) -> torch.Tensor:
        """``(1, n_rois, n_gradients)`` gradient → ``(1, n_rois * n_time_patches, D)`` embedding."""
        emb_w = self.gradient_rows(gradient).repeat_interleave(self.n_time_patches, dim=0)
        return torch.cat([self.emb_h, emb_w], dim=1).unsqueeze(0)


class Block(nn.Module):
    """Pre-norm ViT block with a key mask for appended tokens."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool,
                 drop: float, attn_drop: float, drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MaskedSelfAttention(dim, num_heads, qkv_bias, attn_drop, drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = TokenMlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x: torch.Tensor, key_mask: "torch.Tensor | None" = None) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), key_mask))
        return x + self.drop_path(self.mlp(self.norm2(x)))


@register_backbone
class BrainJEPABackbone(ModalityBackbone):
    """Brain-JEPA encoder for ROI time series.

    Parameters
    ----------
    n_rois
        ROIs (rows of the series and of the gradient CSV).
    n_frames
        Time points per series; divisible by ``patch_size``.
    patch_size
        Frames per token (16).
    embed_dim, depth, num_heads, mlp_ratio, qkv_bias
        ViT size (ViT-B: 768, 12, 12, 4, True).
    gradient_path
        Gradient CSV (one row per ROI); a ``resource:`` name, an absolute path, or a path
        relative to ``base_dir``.
    drop_rate, attn_drop_rate, drop_path_rate
        Dropout rates (0 in the released configs).
    checkpoint
        Optional Brain-JEPA checkpoint loaded by :meth:`from_config`.
    checkpoint_key
        Entry of the checkpoint holding the encoder (``"target_encoder"``, as the original
        downstream code uses).
    readout
        ``"mean"`` (the original global pool) or ``"connectivity"`` (plus network similarities).
    connectivity_groups
        Networks ``K`` of the connectivity readout.
    base_dir
        Folder relative ``gradient_path`` values refer to (not part of the config).
    """

    modality = Modality.FMRI
    family = "brainjepa"
    lora_target_modules = r"(?:.*\.)?blocks\.\d+\.attn\.(?:qkv|proj)"
    phase2_trainable_modules: list[str] = []

    #: Buffer (registered in ``__init__``): the gradient matrix ``(1, n_rois, n_gradients)``.
    gradient: torch.Tensor
    #: Buffer registered only with ``readout="connectivity"``: network index of every ROI.
    roi_groups: torch.Tensor

    def __init__(
        self,
        n_rois: int = 450,
        n_frames: int = 160,
        patch_size: int = 16,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        gradient_path: "str | None" = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        checkpoint: "str | None" = None,
        checkpoint_key: str = "target_encoder",
        readout: str = "mean",
        connectivity_groups: int = 17,
        base_dir: "Path | None" = None,
    ) -> None:
        super().__init__()
        self.n_rois, self.n_frames, self.patch_size = int(n_rois), int(n_frames), int(patch_size)
        self.embed_dim, self.depth, self.num_heads = int(embed_dim), int(depth), int(num_heads)
        self.mlp_ratio, self.qkv_bias = float(mlp_ratio), bool(qkv_bias)
        self.drop_rate, self.attn_drop_rate, self.drop_path_rate = (
            float(drop_rate), float(attn_drop_rate), float(drop_path_rate))
        self.checkpoint, self.checkpoint_key = checkpoint, checkpoint_key
        if self.n_frames <= 0 or self.n_frames % self.patch_size:
            raise ConfigError(f"n_frames ({n_frames}) must be a positive multiple of patch_size ({patch_size})")
        if self.embed_dim % self.num_heads:
            raise ConfigError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        if gradient_path is None:
            raise ConfigError(
                "brainjepa needs gradient_path: a headerless CSV with one row of connectivity "
                "gradients per ROI, in the ROI order of the time series (the released model "
                "expects Brain-JEPA's data/gradient_mapping_450.csv)")
        self.gradient_path = str(gradient_path)
        self._gradient_file = resolve_path(self.gradient_path, base_dir)
        with torch.device("cpu"):  # read once on the CPU, also when the model is built on the meta device
            gradient_rows = load_gradient_csv(self._gradient_file)
        # the buffer goes where the model is being built (the meta device when sizing)
        gradient = gradient_rows.to(torch.empty(0).device)
        if gradient.shape[1] != self.n_rois:
            raise ConfigError(
                f"gradient CSV has {gradient.shape[1]} rows but the backbone is configured for "
                f"{self.n_rois} ROIs", self._gradient_file)
        #: The gradient matrix ``(1, n_rois, n_gradients)``; not in the state dict (as upstream).
        self.register_buffer("gradient", gradient, persistent=False)
        if readout not in ("mean", "connectivity"):
            raise ConfigError(f"brainjepa readout must be 'mean' or 'connectivity', got {readout!r}")
        self.readout, self.connectivity_groups = readout, int(connectivity_groups)
        if readout == "connectivity":
            if not 2 <= self.connectivity_groups <= self.n_rois:
                raise ConfigError(f"connectivity_groups must be in [2, {self.n_rois}], got {connectivity_groups}")
            groups = gradient_groups(gradient_rows[0].numpy(), self.connectivity_groups)
            #: Network index of every ROI for the connectivity readout (rebuilt from the gradients).
            self.register_buffer("roi_groups", torch.from_numpy(groups), persistent=False)

        self.n_time_patches = self.n_frames // self.patch_size
        self.patch_embed = PatchEmbed1d(self.patch_size, 1, self.embed_dim)
        self.pos_embed_proj = GradientPositionalEmbedding(
            gradient.shape[2], self.embed_dim, self.n_rois, self.n_time_patches)
        dpr = torch.linspace(0, self.drop_path_rate, self.depth).tolist()
        self.blocks = nn.ModuleList(
            Block(self.embed_dim, self.num_heads, self.mlp_ratio, self.qkv_bias,
                  self.drop_rate, self.attn_drop_rate, dpr[i]) for i in range(self.depth))
        self.norm = nn.LayerNorm(self.embed_dim, eps=1e-6)
        self.fc_norm = nn.LayerNorm(self.embed_dim, eps=1e-6)
        self._init_weights()

    def _init_weights(self, std: float = 0.02) -> None:
        """The original initialisation (trunc-normal 0.02, zero biases, depth-rescaled outputs)."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                nn.init.trunc_normal_(module.weight, std=std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        with torch.no_grad():
            for layer_id, block in enumerate(self.blocks, start=1):
                assert isinstance(block, Block)  # nn.ModuleList yields plain Modules
                block.attn.proj.weight.div_(np.sqrt(2.0 * layer_id))
                block.mlp.fc2.weight.div_(np.sqrt(2.0 * layer_id))

    # ------------------------------------------------------------------ interface

    @property
    def width(self) -> int:
        return self.embed_dim

    @property
    def pooled_width(self) -> int:
        extra = 2 * self.connectivity_groups if self.readout == "connectivity" else 0
        return self.embed_dim + extra

    @property
    def pooled_blocks(self) -> tuple[tuple[str, int], ...]:
        """The token mean, then (connectivity readout) the within-network and the
        network-to-all similarities."""
        if self.readout == "mean":
            return (("token mean", self.embed_dim),)
        k = self.connectivity_groups
        return (("token mean", self.embed_dim), ("within-network similarity", k), ("network-to-all similarity", k))

    @property
    def attention_heads(self) -> list[int]:
        return [self.num_heads] * self.depth

    @property
    def num_tokens(self) -> int:
        """Own tokens per sample: ``n_rois * n_frames // patch_size``."""
        return self.n_rois * self.n_time_patches

    def token_grid(self) -> tuple[int, int]:
        """``(n_rois, n_time_patches)``; token ``i`` is ROI ``i // n_time_patches``, patch ``i % n_time_patches``."""
        return self.n_rois, self.n_time_patches

    def collate(self, samples: Sequence[Any]) -> dict[str, torch.Tensor]:
        """Stack ``(n_rois, n_frames)`` series into ``{"series": (B, 1, n_rois, n_frames)}``."""
        series = stack_arrays(samples, (self.n_rois, self.n_frames), "fMRI series",
                              "(ROI, time); crop or resample the series in preprocessing")
        return {"series": series[:, None]}

    def positional_embedding(self) -> torch.Tensor:
        """``(1, num_tokens, D)`` positional embedding added to the patch tokens."""
        return self.pos_embed_proj(self.gradient)

    def encode(
        self,
        series: torch.Tensor,
        extra_tokens: "torch.Tensor | None" = None,
        extra_mask: "torch.Tensor | None" = None,
    ) -> "tuple[torch.Tensor, torch.Tensor | None]":
        """The original encoder forward: ``(B, num_tokens, D)`` tokens after ``norm``.

        Returns the own tokens and the appended tokens after ``norm`` (``None`` without
        them; masked ones are zeroed).
        """
        tokens, extra, _ = self._encode(series, extra_tokens, extra_mask)
        return tokens, extra

    def _encode(
        self,
        series: torch.Tensor,
        extra_tokens: "torch.Tensor | None",
        extra_mask: "torch.Tensor | None",
    ) -> "tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]":
        """:meth:`encode` plus the own tokens' residual stream before ``norm``, minus the
        positional embedding (the part the connectivity readout reads)."""
        if series.ndim != 4 or tuple(series.shape[1:]) != (1, self.n_rois, self.n_frames):
            raise InputDataError(
                f"expected a (B, 1, {self.n_rois}, {self.n_frames}) series tensor, got {tuple(series.shape)}")
        x = self.patch_embed(series)
        position = self.positional_embedding()
        x = x + position
        n = x.shape[1]
        valid = None
        key_mask = None
        if extra_tokens is not None:
            if extra_tokens.ndim != 3 or extra_tokens.shape[0] != x.shape[0] or extra_tokens.shape[2] != self.width:
                raise ValueError(
                    f"extra_tokens must be (B={x.shape[0]}, E, {self.width}), got {tuple(extra_tokens.shape)}")
            valid = extra_token_mask(extra_mask, extra_tokens.shape[:2], x.device)
            if bool(valid.any()):
                x = torch.cat([x, extra_tokens.to(x.dtype)], dim=1)
                if not bool(valid.all()):
                    key_mask = torch.cat([torch.ones(x.shape[0], n, dtype=torch.bool, device=x.device), valid], 1)
        is_extra = None
        if x.shape[1] > n:
            is_extra = torch.zeros(x.shape[:2], dtype=torch.bool, device=x.device)
            is_extra[:, n:] = True
        with extra_keys(is_extra):
            for block in self.blocks:
                x = block(x, key_mask)
        stream = x[:, :n] - position.to(x.dtype)
        x = self.norm(x)
        if extra_tokens is None:
            return x, None, stream
        if x.shape[1] == n:  # every appended token was masked: they were left out entirely
            return x, x.new_zeros(extra_tokens.shape[0], extra_tokens.shape[1], self.width), stream
        assert valid is not None  # set whenever extra_tokens is given
        return x[:, :n], x[:, n:].masked_fill(~valid[..., None], 0.0), stream

    def _connectivity(self, stream: torch.Tensor) -> list[torch.Tensor]:
        """The network similarities of ``readout="connectivity"`` (none for ``"mean"``)."""
        if self.readout == "mean":
            return []
        per_roi = stream.reshape(stream.shape[0], self.n_rois, -1)
        # float32 whatever the model's dtype: similarities near 1 differ across subjects by ~1e-3,
        # below bfloat16's resolution there (2^-8)
        return [network_similarity(per_roi.float(), self.roi_groups, self.connectivity_groups)]

    def forward(
        self,
        batch: dict[str, torch.Tensor],
        extra_tokens: "torch.Tensor | None" = None,
        extra_mask: "torch.Tensor | None" = None,
    ) -> BackboneOutput:
        """Encode ``batch["series"]``; ``pooled`` = ``fc_norm``(mean of the own tokens) (+ the
        connectivity readout).

        ``pooled_with_extra`` takes the mean over the own and the valid appended tokens.
        """
        tokens, extra, stream = self._encode(batch["series"], extra_tokens, extra_mask)
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        connectivity = self._connectivity(stream)
        pooled = torch.cat([self.fc_norm(tokens.mean(dim=1)).float(), *connectivity], dim=1)
        if extra is None:
            return BackboneOutput(tokens=tokens, mask=mask, pooled=pooled, extra=None)
        valid = extra_token_mask(extra_mask, extra.shape[:2], tokens.device)
        if not bool(valid.any()):
            with_extra = pooled
        else:
            weights = valid.to(tokens.dtype)[..., None]
            mean = (tokens.sum(dim=1) + (extra * weights).sum(dim=1)) / (tokens.shape[1] + weights.sum(dim=1))
            with_extra = torch.cat([self.fc_norm(mean).float(), *connectivity], dim=1)
        return BackboneOutput(tokens=tokens, mask=mask, pooled=pooled, extra=extra, pooled_with_extra=with_extra)

    # ------------------------------------------------------------------ config

    @classmethod
    def from_config(
        cls, config: dict[str, Any], base_dir: "Path | None" = None, load_weights: bool = True
    ) -> "BrainJEPABackbone":
        kwargs = {k: v for k, v in config.items() if k != "family"}
        try:
            model = cls(**kwargs, base_dir=base_dir)
        except TypeError as exc:
            raise ConfigError(f"bad brainjepa config: {exc}") from None
        if load_weights and model.checkpoint:
            load_brainjepa_checkpoint(model, resolve_path(model.checkpoint, base_dir), key=model.checkpoint_key)
        return model

    def get_config(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "n_rois": self.n_rois,
            "n_frames": self.n_frames,
            "patch_size": self.patch_size,
            "embed_dim": self.embed_dim,
            "depth": self.depth,
            "num_heads": self.num_heads,
            "mlp_ratio": self.mlp_ratio,
            "qkv_bias": self.qkv_bias,
            "gradient_path": self.gradient_path,
            "drop_rate": self.drop_rate,
            "attn_drop_rate": self.attn_drop_rate,
            "drop_path_rate": self.drop_path_rate,
            "checkpoint": self.checkpoint,
            "checkpoint_key": self.checkpoint_key,
            "readout": self.readout,
            "connectivity_groups": self.connectivity_groups,
        }

    def export_files(self, directory: Path) -> dict[str, Any]:
        """Copy the gradient CSV into ``directory``; returns ``{"gradient_path": <file name>}``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        name = "brainjepa_gradients.csv"
        target = directory / name
        if target.resolve() != self._gradient_file.resolve():
            tmp = directory / (name + ".part")
            shutil.copyfile(self._gradient_file, tmp)
            tmp.replace(target)
        return {"gradient_path": name}
