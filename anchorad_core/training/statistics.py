"""Uncertainty of the reported figures: DeLong AUC confidence intervals and paired tests.

DeLong, DeLong & Clarke-Pearson (1988), in the fast midrank form of Sun & Xu (2014):
for scores of ``k`` methods on the same subjects, the AUCs and their covariance come from
the structural components of the Mann-Whitney statistic. A 95 % interval is
``AUC ± 1.96 · sd``; two methods on the same subjects are compared with
``z = (AUC_a − AUC_b) / sd(AUC_a − AUC_b)`` (two-sided p).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm, rankdata


@dataclass
class AUCWithCI:
    """An AUC with its DeLong standard error and 95 % interval."""

    auc: float
    se: float
    low: float
    high: float
    n: int

    def text(self) -> str:
        """``0.912 [0.871, 0.953]``."""
        if math.isnan(self.auc):
            return "n/a"
        return f"{self.auc:.3f} [{self.low:.3f}, {self.high:.3f}]"


def delong_covariance(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs ``(k,)`` and their DeLong covariance ``(k, k)`` for scores ``(k, n)`` of binary ``y``."""
    y = np.asarray(y).astype(bool)
    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    positive, negative = scores[:, y], scores[:, ~y]
    m, n = positive.shape[1], negative.shape[1]
    if m < 2 or n < 2:
        raise ValueError("DeLong needs at least two subjects of each class")
    tx = rankdata(positive, axis=1)
    ty = rankdata(negative, axis=1)
    tz = rankdata(np.concatenate([positive, negative], axis=1), axis=1)
    aucs = (tz[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * n)
    v01 = (tz[:, :m] - tx) / n
    v10 = 1.0 - (tz[:, m:] - ty) / m
    cov = np.atleast_2d(np.cov(v01)) / m + np.atleast_2d(np.cov(v10)) / n
    return aucs, cov


def auc_with_ci(y: np.ndarray, score: np.ndarray, level: float = 0.95) -> AUCWithCI:
    """AUC of ``score`` for binary ``y`` with a DeLong interval (NaN scores are left out)."""
    y, score = np.asarray(y), np.asarray(score, dtype=float)
    keep = ~np.isnan(score)
    y, score = y[keep], score[keep]
    if len(np.unique(y)) < 2 or min(np.bincount(y.astype(int), minlength=2)) < 2:
        return AUCWithCI(math.nan, math.nan, math.nan, math.nan, int(keep.sum()))
    aucs, cov = delong_covariance(y, score[None])
    se = float(math.sqrt(max(cov[0, 0], 0.0)))
    half = norm.ppf(0.5 + level / 2) * se
    auc = float(aucs[0])
    return AUCWithCI(auc, se, max(0.0, auc - half), min(1.0, auc + half), int(len(y)))


@dataclass
class PairedTest:
    """DeLong test of two methods' AUCs on the same subjects."""

    a: str
    b: str
    auc_a: float
    auc_b: float
    difference: float
    low: float
    high: float
    p_value: float
    n: int

    def text(self) -> str:
        """``anchored − late fusion: +0.031 [−0.004, +0.066], p = 0.08 (n = 132)``."""
        return (f"{self.a} − {self.b}: {self.difference:+.3f} [{self.low:+.3f}, {self.high:+.3f}], "
                f"p = {self.p_value:.3g} (n = {self.n})")


def paired_delong(y: np.ndarray, score_a: np.ndarray, score_b: np.ndarray, a: str = "a", b: str = "b",
                  level: float = 0.95) -> PairedTest:
    """Compare two scores on the subjects both scored (DeLong, two-sided)."""
    y = np.asarray(y)
    score_a, score_b = np.asarray(score_a, dtype=float), np.asarray(score_b, dtype=float)
    keep = ~np.isnan(score_a) & ~np.isnan(score_b)
    aucs, cov = delong_covariance(y[keep], np.stack([score_a[keep], score_b[keep]]))
    difference = float(aucs[0] - aucs[1])
    variance = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    se = math.sqrt(max(variance, 1e-12))
    z = difference / se
    half = norm.ppf(0.5 + level / 2) * se
    return PairedTest(a, b, float(aucs[0]), float(aucs[1]), difference, difference - half, difference + half,
                      float(2 * norm.sf(abs(z))), int(keep.sum()))
