"""Masked-volume reconstruction for the 3-D UniFormer (BrainMVP's masked image modelling).

Random cubes of ``mask_patch`` voxels (a share ``mask_ratio`` of them) are replaced by one
learnable intensity; the encoder sees the masked volume, and a linear decoder on each
stage-4 token predicts the volume inside that token's receptive cube at ``target_pool``
voxel resolution. The loss is the L1 error on masked cubes only (SimMIM), so the tokens
must carry what the context implies about the hidden anatomy.

BrainMVP adds contrastive learning between views of multi-parametric scans. A single-
contrast version (two augmented views of one T1, InfoNCE on the pooled features) was tried
on the demo pretraining cohort and left the pooled feature less informative (linear-probe
NC/AD AUC 0.52 against 0.63 for reconstruction alone, 5-fold CV on a demo cohort), so it is
not part of the shipped recipe.
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

    def loss(self, image: torch.Tensor, mask_ratio: float, generator: torch.Generator) -> torch.Tensor:
        """L1 reconstruction error on the masked cubes of ``image`` ``(B, 1, X, Y, Z)``."""
        b, _, x, y, z = image.shape
        p = self.mask_patch
        grid = (torch.rand(b, 1, x // p, y // p, z // p, generator=generator) < mask_ratio).float()
        voxels = grid.repeat_interleave(p, 2).repeat_interleave(p, 3).repeat_interleave(p, 4)
        masked = image * (1 - voxels) + self.mask_value * voxels
        tokens = self.encoder({"image": masked}).tokens  # (B, N, C), token grid (Z, X, Y)/16
        prediction = self.decoder(tokens)  # (B, N, cells)
        # targets and masks in the encoder's permuted (Z, X, Y) axis order, cut per token
        target = F.avg_pool3d(image.permute(0, 1, 4, 2, 3), self.target_pool)
        cell_mask = F.avg_pool3d(voxels.permute(0, 1, 4, 2, 3), self.target_pool)
        target, cell_mask = _per_token(target, self.target_pool), _per_token(cell_mask, self.target_pool)
        error = (prediction - target).abs() * cell_mask
        return error.sum() / cell_mask.sum().clamp_min(1.0)


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
            # flips are the only augmentation (left-right symmetry of the brain)
            if torch.rand((), generator=generator) < 0.5:
                image = image.flip(2)
            yield image

    curve = run_steps(
        "masked-volume reconstruction", list(model.parameters()), batches,
        lambda image: model.loss(image, mask_ratio, generator), steps, lr, progress=progress,
    )
    encoder.eval()
    return curve
