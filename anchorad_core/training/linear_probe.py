"""A linear probe on frozen features, fitted as a regularised logistic regression.

The probe is the first step of every phase-1 recipe that starts from a pretrained backbone
(linear probing, then fine-tuning: Kumar et al., ICLR 2022). Features are standardised on
the training subjects and the result is written into the model's ``nn.Linear`` head with the
standardisation folded in, so the head stays a plain linear layer on the raw pooled feature.

Model selection (the L2 strength and which readout blocks to read) is a cross-validation
on the training subjects:

* A backbone's pooled feature is made of *blocks* (:attr:`ModalityBackbone.pooled_blocks`:
  the token mean, a connectivity readout, a spatial grid, a number readout, ...). One block
  can be pure noise for a task — the fMRI token mean carries nothing of a connectivity
  change, and 64 noise features next to 17 informative ones cost the probe 0.03–0.07 AUC on
  the development cohorts — so the candidates are every block together, each block alone
  and (with three or more) each block left out.
* Each candidate and strength is scored by its out-of-fold log-loss over the training
  subjects (stratified ``folds``-fold). The **one-standard-error rule** (Hastie, Tibshirani &
  Friedman, ESL §7.10) keeps all blocks unless a subset beats them by more than one
  standard error of its per-subject loss: choosing among subsets on ~100 subjects is noisy,
  and without the rule the clinical probe lost 0.04 AUC by dropping a block it needed.
* The validation subjects are left for what they were kept for: an honest validation loss
  of the chosen probe (phase 2 only replaces the probe when it beats that loss).

Dropped blocks get zero weight. With too few training subjects for the inner
cross-validation (fewer than 2 per class), the strength is chosen on the validation
log-loss over all blocks, as before.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

#: Inverse L2 strengths tried (scikit-learn's ``C``).
C_GRID: tuple[float, ...] = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)

#: Folds of the inner cross-validation that picks the strength and the blocks.
INNER_FOLDS = 5


@dataclass(frozen=True)
class ProbeFit:
    """What :func:`fit_linear_probe` chose."""

    #: Inverse L2 strength.
    C: float
    #: Names of the readout blocks read (the others have zero weight).
    blocks: list[str]
    #: Log-loss of the fitted probe on the validation subjects (NaN without any).
    val_log_loss: float
    #: Out-of-fold log-loss of the choice on the training subjects (NaN when chosen on validation).
    cv_log_loss: float

    def to_dict(self) -> dict[str, object]:
        """Plain form (training histories, ``results.json``)."""
        return asdict(self)


@dataclass(frozen=True)
class _Candidate:
    """One (block subset, strength) with its inner cross-validated log-loss."""

    blocks: tuple[int, ...]
    c: float
    loss: float
    se: float


def block_subsets(n_blocks: int) -> list[tuple[int, ...]]:
    """Candidate block subsets: all first, then each block alone, then (3+) each one left out."""
    every = tuple(range(n_blocks))
    if n_blocks == 1:
        return [every]
    subsets = [every] + [(i,) for i in every]
    if n_blocks > 2:
        subsets += [tuple(j for j in every if j != i) for i in every]
    return subsets


def fit_linear_probe(
    head: nn.Linear,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    grid: Sequence[float] = C_GRID,
    blocks: "Sequence[tuple[str, int]] | None" = None,
    folds: int = INNER_FOLDS,
) -> ProbeFit:
    """Fit ``head`` in place.

    Parameters
    ----------
    head
        The modality's ``Linear(pooled_width, classes)`` head, overwritten.
    x_train, y_train, x_val, y_val
        Pooled features and labels of the training and validation subjects.
    grid
        Inverse L2 strengths tried.
    blocks
        ``(name, width)`` of the consecutive blocks of the pooled feature (widths sum to its
        width); ``None`` is one block.
    folds
        Folds of the inner cross-validation over the training subjects.

    Returns
    -------
    ProbeFit
        The strength, the blocks read and the probe's validation and inner-CV log-loss.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    classes = head.out_features
    width = x_train.shape[1]
    named = list(blocks) if blocks else [("pooled", width)]
    if sum(w for _, w in named) != width:
        raise ValueError(f"readout blocks {named} do not add up to the pooled width {width}")
    starts = np.cumsum([0] + [w for _, w in named])
    mean = x_train.mean(axis=0)
    scale = x_train.std(axis=0) + 1e-6
    z_train, z_val = (x_train - mean) / scale, (x_val - mean) / scale
    y_train = np.asarray(y_train)

    def columns(subset: tuple[int, ...]) -> np.ndarray:
        return np.concatenate([np.arange(starts[i], starts[i + 1]) for i in subset])

    def fit(z: np.ndarray, y: np.ndarray, c: float) -> LogisticRegression:
        return LogisticRegression(C=c, max_iter=5000).fit(z, y)

    def val_loss(model: LogisticRegression, cols: np.ndarray) -> float:
        if not len(y_val):
            return float("nan")
        return float(log_loss(y_val, model.predict_proba(z_val[:, cols]), labels=list(range(classes))))

    counts = np.bincount(y_train, minlength=classes) if len(y_train) else np.zeros(classes, int)
    inner = min(folds, int(counts.min()))
    if len(np.unique(y_train)) == classes and inner >= 2:
        best = _cross_validated_choice(z_train, y_train, block_subsets(len(named)), columns, grid, inner, classes)
        cols = columns(best.blocks)
        model = fit(z_train[:, cols], y_train, best.c)
        chosen, c, cv_loss = best.blocks, best.c, best.loss
        loss = val_loss(model, cols)
    else:  # too few subjects per class to cross-validate: strength on validation, all blocks
        chosen, cols, cv_loss = tuple(range(len(named))), np.arange(width), float("nan")
        found: tuple[float, float, LogisticRegression] | None = None
        for c in grid:
            model = fit(z_train, y_train, c)
            loss = val_loss(model, cols) if len(np.unique(y_train)) == classes else float("nan")
            if found is None or (not np.isnan(loss) and (np.isnan(found[1]) or loss < found[1])):
                found = (c, loss, model)
        assert found is not None
        c, loss, model = found
    coef = np.zeros((model.coef_.shape[0], width))
    coef[:, cols] = model.coef_
    intercept = model.intercept_
    if coef.shape[0] == 1:  # binary: softmax([-s/2, s/2]) == sigmoid(s)
        coef = np.concatenate([-coef / 2, coef / 2])
        intercept = np.concatenate([-intercept / 2, intercept / 2])
    weight = coef / scale
    bias = intercept - weight @ mean
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(weight, dtype=head.weight.dtype))
        head.bias.copy_(torch.as_tensor(bias, dtype=head.bias.dtype))
    return ProbeFit(C=float(c), blocks=[named[i][0] for i in chosen], val_log_loss=float(loss), cv_log_loss=float(cv_loss))


