"""A linear probe on frozen features, fitted as a regularised logistic regression.

The probe is the first step of every phase-1 recipe that starts from a pretrained backbone
(linear probing, then fine-tuning: Kumar et al., ICLR 2022). Features are standardised on
the training subjects, the L2 strength is chosen on the validation subjects (log-loss), and
the result is written into the model's ``nn.Linear`` head with the standardisation folded
in, so the head stays a plain linear layer on the raw pooled feature.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

#: Inverse L2 strengths tried (scikit-learn's ``C``).
C_GRID: tuple[float, ...] = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


def fit_linear_probe(
    head: nn.Linear,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    grid: Sequence[float] = C_GRID,
) -> dict[str, float]:
    """Fit ``head`` in place; returns the chosen ``C`` and its validation log-loss."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    classes = head.out_features
    mean = x_train.mean(axis=0)
    scale = x_train.std(axis=0) + 1e-6
    z_train, z_val = (x_train - mean) / scale, (x_val - mean) / scale
    best: tuple[float, float, LogisticRegression] | None = None
    for c in grid:
        model = LogisticRegression(C=c, max_iter=5000).fit(z_train, y_train)
        if len(y_val) and len(np.unique(y_train)) == classes:
            loss = float(log_loss(y_val, model.predict_proba(z_val), labels=list(range(classes))))
        else:
            loss = float("nan")
        if best is None or (not np.isnan(loss) and (np.isnan(best[1]) or loss < best[1])):
            best = (c, loss, model)
    assert best is not None
    c, loss, model = best
    coef, intercept = model.coef_, model.intercept_
    if coef.shape[0] == 1:  # binary: softmax([-s/2, s/2]) == sigmoid(s)
        coef = np.concatenate([-coef / 2, coef / 2])
        intercept = np.concatenate([-intercept / 2, intercept / 2])
    weight = coef / scale
    bias = intercept - weight @ mean
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(weight, dtype=head.weight.dtype))
        head.bias.copy_(torch.as_tensor(bias, dtype=head.bias.dtype))
    return {"C": c, "val_log_loss": loss}
