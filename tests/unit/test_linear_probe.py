"""The phase-1 linear probe: a logistic regression folded into the model's Linear head."""
import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from anchorad_core.training.linear_probe import fit_linear_probe


def _data(n, d, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(0, 1, (n, d)) * rng.uniform(0.1, 10, d) + 5.0  # unscaled, offset features
    x[:, 0] += 3.0 * y
    return x.astype(np.float32), y


def test_head_reproduces_the_standardised_logistic_regression():
    x, y = _data(80, 6, 0)
    xv, yv = _data(40, 6, 1)
    head = torch.nn.Linear(6, 2)
    chosen = fit_linear_probe(head, x, y, xv, yv, grid=(0.5,))
    mean, scale = x.mean(0), x.std(0) + 1e-6
    reference = LogisticRegression(C=0.5, max_iter=5000).fit((x - mean) / scale, y)
    expected = reference.predict_proba((xv - mean) / scale)
    with torch.no_grad():
        got = torch.softmax(head(torch.from_numpy(xv)), -1).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert chosen["C"] == 0.5


def test_strength_is_chosen_on_validation_log_loss():
    x, y = _data(30, 40, 2)  # few subjects, many features: strong L2 should win
    xv, yv = _data(200, 40, 3)
    head = torch.nn.Linear(40, 2)
    chosen = fit_linear_probe(head, x, y, xv, yv, grid=(0.003, 100.0))
    assert chosen["C"] == 0.003
