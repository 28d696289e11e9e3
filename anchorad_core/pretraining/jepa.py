"""The Brain-JEPA objective for the ROI x time ViT.

A context encoder (the backbone being pretrained) sees the tokens outside a few target
blocks; a target encoder, an exponential moving average of it, sees every token; a narrow
predictor transformer takes the context outputs plus one mask token per target position
(each carrying the **gradient positional embedding** of its ROI and the sin-cos of its time
patch) and predicts the target encoder's outputs there, each feature standardised over the
subject's tokens (as data2vec's targets; plain layer-normed targets collapsed on the small
demo cohort: the token spread fell to a quarter of its initial value). Targets are blocks of
ROIs adjacent along the first connectivity gradient (Brain-JEPA's gradient-informed
spatial masking) crossed with one time patch, so the model must infer an ROI's activity
from functionally related ROIs — the structure that connectivity measures summarise.
"""
from __future__ import annotations

import copy
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.brainjepa import Block, BrainJEPABackbone, GradientPositionalEmbedding
from ..progress import SILENT, Progress
from .common import PretrainCurve, minibatches, run_steps


def encode_subset(encoder: BrainJEPABackbone, series: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Encoder outputs ``(B, K, D)`` of only the tokens ``keep`` ``(B, K)`` (the others are dropped)."""
    x = encoder.patch_embed(series) + encoder.positional_embedding()
    x = torch.gather(x, 1, keep.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
    for block in encoder.blocks:
        x = block(x)
    return encoder.norm(x)


class JEPAPredictor(nn.Module):
    """Narrow ViT that predicts target-token representations from context outputs."""

    def __init__(self, encoder: BrainJEPABackbone, width: int = 32, depth: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.embed = nn.Linear(encoder.width, width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        gradient = _gradient(encoder)
        self.position = GradientPositionalEmbedding(
            gradient.shape[2], width, encoder.n_rois, encoder.n_time_patches)
        self.blocks = nn.ModuleList(Block(width, heads, 4.0, True, 0.0, 0.0, 0.0) for _ in range(depth))
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.out = nn.Linear(width, encoder.width)

    def forward(self, context: torch.Tensor, keep: torch.Tensor, targets: torch.Tensor,
                gradient: torch.Tensor) -> torch.Tensor:
        pos = self.position(gradient).expand(context.shape[0], -1, -1)
        take = lambda idx: torch.gather(pos, 1, idx.unsqueeze(-1).expand(-1, -1, pos.shape[-1]))  # noqa: E731
        x = torch.cat([self.embed(context) + take(keep), self.mask_token + take(targets)], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.out(self.norm(x[:, keep.shape[1]:]))


def _gradient(encoder: BrainJEPABackbone) -> torch.Tensor:
    """The encoder's connectivity-gradient buffer ``(1, n_rois, columns)``."""
    gradient = encoder.gradient
    if not isinstance(gradient, torch.Tensor):
        raise TypeError("the Brain-JEPA encoder has no gradient buffer")
    return gradient


def sample_masks(encoder: BrainJEPABackbone, batch: int, rng: np.random.Generator, n_blocks: int = 4,
                 roi_fraction: float = 0.08, context_keep: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Context and target token indices ``(B, K)``, ``(B, M)`` (same sizes in every row)."""
    rois, times = encoder.n_rois, encoder.n_time_patches
    gradient = _gradient(encoder)
    order = np.argsort(gradient[0, :, 0].cpu().numpy())  # ROIs along the first gradient
    span = max(1, int(round(roi_fraction * rois)))
    all_targets, all_context = [], []
    for _ in range(batch):
        chosen: set[int] = set()
        for _ in range(n_blocks):
            start = int(rng.integers(0, rois - span + 1))
            t = int(rng.integers(0, times))
            chosen.update(int(r) * times + t for r in order[start : start + span])
        targets = np.array(sorted(chosen))
        rest = np.setdiff1d(np.arange(rois * times), targets)
        all_targets.append(targets)
        all_context.append(rest)
    m = min(len(t) for t in all_targets)
    k = int(context_keep * min(len(c) for c in all_context))
    targets = np.stack([rng.choice(t, m, replace=False) for t in all_targets])
    context = np.stack([rng.choice(c, k, replace=False) for c in all_context])
    return torch.from_numpy(np.sort(context, 1)), torch.from_numpy(np.sort(targets, 1))


def pretrain_jepa(
    encoder: BrainJEPABackbone,
    series: Sequence[np.ndarray],
    steps: int = 500,
    batch_size: int = 8,
    lr: float = 1e-3,
    ema: tuple[float, float] = (0.99, 1.0),
    seed: int = 0,
    progress: Progress = SILENT,
) -> PretrainCurve:
    """Pretrain ``encoder`` in place on preprocessed ROI series; returns the loss curve."""
    torch.manual_seed(seed)
    target_encoder = copy.deepcopy(encoder).requires_grad_(False)
    predictor = JEPAPredictor(encoder)
    data = encoder.collate(list(series))["series"]
    rng = np.random.default_rng(seed)
    encoder.train()
    predictor.train()

    def batches(epoch: int):
        for index in minibatches(len(data), batch_size, seed, epoch):
            yield data[index]

    def loss_of(x: torch.Tensor) -> torch.Tensor:
        context, targets = sample_masks(encoder, x.shape[0], rng)
        with torch.no_grad():
            full = target_encoder.encode(x)[0]
            # data2vec-style instance normalisation of the targets (each feature standardised
            # over the tokens of a subject): a collapsed, constant representation can no longer
            # make the targets trivially predictable.
            full = F.instance_norm(full.transpose(1, 2)).transpose(1, 2)
            wanted = torch.gather(full, 1, targets.unsqueeze(-1).expand(-1, -1, full.shape[-1]))
        predicted = predictor(encode_subset(encoder, x, context), context, targets, encoder.gradient)
        return F.smooth_l1_loss(predicted, wanted)

    def update_target(step: int) -> None:
        momentum = ema[0] + (ema[1] - ema[0]) * step / max(1, steps)
        with torch.no_grad():
            for p_t, p in zip(target_encoder.parameters(), encoder.parameters()):
                p_t.mul_(momentum).add_(p.detach(), alpha=1 - momentum)

    params = list(encoder.parameters()) + list(predictor.parameters())
    curve = run_steps("JEPA (gradient positional embedding)", params, batches, loss_of, steps, lr,
                      after_step=update_target, progress=progress)
    # As Brain-JEPA's downstream code: the target encoder is the pretrained model.
    encoder.load_state_dict(target_encoder.state_dict())
    encoder.eval()
    return curve
