"""Training a head in standardised coordinates: same function, well-scaled Adam steps, plain Linear after."""
import pytest
import torch
from torch import nn

from anchorad_core.training.standardised_head import StandardisedHead, standardised_head


def _features(n=64):
    g = torch.Generator().manual_seed(0)
    spreads = torch.tensor([5e-4, 1e-2, 1.0, 40.0])
    return 0.99 + torch.randn(n, 4, generator=g) * spreads, spreads


def test_the_stand_in_computes_the_same_logits_and_writes_back_exactly():
    x, _ = _features()
    head = nn.Linear(4, 2)
    before = head(x).detach()
    weight = head.weight.detach().clone()
    with standardised_head(nn.ModuleDict({"h": head}), "h", x) as stand_in:
        assert isinstance(stand_in, StandardisedHead)
        torch.testing.assert_close(stand_in(x), before, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(head.weight, weight, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(head(x), before, rtol=1e-4, atol=1e-4)


def test_the_plain_linear_is_back_in_place_with_the_trained_weights():
    x, _ = _features()
    owner = nn.Module()
    owner.head = nn.Linear(4, 2)
    original = owner.head
    with standardised_head(owner, "head", x) as stand_in:
        assert owner.head is stand_in
        with torch.no_grad():
            stand_in.weight.add_(0.5)
        expected = stand_in(x).detach()
    assert owner.head is original and isinstance(owner.head, nn.Linear)
    torch.testing.assert_close(owner.head(x), expected, rtol=1e-4, atol=1e-4)


def test_one_adam_step_moves_every_feature_s_contribution_alike():
    """On the raw head Adam's step of ~lr per weight moves a 40-sigma feature's logit 8e4x more
    than a 5e-4-sigma one's; in standardised coordinates they move alike."""
    x, spreads = _features(256)
    y = (x[:, 2] > 0.99).long()

    def logit_change_per_feature(train_standardised: bool) -> torch.Tensor:
        owner = nn.Module()
        owner.head = nn.Linear(4, 2)
        nn.init.zeros_(owner.head.weight)
        context = standardised_head(owner, "head", x) if train_standardised else None
        module = context.__enter__() if context else owner.head
        optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)
        nn.functional.cross_entropy(module(x), y).backward()
        optimizer.step()
        if context:
            context.__exit__(None, None, None)
        return (owner.head.weight[1] - owner.head.weight[0]).abs().detach() * spreads

    raw, standardised = logit_change_per_feature(False), logit_change_per_feature(True)
    assert raw.max() / raw.min() > 1e4
    assert standardised.max() / standardised.min() < 10


def test_constant_features_and_bad_heads():
    x = torch.ones(10, 3)
    head = nn.Linear(3, 2)
    before = head(x).detach()
    with standardised_head(nn.ModuleDict({"h": head}), "h", x) as stand_in:
        torch.testing.assert_close(stand_in(x), before)
    with pytest.raises(TypeError, match="not an nn.Linear"):
        with standardised_head(nn.ModuleDict({"h": nn.Identity()}), "h", x):
            pass
