"""Output-level fusion baselines the paper compares against.

They all fuse the frozen phase-1 *pooled* features ``f_m`` (one vector per modality), so they
train in seconds; a missing modality is masked (excluded), never zero-filled into the sum.

- ``concat``: ``head(concat_m f_m)`` with missing modalities' slots zeroed and a presence
  indicator appended (concatenation has a fixed layout, so this is the only way it can express
  "missing").
- ``linear``: ``head(sum_m W_m f_m / |present|)``.
- ``self-attention``: one token per present modality (projection + modality embedding), a
  Transformer encoder layer over them, mean of present tokens, head.
"""
from __future__ import annotations

import torch
from torch import nn

from ..modality import Modality

FUSION_METHODS = ("concat", "linear", "self-attention")


class OutputFusion(nn.Module):
    """An output-level fusion classifier over pooled phase-1 features.

    Parameters
    ----------
    method
        One of :data:`FUSION_METHODS`.
    widths
        Pooled feature width per modality.
    num_classes
        Number of labels.
    hidden
        Common width of the projected features.
    """

    def __init__(self, method: str, widths: dict[Modality, int], num_classes: int = 2, hidden: int = 64) -> None:
        super().__init__()
        if method not in FUSION_METHODS:
            raise ValueError(f"unknown fusion method {method!r}")
        self.method = method
        self.modalities = list(widths)
        # torch's ModuleDict keys must be strings: keyed by the modality's value.
        self.norms = nn.ModuleDict({m.value: nn.LayerNorm(w) for m, w in widths.items()})
        if method == "concat":
            total = sum(widths.values()) + len(widths)
            self.head = nn.Sequential(nn.Dropout(0.1), nn.Linear(total, num_classes))
        else:
            self.projections = nn.ModuleDict({m.value: nn.Linear(w, hidden) for m, w in widths.items()})
            if method == "self-attention":
                self.modality_embedding = nn.Parameter(torch.zeros(len(widths), hidden))
                self.encoder = nn.TransformerEncoderLayer(
                    hidden, nhead=4, dim_feedforward=2 * hidden, dropout=0.1, batch_first=True
                )
            self.head = nn.Sequential(nn.Dropout(0.1), nn.Linear(hidden, num_classes))

    def forward(self, features: dict[Modality, torch.Tensor], present: dict[Modality, torch.Tensor]) -> torch.Tensor:
        """Logits ``(B, K)`` from ``features[m]`` ``(B, C_m)`` and ``present[m]`` ``(B,)`` bool."""
        normed = {m: self.norms[m.value](features[m]) for m in self.modalities}
        mask = torch.stack([present[m] for m in self.modalities], dim=1).to(next(iter(normed.values())).dtype)
        if self.method == "concat":
            parts = [normed[m] * mask[:, i : i + 1] for i, m in enumerate(self.modalities)]
            return self.head(torch.cat(parts + [mask], dim=1))
        tokens = torch.stack([self.projections[m.value](normed[m]) for m in self.modalities], dim=1)
        if self.method == "linear":
            fused = (tokens * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
            return self.head(fused)
        tokens = tokens + self.modality_embedding
        padding = mask == 0
        all_missing = padding.all(dim=1)
        if all_missing.any():
            padding = padding.clone()
            padding[all_missing] = False
        encoded = self.encoder(tokens, src_key_padding_mask=padding)
        fused = (encoded * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
        return self.head(fused)
