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
