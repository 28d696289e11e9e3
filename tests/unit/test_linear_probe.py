"""The phase-1 linear probe: a logistic regression folded into the model's Linear head."""
import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from anchorad_core.training.linear_probe import block_subsets, fit_linear_probe


def _data(n, d, seed, signal=3.0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(0, 1, (n, d)) * rng.uniform(0.1, 10, d) + 5.0  # unscaled, offset features
    x[:, 0] += signal * y * x[:, 0].std() / 3
    return x.astype(np.float32), y


def _probabilities(head, x):
    with torch.no_grad():
        return torch.softmax(head(torch.from_numpy(x)), -1).numpy()


def test_head_reproduces_the_standardised_logistic_regression():
    x, y = _data(80, 6, 0)
    xv, yv = _data(40, 6, 1)
    head = torch.nn.Linear(6, 2)
    chosen = fit_linear_probe(head, x, y, xv, yv, grid=(0.5,))
    mean, scale = x.mean(0), x.std(0) + 1e-6
    reference = LogisticRegression(C=0.5, max_iter=5000).fit((x - mean) / scale, y)
    np.testing.assert_allclose(_probabilities(head, xv), reference.predict_proba((xv - mean) / scale), atol=1e-5)
    assert chosen.C == 0.5 and chosen.blocks == ["pooled"]
    assert chosen.val_log_loss == pytest.approx(
        -np.mean(np.log(reference.predict_proba((xv - mean) / scale)[np.arange(40), yv])), rel=1e-4)


def test_strength_is_chosen_by_cross_validation_on_the_training_subjects():
    x, y = _data(40, 40, 2)  # few subjects, many features: strong L2 should win
    head = torch.nn.Linear(40, 2)
    chosen = fit_linear_probe(head, x, y, x[:0], y[:0], grid=(0.003, 100.0))
    assert chosen.C == 0.003
    assert np.isfinite(chosen.cv_log_loss) and np.isnan(chosen.val_log_loss)


def test_a_noise_block_is_left_out_with_zero_weight():
    rng = np.random.default_rng(3)
    n = 120
    y = rng.integers(0, 2, n)
    informative = rng.normal(0, 1, (n, 4)) + 1.5 * y[:, None]
    noise = rng.normal(0, 1, (n, 80))
    x = np.concatenate([noise, informative], axis=1).astype(np.float32)
    head = torch.nn.Linear(84, 2)
    chosen = fit_linear_probe(head, x, y, x[:0], y[:0], blocks=[("noise", 80), ("signal", 4)])
    assert chosen.blocks == ["signal"]
    assert torch.all(head.weight[:, :80] == 0) and torch.all(head.weight[:, 80:] != 0)


def test_all_blocks_are_kept_when_each_carries_signal():
    rng = np.random.default_rng(4)
    n = 120
    y = rng.integers(0, 2, n)
    x = (rng.normal(0, 1, (n, 6)) + 0.8 * y[:, None]).astype(np.float32)
    head = torch.nn.Linear(6, 2)
    chosen = fit_linear_probe(head, x, y, x[:0], y[:0], blocks=[("a", 3), ("b", 3)])
    assert chosen.blocks == ["a", "b"]


def test_too_few_subjects_fall_back_to_the_validation_choice():
    x, y = _data(3, 4, 5)
    y = np.array([0, 1, 1])  # one subject of class 0: no inner cross-validation
    xv, yv = _data(30, 4, 6)
    chosen = fit_linear_probe(torch.nn.Linear(4, 2), x, y, xv, yv, grid=(0.01, 1.0), blocks=[("a", 2), ("b", 2)])
    assert chosen.blocks == ["a", "b"] and np.isnan(chosen.cv_log_loss) and np.isfinite(chosen.val_log_loss)


def test_blocks_must_cover_the_pooled_width():
    x, y = _data(20, 5, 7)
    with pytest.raises(ValueError, match="pooled width 5"):
        fit_linear_probe(torch.nn.Linear(5, 2), x, y, x, y, blocks=[("a", 2), ("b", 2)])


def test_candidate_subsets():
    assert block_subsets(1) == [(0,)]
    assert block_subsets(2) == [(0, 1), (0,), (1,)]
    assert block_subsets(3) == [(0, 1, 2), (0,), (1,), (2,), (1, 2), (0, 2), (0, 1)]
