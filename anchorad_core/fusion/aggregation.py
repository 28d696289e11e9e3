"""Rules that aggregate the anchor rounds' class probabilities into one diagnosis.

Every rule takes ``probabilities`` ``(R, B, K)`` (round, subject, class) and ``present``
``(R, B)`` bool (a subject lacking the anchor modality has no round) and returns ``(B, K)``.

- ``mean``: the paper's baseline, the mean of the present rounds' probabilities.
- ``confidence``: each round weighted by its confidence ``1 - H(p) / log K`` (normalised
  entropy), so a round that is sure of itself counts more than an undecided one.
- ``validation``: fixed per-round weights learned on the validation split (inverse
  validation log-loss, normalised), renormalised over the rounds present for a subject.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from ..errors import ConfigError

RULES = ("mean", "confidence", "validation")


def aggregate(
    probabilities: torch.Tensor,
    present: torch.Tensor,
    rule: str = "mean",
    round_weights: "Sequence[float] | torch.Tensor | None" = None,
) -> torch.Tensor:
    """Aggregate per-round probabilities with ``rule`` (see the module docstring).

    Parameters
    ----------
    probabilities
        ``(R, B, K)`` per-round class probabilities.
    present
        ``(R, B)`` bool: which rounds exist for which subject.
    rule
        One of :data:`RULES`.
    round_weights
        ``(R,)`` non-negative weights for the ``validation`` rule.

    Returns
    -------
    torch.Tensor
        ``(B, K)`` probabilities; subjects with no round at all get a uniform distribution.
    """
    weights = round_confidences(probabilities, present, rule, round_weights)
    total = weights.sum(dim=0, keepdim=True)
    num_classes = probabilities.shape[-1]
    uniform = torch.full_like(probabilities[0], 1.0 / num_classes)
    safe_total = torch.where(total > 0, total, torch.ones_like(total))
    combined = (weights.unsqueeze(-1) * probabilities).sum(dim=0) / safe_total.squeeze(0).unsqueeze(-1)
    return torch.where((total.squeeze(0) > 0).unsqueeze(-1), combined, uniform)


def round_confidences(
    probabilities: torch.Tensor,
    present: torch.Tensor,
    rule: str = "mean",
    round_weights: "Sequence[float] | torch.Tensor | None" = None,
) -> torch.Tensor:
    """Un-normalised weight ``(R, B)`` of each round under ``rule`` (0 for absent rounds)."""
    present_f = present.to(probabilities.dtype)
    if rule == "mean":
        weights = torch.ones_like(present_f)
    elif rule == "confidence":
        num_classes = probabilities.shape[-1]
        p = probabilities.clamp_min(1e-12)
        entropy = -(p * p.log()).sum(dim=-1)
        weights = (1.0 - entropy / math.log(num_classes)).clamp_min(1e-6)
    elif rule == "validation":
        if round_weights is None:
            raise ConfigError("the 'validation' aggregation rule needs per-round weights")
        w = torch.as_tensor(round_weights, dtype=probabilities.dtype, device=probabilities.device)
        if w.shape != (probabilities.shape[0],):
            raise ConfigError(f"expected {probabilities.shape[0]} round weights, got {tuple(w.shape)}")
        weights = w.clamp_min(0).unsqueeze(1).expand_as(present_f)
    else:
        raise ConfigError(f"unknown aggregation rule {rule!r}; choose one of {', '.join(RULES)}")
    return weights * present_f


def validation_round_weights(log_losses: Sequence[float]) -> list[float]:
    """Weights from per-round validation log-losses: ``1 / loss``, normalised to sum 1."""
    inverse = [1.0 / max(loss, 1e-3) for loss in log_losses]
    total = sum(inverse)
    return [w / total for w in inverse]