def _cross_validated_choice(
    z: np.ndarray,
    y: np.ndarray,
    subsets: list[tuple[int, ...]],
    columns: Callable[[tuple[int, ...]], np.ndarray],
    grid: Sequence[float],
    folds: int,
    classes: int,
) -> _Candidate:
    """The (subset, strength) of least out-of-fold log-loss, all blocks kept by the one-SE rule."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    splits = list(StratifiedKFold(folds, shuffle=True, random_state=0).split(z, y))
    scored = []
    for subset in subsets:
        z_subset = z[:, columns(subset)]  # sliced once per subset, not per strength and fold
        for c in grid:
            per_subject = np.zeros(len(y))
            for fit_idx, held_idx in splits:
                model = LogisticRegression(C=c, max_iter=5000).fit(z_subset[fit_idx], y[fit_idx])
                proba = np.zeros((len(held_idx), classes))
                proba[:, model.classes_] = model.predict_proba(z_subset[held_idx])
                per_subject[held_idx] = -np.log(np.clip(proba[np.arange(len(held_idx)), y[held_idx]], 1e-12, None))
            scored.append(_Candidate(subset, float(c), float(per_subject.mean()),
                                     float(per_subject.std() / np.sqrt(len(y)))))
    best = min(scored, key=lambda s: s.loss)
    every = min((s for s in scored if s.blocks == subsets[0]), key=lambda s: s.loss)
    return every if every.loss <= best.loss + best.se else best
