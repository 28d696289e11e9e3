"""DeLong AUC intervals and paired tests against hand-computed cases."""
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from anchorad_core.training.statistics import auc_with_ci, delong_covariance, paired_delong


def test_delong_variance_matches_a_hand_computed_case():
    # positives 0.9, 0.4; negatives 0.6, 0.1.  V10 = [1, 0.5], V01 = [0.5, 1]
    # var = var(V10)/m + var(V01)/n = 0.125/2 + 0.125/2 = 0.125
    y = np.array([1, 1, 0, 0])
    aucs, cov = delong_covariance(y, np.array([[0.9, 0.4, 0.6, 0.1]]))
    assert aucs[0] == pytest.approx(0.75)
    assert cov[0, 0] == pytest.approx(0.125)


def test_auc_equals_sklearn_and_interval_contains_it():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    score = y + rng.normal(0, 1.0, 200)
    ci = auc_with_ci(y, score)
    assert ci.auc == pytest.approx(roc_auc_score(y, score))
    assert ci.low < ci.auc < ci.high
    assert 0.02 < ci.high - ci.low < 0.3


def test_nan_scores_are_left_out():
    y = np.array([1, 1, 1, 0, 0, 0])
    score = np.array([0.9, 0.8, np.nan, 0.2, 0.1, np.nan])
    ci = auc_with_ci(y, score)
    assert ci.n == 4 and ci.auc == pytest.approx(1.0)


def test_paired_test_detects_a_better_score_and_not_a_copy():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    good = y * 2.0 + rng.normal(0, 1.0, 300)
    weak = y * 0.3 + rng.normal(0, 1.0, 300)
    better = paired_delong(y, good, weak, "good", "weak")
    assert better.difference > 0.1 and better.p_value < 1e-4
    assert better.low < better.difference < better.high
    same = paired_delong(y, good, good.copy())
    assert same.difference == 0.0 and same.p_value == pytest.approx(1.0)


def test_one_class_gives_nan_not_an_error():
    ci = auc_with_ci(np.ones(5, dtype=int), np.arange(5.0))
    assert math.isnan(ci.auc)

