"""A tiny backbone implementing the interface, for fast tests of the method's plumbing."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from anchorad_core.backbones.base import BackboneOutput, ModalityBackbone
from anchorad_core.backbones.registry import register_backbone
from anchorad_core.fusion.gated_injection import attend, extra_keys
from anchorad_core.modality import Modality


class ToyAttention(nn.Module):
    def __init__(self, width: int, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = attend(q, k, v, mask[:, None, None, :])
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


@register_backbone
class ToyBackbone(ModalityBackbone):
    """Linear embedding + one pre-norm attention block over vector tokens ``(N, in_width)``."""

    family = "toy"
    lora_target_modules = r".*attn\.(qkv|proj)"

    def __init__(self, modality: str = "smri", in_width: int = 3, hidden: int = 8) -> None:
        super().__init__()
        self.modality_name = modality
        self.in_width, self.hidden = in_width, hidden
        self.embed = nn.Linear(in_width, hidden)
        self.norm1 = nn.LayerNorm(hidden)
        self.attn = ToyAttention(hidden)
        self.norm2 = nn.LayerNorm(hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.GELU(), nn.Linear(2 * hidden, hidden))

    @property
    def modality(self) -> Modality:  # type: ignore[override]
        return Modality.parse(self.modality_name)

    @property
    def width(self) -> int:
        return self.hidden

    @property
    def attention_heads(self) -> list[int]:
        return [self.attn.heads]

    def collate(self, samples: Sequence[Any]) -> dict[str, torch.Tensor]:
        n = max(len(s) for s in samples)
        x = torch.zeros(len(samples), n, self.in_width)
        mask = torch.zeros(len(samples), n, dtype=torch.bool)
        for i, s in enumerate(samples):
            x[i, : len(s)] = torch.as_tensor(np.asarray(s), dtype=torch.float32)
            mask[i, : len(s)] = True
        return {"x": x, "mask": mask}

    def forward(self, batch, extra_tokens=None, extra_mask=None) -> BackboneOutput:
        x, mask = self.embed(batch["x"]), batch["mask"]
        n = x.shape[1]
        is_extra = None
        if extra_tokens is not None:
            x = torch.cat([x, extra_tokens], 1)
            mask = torch.cat([mask, extra_mask], 1)
            is_extra = torch.zeros(mask.shape, dtype=torch.bool)
            is_extra[:, n:] = True
        with extra_keys(is_extra):
            x = x + self.attn(self.norm1(x), mask)
        x = x + self.mlp(self.norm2(x))
        own = batch["mask"]
        pooled = (x[:, :n] * own[..., None]).sum(1) / own.sum(1, keepdim=True)
        with_extra = (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True) if extra_tokens is not None else None
        return BackboneOutput(x[:, :n], own, pooled, x[:, n:] if extra_tokens is not None else None, with_extra)

    @classmethod
    def from_config(cls, config, base_dir=None, load_weights=True):
        return cls(**config)

    def get_config(self) -> dict[str, Any]:
        return {"family": self.family, "modality": self.modality_name, "in_width": self.in_width, "hidden": self.hidden}


def toy_inputs(n: int = 24, seed: int = 0, drop: "dict[str, list[int]] | None" = None):
    """Labels with a weak per-modality signal, for plumbing tests."""
    from anchorad_core.training.inputs import CohortInputs

    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    samples = {}
    for k, m in enumerate(Modality):
        rows = []
        for i in range(n):
            length = 3 + (i + k) % 4
            rows.append((rng.normal(size=(length, 3)) + labels[i] * 0.8).astype(np.float32))
        for i in (drop or {}).get(m.value, []):
            rows[i] = None
        samples[m] = rows
    return CohortInputs([f"sub-{i:02d}" for i in range(n)], labels, samples)


def toy_config(num_queries: int = 2):
    from anchorad_core.training.config import StageSettings, TrainConfig

    stage = StageSettings(epochs=2, batch_size=4, lr=1e-2, patience=2)
    return TrainConfig(
        backbones={m.value: {"family": "toy", "modality": m.value, "hidden": 8 + 4 * i} for i, m in enumerate(Modality)},
        phase1={m.value: stage for m in Modality},
        phase2={m.value: stage for m in Modality},
        num_queries=num_queries, qformer_heads=2,
    )
