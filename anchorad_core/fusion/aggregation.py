"""Rules that aggregate the anchor rounds' class probabilities into one diagnosis.

Every rule takes ``probabilities`` ``(R, B, K)`` (round, subject, class) and ``present``
``(R, B)`` bool (a subject lacking the anchor modality has no round) and returns ``(B, K)``.

- ``mean``: the paper's baseline, the mean of the present rounds' probabilities.
- ``confidence``: each round weighted by its confidence ``1 - H(p) / log K`` (normalised
  entropy), computed on **temperature-scaled** probabilities (one temperature per round,
  fitted on the validation split, :func:`fit_temperature`), so that a round that is
  over- or under-confident on held-out subjects is corrected before it is trusted. Every
  weight gets 0.05 added, so when every round is unsure (all near 0.5) the rule becomes
  the mean instead of handing the least unsure round the whole decision.
- ``validation``: fixed per-round weights learned on the validation split (inverse
  validation log-loss, normalised), renormalised over the rounds present for a subject.
  Rounds without a validation loss (an empty validation split) get equal weights.
- ``stacking`` (binary tasks): a logistic regression on the rounds' logits fitted on the
  validation split (:func:`fit_stacker`); a missing round contributes logit 0.

:func:`select_rule` picks the bundle's default rule on the validation split with the
one-standard-error rule (Breiman et al. 1984; Hastie et al., *Elements of Statistical
Learning* §7.10): the paper's ``mean`` unless another rule's per-subject log-loss is lower
by more than the standard error of the paired difference (stacking scored by
cross-validation inside the validation split, since it is fitted there). With a few dozen
validation subjects the rules' losses differ by less than their noise, and picking the
lowest one picks noise; the report says which rule and why.
"""
from __future__ import annotations

import math
from typing import Sequence, TypedDict

import numpy as np
import torch

from ..errors import ConfigError

RULES = ("mean", "confidence", "validation", "stacking")
#: Added to every confidence weight (unsure rounds everywhere -> the mean).
CONFIDENCE_PRIOR = 0.05


class Stacker(TypedDict):
    """The ``stacking`` rule's logistic regression on the rounds' logits, in round order."""

    weights: list[float]
    bias: float


class AggregationParameters(TypedDict):
    """The fitted per-round parameters :func:`aggregate` takes besides the rule (round order)."""

    round_weights: list[float]
    temperatures: list[float]
    stacker: "Stacker | None"


