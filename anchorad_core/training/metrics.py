"""Classification metrics (scikit-learn) and their mean ± sd over folds."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, roc_auc_score

METRICS = ("acc", "auc", "sensitivity", "specificity", "f1")


def binary_metrics(y_true: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """ACC, AUC, sensitivity, specificity and F1 of class 1 vs class 0.

    Rows whose probabilities are NaN (no prediction: the subject lacked the modality) are
    left out; ``n`` says how many subjects were scored. AUC is NaN when only one class is present.
    """
    y_true = np.asarray(y_true)
    probabilities = np.asarray(probabilities, dtype=float)
    keep = ~np.isnan(probabilities).any(axis=1)
    y, p = y_true[keep], probabilities[keep, 1]
    result: dict[str, float] = {"n": int(keep.sum())}
    if len(y) == 0:
        return {**result, **{m: math.nan for m in METRICS}}
    y_pred = (p >= 0.5).astype(int)
    tn, fp, fn, tp = confusion_matrix(y, y_pred, labels=[0, 1]).ravel()
    result["acc"] = float(accuracy_score(y, y_pred))
    result["auc"] = float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else math.nan
    result["sensitivity"] = float(tp / (tp + fn)) if tp + fn else math.nan
    result["specificity"] = float(tn / (tn + fp)) if tn + fp else math.nan
    result["f1"] = float(f1_score(y, y_pred, zero_division=0))
    return result


def summarise(folds: Sequence[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and sample sd of each metric over folds (NaN folds ignored)."""
    summary = {}
    for metric in METRICS:
        values = np.array([f[metric] for f in folds if not math.isnan(f.get(metric, math.nan))])
        summary[metric] = {
            "mean": float(values.mean()) if len(values) else math.nan,
            "sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0 if len(values) else math.nan,
        }
    return summary
