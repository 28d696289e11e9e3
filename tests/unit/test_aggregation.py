"""Aggregation rules of the anchor rounds."""
import pytest
import torch

from anchorad_core.errors import ConfigError
from anchorad_core.fusion.aggregation import aggregate, validation_round_weights

P = torch.tensor([[[0.9, 0.1]], [[0.4, 0.6]], [[0.5, 0.5]]])  # 3 rounds, 1 subject


def test_mean_of_present_rounds():
    present = torch.tensor([[True], [True], [False]])
    torch.testing.assert_close(aggregate(P, present, "mean"), torch.tensor([[0.65, 0.35]]))


def test_confidence_weights_sure_rounds_more_and_ignores_undecided():
    present = torch.ones(3, 1, dtype=torch.bool)
    out = aggregate(P, present, "confidence")
    mean = aggregate(P, present, "mean")
    assert out[0, 0] > mean[0, 0]  # the confident round (0.9) pulls harder
    torch.testing.assert_close(out.sum(-1), torch.ones(1))


def test_validation_weights_and_renormalisation_over_present_rounds():
    present = torch.tensor([[True], [True], [False]])
    out = aggregate(P, present, "validation", [0.75, 0.25, 5.0])
    torch.testing.assert_close(out, torch.tensor([[0.775, 0.225]]))
    assert validation_round_weights([0.5, 1.0]) == pytest.approx([2 / 3, 1 / 3])


def test_no_round_gives_uniform():
    present = torch.zeros(3, 1, dtype=torch.bool)
    torch.testing.assert_close(aggregate(P, present, "confidence"), torch.tensor([[0.5, 0.5]]))


def test_unknown_rule_is_a_clear_error():
    with pytest.raises(ConfigError, match="unknown aggregation rule"):
        aggregate(P, torch.ones(3, 1, dtype=torch.bool), "median")


def test_unsure_rounds_fall_back_to_the_mean_not_to_one_round():
    unsure = torch.tensor([[[0.49, 0.51]], [[0.52, 0.48]], [[0.50, 0.50]]])
    present = torch.ones(3, 1, dtype=torch.bool)
    from anchorad_core.fusion.aggregation import round_confidences

    w = round_confidences(unsure, present, "confidence")[:, 0]
    assert float(w.max() / w.sum()) < 0.4  # it was 1.00 with entropy weights alone
    torch.testing.assert_close(aggregate(unsure, present, "confidence"), aggregate(unsure, present, "mean"),
                               atol=2e-3, rtol=0)


def test_empty_validation_split_gives_equal_weights_not_a_division():
    assert validation_round_weights([float("nan"), 0.4]) == [0.5, 0.5]


def test_temperature_fit_recovers_overconfidence():
    import numpy as np

    from anchorad_core.fusion.aggregation import fit_temperature

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    x = (2 * y - 1) * 1.0 + rng.normal(0, 1, 400)  # the calibrated logit is 2x
    p1 = 1 / (1 + np.exp(-6.0 * x))  # three times too confident
    t = fit_temperature(np.stack([1 - p1, p1], 1), y)
    assert 2.4 < t < 3.6


def test_stacking_learns_to_ignore_a_useless_round_and_selection_prefers_it():
    import numpy as np

    from anchorad_core.fusion.aggregation import fit_stacker, select_rule

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    good = 1 / (1 + np.exp(-((2 * y - 1) * 1.5 + rng.normal(0, 1, 200))))
    noise = rng.uniform(0.01, 0.99, 200)  # a confident but useless round
    probs = np.stack([np.stack([1 - good, good], 1), np.stack([1 - noise, noise], 1)])
    present = np.ones((2, 200), dtype=bool)
    stacker = fit_stacker(probs, present, y)
    assert abs(stacker["weights"][0]) > 5 * abs(stacker["weights"][1])
    rule, scores = select_rule(probs, present, y, [0.5, 0.5], [1.0, 1.0], stacker)
    assert rule == "stacking" and scores["stacking"] < scores["mean"]
    out = aggregate(torch.as_tensor(probs), torch.as_tensor(present), "stacking", stacker=stacker)
    torch.testing.assert_close(out.sum(-1), torch.ones(200, dtype=out.dtype))


def test_stacking_without_a_stacker_is_a_clear_error():
    with pytest.raises(ConfigError, match="stacker"):
        aggregate(P, torch.ones(3, 1, dtype=torch.bool), "stacking")


def test_selection_keeps_the_mean_unless_another_rule_is_better_by_more_than_one_standard_error():
    import numpy as np

    from anchorad_core.fusion.aggregation import one_standard_error_choice

    rng = np.random.default_rng(3)
    base = rng.uniform(0.3, 0.9, 40)
    z = rng.normal(0, 1, 40)
    z = (z - z.mean()) / z.std(ddof=1)
    noisy = base - (0.02 + 0.3 * z)  # lower by 0.02 on average; SE of the gain 0.3 / sqrt(40) = 0.047
    clear = base - (0.2 + 0.05 * z)  # lower by 0.2; SE 0.008
    assert noisy.mean() < base.mean()
    assert one_standard_error_choice({"mean": base, "confidence": noisy}, "mean") == "mean"
    assert one_standard_error_choice({"mean": base, "confidence": noisy, "stacking": clear}, "mean") == "stacking"
    assert one_standard_error_choice({"mean": base}, "mean") == "mean"
