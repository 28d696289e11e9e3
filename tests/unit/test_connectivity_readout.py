"""The fMRI backbone's connectivity readout and the sMRI backbone's spatial-pyramid readout."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from anchorad_core.backbones.brainjepa.connectivity_readout import gradient_groups, network_similarity
from anchorad_core.backbones.registry import build_backbone


def test_gradient_groups_are_deterministic_and_follow_the_gradients():
    rng = np.random.default_rng(0)
    centres = np.array([[5.0, 0.0], [0.0, 5.0], [-5.0, -5.0]])
    rows = np.concatenate([c + rng.normal(0, 0.3, (10, 2)) for c in centres])
    groups = gradient_groups(rows, 3)
    assert groups.tolist() == [0] * 10 + [1] * 10 + [2] * 10  # numbered by first ROI
    assert np.array_equal(groups, gradient_groups(rows, 3))
    with pytest.raises(ValueError):
        gradient_groups(rows, 1)


def test_network_similarity_sees_a_coherent_network():
    torch.manual_seed(0)
    groups = torch.tensor([0] * 6 + [1] * 6)
    shared = torch.randn(1, 1, 40)
    coherent = torch.cat([shared.expand(1, 6, 40) + 0.1 * torch.randn(1, 6, 40), torch.randn(1, 6, 40)], dim=1)
    incoherent = torch.randn(1, 12, 40)
    high, low = network_similarity(coherent, groups, 2), network_similarity(incoherent, groups, 2)
    assert high.shape == (1, 4)
    assert float(high[0, 0]) > 0.3 > float(low[0, 0])  # within network 0
    # a correlation: invariant to the scale and to the offset of each ROI's representation
    assert torch.allclose(network_similarity(3.0 * coherent, groups, 2), high, atol=1e-5)
    offsets = 5.0 * torch.randn(1, 12, 1)
    assert torch.allclose(network_similarity(coherent + offsets, groups, 2), high, atol=1e-4)


def test_brainjepa_connectivity_readout_layout():
    backbone = build_backbone("brainjepa-demo").eval()
    assert backbone.pooled_width == 64 + 2 * 17
    assert backbone.roi_groups.shape == (400,) and set(backbone.roi_groups.tolist()) == set(range(17))
    series = torch.randn(2, 1, 400, 48)
    with torch.no_grad():
        out = backbone({"series": series})
        tokens, _ = backbone.encode(series)
    assert out.pooled.shape == (2, 98)
    assert torch.allclose(out.pooled[:, :64], backbone.fc_norm(tokens.mean(1)), atol=1e-5)
    assert out.pooled[:, 64:].abs().max() <= 1.0 + 1e-5  # correlations
    # appended tokens change both parts of the readout (through attention)
    extras = torch.randn(2, 3, 64)
    with torch.no_grad():
        with_extras = backbone({"series": series}, extras)
    change = (with_extras.pooled - out.pooled).abs()
    assert change[:, :64].max() > 1e-4 and change[:, 64:].max() > 0


def test_uniformer_pyramid_readout_layout():
    backbone = build_backbone("brainmvp-demo").eval()
    assert backbone.pooled_width == 48 + 8 * (8 + 16)
    torch.manual_seed(0)
    image = torch.randn(2, 1, 64, 64, 64)
    with torch.no_grad():
        out = backbone({"image": image})
        stages = backbone.forward_stages(image)
        with_extras = backbone({"image": image}, torch.randn(2, 3, backbone.extra_token_width))
    assert torch.allclose(out.pooled[:, :48], out.tokens.mean(1), atol=1e-5)
    expected = torch.cat([F.adaptive_avg_pool3d(stages.x1, 2).flatten(1), F.adaptive_avg_pool3d(stages.x2, 2).flatten(1)], 1)
    assert torch.allclose(out.pooled[:, 48:], expected, atol=1e-5)
    # appended tokens join the attention stages only: the conv-stage pyramid is unchanged
    assert torch.allclose(with_extras.pooled[:, 48:], out.pooled[:, 48:], atol=1e-6)
    assert (with_extras.pooled[:, :48] - out.pooled[:, :48]).abs().max() > 1e-4