def aggregate(
    probabilities: torch.Tensor,
    present: torch.Tensor,
    rule: str = "mean",
    round_weights: "Sequence[float] | torch.Tensor | None" = None,
    temperatures: "Sequence[float] | None" = None,
    stacker: "Stacker | None" = None,
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
    temperatures
        ``(R,)`` temperatures for the ``confidence`` rule (default 1).
    stacker
        ``{"weights": [R floats], "bias": float}`` for the ``stacking`` rule.

    Returns
    -------
    torch.Tensor
        ``(B, K)`` probabilities; subjects with no round at all get a uniform distribution.
    """
    num_classes = probabilities.shape[-1]
    uniform = torch.full_like(probabilities[0], 1.0 / num_classes)
    anyone = present.any(dim=0)
    if rule == "stacking":
        z = _stacked_logit(probabilities, present, stacker)
        combined = torch.stack([1 - torch.sigmoid(z), torch.sigmoid(z)], dim=-1)
        return torch.where(anyone.unsqueeze(-1), combined, uniform)
    if rule == "confidence":
        probabilities = scale_temperature(probabilities, temperatures)
    weights = round_confidences(probabilities, present, rule, round_weights)
    total = weights.sum(dim=0, keepdim=True)
    safe_total = torch.where(total > 0, total, torch.ones_like(total))
    combined = (weights.unsqueeze(-1) * probabilities).sum(dim=0) / safe_total.squeeze(0).unsqueeze(-1)
    return torch.where((total.squeeze(0) > 0).unsqueeze(-1), combined, uniform)


def round_confidences(
    probabilities: torch.Tensor,
    present: torch.Tensor,
    rule: str = "mean",
    round_weights: "Sequence[float] | torch.Tensor | None" = None,
    temperatures: "Sequence[float] | None" = None,
    stacker: "Stacker | None" = None,
) -> torch.Tensor:
    """Un-normalised weight ``(R, B)`` of each round under ``rule`` (0 for absent rounds).

    For ``stacking`` the weight of a round is the absolute size of its contribution to the
    stacked logit.
    """
    present_f = present.to(probabilities.dtype)
    if rule == "mean":
        weights = torch.ones_like(present_f)
    elif rule == "confidence":
        num_classes = probabilities.shape[-1]
        p = scale_temperature(probabilities, temperatures).clamp_min(1e-12)
        entropy = -(p * p.log()).sum(dim=-1)
        weights = (1.0 - entropy / math.log(num_classes)).clamp_min(0.0) + CONFIDENCE_PRIOR
    elif rule == "validation":
        if round_weights is None:
            raise ConfigError("the 'validation' aggregation rule needs per-round weights")
        w = torch.as_tensor(round_weights, dtype=probabilities.dtype, device=probabilities.device)
        if w.shape != (probabilities.shape[0],):
            raise ConfigError(f"expected {probabilities.shape[0]} round weights, got {tuple(w.shape)}")
        weights = w.clamp_min(0).unsqueeze(1).expand_as(present_f)
    elif rule == "stacking":
        coef = _stacker_weights(stacker, probabilities)
        weights = (coef.unsqueeze(1) * _round_logits(probabilities)).abs()
    else:
        raise ConfigError(f"unknown aggregation rule {rule!r}; choose one of {', '.join(RULES)}")
    return weights * present_f


def scale_temperature(probabilities: torch.Tensor, temperatures: "Sequence[float] | None") -> torch.Tensor:
    """``softmax(log p / T_r)`` per round ``r`` (unchanged without temperatures)."""
    if temperatures is None:
        return probabilities
    t = torch.as_tensor(list(temperatures), dtype=probabilities.dtype, device=probabilities.device)
    return torch.softmax(probabilities.clamp_min(1e-12).log() / t.view(-1, 1, 1), dim=-1)


def validation_round_weights(log_losses: Sequence[float]) -> list[float]:
    """Weights from per-round validation log-losses: ``1 / loss``, normalised to sum 1.

    Any missing (NaN) loss — an empty validation split — gives equal weights instead of
    dividing by a made-up number.
    """
    losses = [float(x) for x in log_losses]
    if not losses:
        return []
    if any(math.isnan(x) for x in losses):
        return [1.0 / len(losses)] * len(losses)
    inverse = [1.0 / max(loss, 1e-3) for loss in losses]
    total = sum(inverse)
    return [w / total for w in inverse]


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Temperature ``T`` in [0.05, 20] minimising the log-loss of ``softmax(log p / T)`` (Guo et al. 2017).

    Returns 1 when fewer than 4 subjects or one class only.
    """
    from scipy.optimize import minimize_scalar

    probabilities, labels = np.asarray(probabilities, dtype=float), np.asarray(labels)
    keep = ~np.isnan(probabilities).any(axis=1)
    p, y = probabilities[keep], labels[keep]
    if len(y) < 4 or len(np.unique(y)) < 2:
        return 1.0
    log_p = np.log(np.clip(p, 1e-12, 1.0))

    def nll(log_t: float) -> float:
        z = log_p / math.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        log_soft = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return float(-log_soft[np.arange(len(y)), y].mean())

    best = minimize_scalar(nll, bounds=(math.log(0.05), math.log(20.0)), method="bounded")
    return float(math.exp(best.x))


def fit_stacker(probabilities: np.ndarray, present: np.ndarray, labels: np.ndarray) -> "Stacker | None":
    """Logistic regression (L2, C = 1) of the label on the rounds' logits; ``None`` if it cannot be fitted."""
    from sklearn.linear_model import LogisticRegression

    labels = np.asarray(labels)
    if probabilities.shape[-1] != 2 or len(labels) < 6 or len(np.unique(labels)) < 2:
        return None
    x = _features(probabilities, present)
    model = LogisticRegression(C=1.0, max_iter=2000).fit(x, labels)
    return {"weights": [float(w) for w in model.coef_[0]], "bias": float(model.intercept_[0])}


def stacking_cv_probabilities(probabilities: np.ndarray, present: np.ndarray, labels: np.ndarray,
                              folds: int = 5, groups: "Sequence[str] | None" = None) -> "np.ndarray | None":
    """Out-of-fold stacked probabilities ``(n, 2)`` inside one split (to score stacking fairly).

    ``groups`` (the participant of each sample) keeps a participant's visits in one fold.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    from ..training.splits import grouped_kfold, max_grouped_folds

    labels = np.asarray(labels)
    groups = list(groups) if groups is not None else [str(i) for i in range(len(labels))]
    if probabilities.shape[-1] != 2 or len(np.unique(labels)) < 2:
        return None
    k = int(min(folds, max_grouped_folds(labels, groups)))
    if k < 2:
        return None
    return cross_val_predict(LogisticRegression(C=1.0, max_iter=2000), _features(probabilities, present), labels,
                             cv=grouped_kfold(labels, groups, k, 0), method="predict_proba")


def select_rule(
    probabilities: np.ndarray,
    present: np.ndarray,
    labels: np.ndarray,
    round_weights: Sequence[float],
    temperatures: Sequence[float],
    stacker: "Stacker | None",
    groups: "Sequence[str] | None" = None,
) -> tuple[str, dict[str, float]]:
    """The default rule by the one-standard-error rule, and every rule's validation log-loss.

    ``groups``: the participant of each validation sample (stacking's out-of-fold scores keep
    a participant's visits in one fold).

    Returns
    -------
    tuple
        ``(rule, scores)``: ``mean`` unless the rule with the largest mean per-subject gain
        in log-loss over ``mean`` gains more than the standard error of that gain;
        ``scores`` maps each rule to its mean validation log-loss.
    """
    labels = np.asarray(labels)
    if len(labels) == 0 or len(np.unique(labels)) < 2:
        return "mean", {}
    p = torch.as_tensor(np.nan_to_num(probabilities, nan=0.5))
    mask = torch.as_tensor(present)
    rows = np.arange(len(labels))

    def subject_losses(probs: np.ndarray) -> np.ndarray:
        probs = np.clip(probs, 1e-7, 1.0)
        return -np.log((probs / probs.sum(axis=1, keepdims=True))[rows, labels.astype(int)])

    losses = {rule: subject_losses(aggregate(p, mask, rule, round_weights, temperatures).numpy())
              for rule in ("mean", "confidence", "validation")}
    if stacker is not None:
        stacked = stacking_cv_probabilities(np.nan_to_num(probabilities, nan=0.5), present, labels, groups=groups)
        if stacked is not None:
            losses["stacking"] = subject_losses(stacked)
    return one_standard_error_choice(losses, "mean"), {rule: float(v.mean()) for rule, v in losses.items()}


def one_standard_error_choice(losses: "dict[str, np.ndarray]", default: str) -> str:
    """``default`` unless another entry's mean loss is lower by more than one standard error.

    Parameters
    ----------
    losses
        Per-subject losses of each candidate, all on the same subjects.
    default
        The simplest candidate, kept unless another one is clearly better.
    """
    best, best_gain = default, 0.0
    for name, values in losses.items():
        if name == default:
            continue
        gain = losses[default] - values  # paired, per subject
        se = float(gain.std(ddof=1) / np.sqrt(len(gain))) if len(gain) > 1 else float("inf")
        if gain.mean() > se and gain.mean() > best_gain:
            best, best_gain = name, float(gain.mean())
    return best


def _round_logits(probabilities: torch.Tensor) -> torch.Tensor:
    p = probabilities[..., 1].clamp(1e-6, 1 - 1e-6)
    return (p / (1 - p)).log()


def _features(probabilities: np.ndarray, present: np.ndarray) -> np.ndarray:
    """``(n, R)`` round logits (0 for absent rounds)."""
    logits = _round_logits(torch.as_tensor(np.nan_to_num(probabilities, nan=0.5))).numpy()
    return (logits * np.asarray(present)).T


def _stacker_weights(stacker: "Stacker | None", probabilities: torch.Tensor) -> torch.Tensor:
    if stacker is None:
        raise _no_stacker()
    if probabilities.shape[-1] != 2:
        raise ConfigError("the 'stacking' aggregation rule is defined for two-class tasks only")
    coef = torch.as_tensor(stacker["weights"], dtype=probabilities.dtype, device=probabilities.device)
    if coef.shape != (probabilities.shape[0],):
        raise ConfigError(f"stacker has {coef.shape[0]} weights for {probabilities.shape[0]} rounds")
    return coef


def _stacked_logit(probabilities: torch.Tensor, present: torch.Tensor, stacker: "Stacker | None") -> torch.Tensor:
    if stacker is None:
        raise _no_stacker()
    coef = _stacker_weights(stacker, probabilities)
    logits = _round_logits(probabilities) * present.to(probabilities.dtype)
    return float(stacker["bias"]) + (coef.unsqueeze(1) * logits).sum(dim=0)


def _no_stacker() -> ConfigError:
    return ConfigError("the 'stacking' aggregation rule needs a stacker fitted on a validation split "
                       "(binary tasks with validation subjects of both classes)")
