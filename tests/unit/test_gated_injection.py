"""The gated injection of H_a beyond its identity at initialisation.

That an anchored pass starts as the anchor alone, exactly, and that opening the gates changes
the output is checked for every backbone family in ``test_backbone_contract.py``
(``test_gated_round_starts_as_the_anchor_alone``). Here: the gates get a gradient from the
first step, and pooling over H_a is an option.
"""
import pytest
import torch

from anchorad_core.backbones.registry import build_backbone
from anchorad_core.fusion.anchored_round import AnchoredRound
from anchorad_core.fusion.qformer import AuxiliaryFeatures
from anchorad_core.modality import Modality

rng = torch.Generator().manual_seed(0)


def _samples(modality, backbone):
    if modality is Modality.SMRI:
        return [torch.rand(64, 64, 64, generator=rng).numpy() for _ in range(2)]
    return [torch.randn(backbone.n_rois, backbone.n_frames, generator=rng).numpy() for _ in range(2)]


def _aux(anchor):
    aux = {}
    for m in Modality:
        if m is not anchor:
            tokens = torch.randn(2, 5, 12, generator=rng)
            mask = torch.ones(2, 5, dtype=torch.bool)
            aux[m] = AuxiliaryFeatures(tokens, mask, torch.tensor([True, m is not Modality.GENETICS]))
    return aux


@pytest.fixture(scope="module")
def backbones():
    return {
        "uniformer": (Modality.SMRI, build_backbone("brainmvp-demo", load_weights=False)),
        "brainjepa": (Modality.FMRI, build_backbone("brainjepa-demo", load_weights=False)),
    }


def test_gates_get_gradient_from_the_first_step(backbones):
    anchor, backbone = backbones["brainjepa"]
    round_ = AnchoredRound(anchor, {m: 12 for m in Modality if m is not anchor}, backbone.extra_token_width,
                           backbone.pooled_width, num_queries=3, num_heads=2, qformer_width=16,
                           attention_heads=backbone.attention_heads)
    out = round_(backbone, backbone.collate(_samples(anchor, backbone)), _aux(anchor))
    out.logits.sum().backward()
    assert all(g.grad is not None and g.grad.abs().sum() > 0 for g in round_.gates)


def test_pool_extra_option_reads_h_a(backbones):
    anchor, backbone = backbones["uniformer"]
    round_ = AnchoredRound(anchor, {m: 12 for m in Modality if m is not anchor}, backbone.extra_token_width,
                           backbone.pooled_width, num_queries=3, num_heads=2, qformer_width=16,
                           attention_heads=backbone.attention_heads, pool_extra=True).eval()
    batch = backbone.collate(_samples(anchor, backbone))
    with torch.no_grad():
        assert (round_(backbone, batch, _aux(anchor)).pooled - backbone(batch).pooled).abs().max() > 1e-4
