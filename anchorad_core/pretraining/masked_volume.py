"""Masked-volume pretraining for the 3-D UniFormer (the BrainMVP objective, in small).

BrainMVP pairs masked image modelling with contrastive learning between masked views.
Here each subject is seen as **two views**, each with its own random acquisition-like
augmentation (small affine, bias field, contrast, noise: :func:`augment_views`) and its
own mask:

* reconstruction: random cubes of ``mask_patch`` voxels (a share ``mask_ratio``) are
  replaced by one learnable intensity; a linear decoder on each stage-4 token predicts the
  volume inside that token's receptive cube at ``target_pool`` voxel resolution; L1 on
  masked cubes only (SimMIM);
* contrast: the pooled features of the two views of a subject are pulled together and
  pushed away from the other subjects of the batch (InfoNCE, temperature 0.2), so the
  pooled feature keeps what tells subjects apart and drops what the augmentations change.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.uniformer3d import UniFormer3DBackbone
from ..progress import SILENT, Progress
from .common import PretrainCurve, minibatches, run_steps

_STRIDE = 16


class MaskedVolumeModel(nn.Module):
    """UniFormer encoder + mask intensity + linear per-token decoder.

    Parameters
    ----------
    encoder
        The backbone to pretrain (its weights are updated in place).
    mask_patch
        Edge of a masked cube in voxels (divides 16).
    target_pool
        Reconstruction resolution: targets are ``target_pool``³ voxel averages.
    """

    def __init__(self, encoder: UniFormer3DBackbone, mask_patch: int = 8, target_pool: int = 4) -> None:
        super().__init__()
        if _STRIDE % mask_patch or mask_patch % target_pool:
            raise ValueError("mask_patch must divide 16 and be a multiple of target_pool")
        self.encoder = encoder
        self.mask_patch, self.target_pool = mask_patch, target_pool
        self.cells = (_STRIDE // target_pool) ** 3
        self.mask_value = nn.Parameter(torch.zeros(()))
        self.decoder = nn.Linear(encoder.width, self.cells)

        self.projector = nn.Sequential(nn.Linear(encoder.width, encoder.width), nn.GELU(),
                                       nn.Linear(encoder.width, 32))

    def loss(self, image: torch.Tensor, mask_ratio: float, generator: torch.Generator) -> torch.Tensor:
        """L1 reconstruction error on the masked cubes of ``image`` ``(B, 1, X, Y, Z)``."""
        return self.views_loss(image, None, mask_ratio, generator)

    def views_loss(self, view_a: torch.Tensor, view_b: "torch.Tensor | None", mask_ratio: float,
                   generator: torch.Generator, temperature: float = 0.2, weight: float = 0.5) -> torch.Tensor:
        """Reconstruction of both views plus ``weight`` x InfoNCE between their pooled features."""
        rec_a, pooled_a = self._reconstruction(view_a, mask_ratio, generator)
        if view_b is None:
            return rec_a
        rec_b, pooled_b = self._reconstruction(view_b, mask_ratio, generator)
        za = F.normalize(self.projector(pooled_a), dim=-1)
        zb = F.normalize(self.projector(pooled_b), dim=-1)
        logits = za @ zb.T / temperature
        target = torch.arange(len(za))
        contrast = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        return (rec_a + rec_b) / 2 + weight * contrast

    def _reconstruction(self, image: torch.Tensor, mask_ratio: float,
                        generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, x, y, z = image.shape
        p = self.mask_patch
        grid = (torch.rand(b, 1, x // p, y // p, z // p, generator=generator) < mask_ratio).float()
        voxels = grid.repeat_interleave(p, 2).repeat_interleave(p, 3).repeat_interleave(p, 4)
        masked = image * (1 - voxels) + self.mask_value * voxels
        out = self.encoder({"image": masked})
        tokens = out.tokens  # (B, N, C), token grid (Z, X, Y)/16
        prediction = self.decoder(tokens)  # (B, N, cells)
        # targets and masks in the encoder's permuted (Z, X, Y) axis order, cut per token
        target = F.avg_pool3d(image.permute(0, 1, 4, 2, 3), self.target_pool)
        cell_mask = F.avg_pool3d(voxels.permute(0, 1, 4, 2, 3), self.target_pool)
        target, cell_mask = _per_token(target, self.target_pool), _per_token(cell_mask, self.target_pool)
        error = (prediction - target).abs() * cell_mask
        return error.sum() / cell_mask.sum().clamp_min(1.0), out.pooled


def augment_views(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """What differs between two scans of one brain, for a whole batch ``(B, 1, X, Y, Z)`` at once.

    Small affine (rotation SD 3 degrees, scale SD 3 %, shift SD 1.5 voxels), a smooth
    multiplicative bias field, a gamma contrast change (0.85-1.2) and Gaussian noise (SD 0.02).
    Batched in torch (one ``grid_sample``): per-sample MONAI transforms cost about 0.2 s a
    volume on CPU, which would triple the pretraining time.
    """
    b = images.shape[0]
    angles = torch.randn(b, 3, generator=generator) * 0.05
    cx, cy, cz = angles.cos().unbind(1)
    sx, sy, sz = angles.sin().unbind(1)
    one, zero = torch.ones(b), torch.zeros(b)
    rx = torch.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], 1).view(b, 3, 3)
    ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], 1).view(b, 3, 3)
    rz = torch.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], 1).view(b, 3, 3)
    scale = 1 + torch.randn(b, 3, generator=generator) * 0.03
    matrix = (rx @ ry @ rz) * scale[:, None, :]
    shift = torch.randn(b, 3, 1, generator=generator) * (1.5 * 2 / images.shape[-1])
    grid = F.affine_grid(torch.cat([matrix, shift], 2), list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    axes = [torch.linspace(-1, 1, n) for n in images.shape[2:]]
    gx, gy, gz = axes[0].view(-1, 1, 1), axes[1].view(1, -1, 1), axes[2].view(1, 1, -1)
    c = torch.randn(b, 6, generator=generator) * 0.08
    bias = torch.exp(c[:, 0, None, None, None] * gx + c[:, 1, None, None, None] * gy + c[:, 2, None, None, None] * gz
                     + c[:, 3, None, None, None] * gx * gy + c[:, 4, None, None, None] * gz**2
                     + c[:, 5, None, None, None] * gx**2)
    gamma = 0.85 + 0.35 * torch.rand(b, 1, 1, 1, 1, generator=generator)
    out = (out.clamp_min(0.0) * bias[:, None]) ** gamma
    return out + torch.randn(out.shape, generator=generator) * 0.02


def _per_token(volume: torch.Tensor, pool: int) -> torch.Tensor:
    """``(B, 1, D, H, W)`` cells → ``(B, N_tokens, cells_per_token)`` in token order."""
    b, _, d, h, w = volume.shape
    k = _STRIDE // pool
    v = volume.reshape(b, d // k, k, h // k, k, w // k, k)
    return v.permute(0, 1, 3, 5, 2, 4, 6).reshape(b, (d // k) * (h // k) * (w // k), k**3)


def pretrain_masked_volume(
    encoder: UniFormer3DBackbone,
    volumes: Sequence[np.ndarray],
    steps: int = 600,
    batch_size: int = 8,
    lr: float = 2e-3,
    mask_ratio: float = 0.5,
    seed: int = 0,
    progress: Progress = SILENT,
) -> PretrainCurve:
    """Pretrain ``encoder`` in place on preprocessed T1 cubes; returns the loss curve."""
    torch.manual_seed(seed)
    model = MaskedVolumeModel(encoder)
    data = encoder.collate(list(volumes))["image"]
    generator = torch.Generator().manual_seed(seed)
    model.train()

    def batches(epoch: int):
        for index in minibatches(len(data), batch_size, seed, epoch):
            image = data[index]
            yield augment_views(image, generator), augment_views(image, generator)

    curve = run_steps(
        "masked-volume reconstruction + view contrast", list(model.parameters()), batches,
        lambda views: model.views_loss(views[0], views[1], mask_ratio, generator), steps, lr, progress=progress,
    )
    encoder.eval()
    return curve
