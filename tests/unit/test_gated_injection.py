"""The gated injection of H_a: at initialisation an anchored pass is the anchor alone, exactly.

Checked for every backbone family: the demo UniFormer (stage 3-4 attention and the bridge),
the demo Brain-JEPA, a BERT-style encoder (MiniLM), a LLaMA-architecture decoder (H_a as a
prefix) and the demo Nucleotide Transformer. Opening the gates must change the output
(the gates are really in the attention path), and pooling over H_a is an option.
"""
import pytest
import torch

from anchorad_core.backbones.registry import build_backbone
from anchorad_core.fusion.anchored_round import AnchoredRound
from anchorad_core.fusion.qformer import AuxiliaryFeatures
from anchorad_core.modality import Modality
from test_backbone_hf_text import _write_tiny_llama

rng = torch.Generator().manual_seed(0)


def _samples(modality, backbone):
    if modality is Modality.SMRI:
        return [torch.rand(64, 64, 64, generator=rng).numpy() for _ in range(2)]
    if modality is Modality.FMRI:
        return [torch.randn(backbone.n_rois, backbone.n_frames, generator=rng).numpy() for _ in range(2)]
    if modality is Modality.CLINICAL:
        return ["MMSE: 24/30 (borderline). Complaints: misplaces objects.", "Age: 70 years."]
    return [["ACGTACGTTAGCCATGACGTACGGATCCAT" * 3], ["GGATCCATTAGC" * 5, "ACGTAC" * 4]]


def _aux(anchor):
    aux = {}
    for m in Modality:
        if m is not anchor:
            tokens = torch.randn(2, 5, 12, generator=rng)
            mask = torch.ones(2, 5, dtype=torch.bool)
            aux[m] = AuxiliaryFeatures(tokens, mask, torch.tensor([True, m is not Modality.GENETICS]))
    return aux


@pytest.fixture(scope="module")
def backbones(tmp_path_factory):
    llama = _write_tiny_llama(tmp_path_factory.mktemp("llama"))
    return {
        "uniformer": (Modality.SMRI, build_backbone("brainmvp-demo", load_weights=False)),
        "brainjepa": (Modality.FMRI, build_backbone("brainjepa-demo", load_weights=False)),
        "minilm": (Modality.CLINICAL, build_backbone("minilm-l6")),
        "llama": (Modality.CLINICAL, build_backbone({"family": "hf-text", "model_path": str(llama), "max_length": 64})),
        "nt": (Modality.GENETICS, build_backbone("nt-demo", load_weights=False)),
    }


@pytest.mark.parametrize("name", ["uniformer", "brainjepa", "minilm", "llama", "nt"])
def test_gated_round_starts_as_the_anchor_alone(backbones, name):
    anchor, backbone = backbones[name]
    backbone.eval()
    torch.manual_seed(1)
    round_ = AnchoredRound(anchor, {m: 12 for m in Modality if m is not anchor}, backbone.extra_token_width,
                           backbone.pooled_width, num_queries=3, num_heads=2, qformer_width=16,
                           attention_heads=backbone.attention_heads).eval()
    batch = backbone.collate(_samples(anchor, backbone))
    aux = _aux(anchor)
    with torch.no_grad():
        alone = backbone(batch).pooled
        anchored = round_(backbone, batch, aux)
        assert anchored.qformer.tokens.abs().sum() > 0  # H_a is not trivially zero
        torch.testing.assert_close(anchored.pooled, alone, atol=1e-5, rtol=1e-5)
        for gate in round_.gates:
            gate.fill_(0.5)
        opened = round_(backbone, batch, aux).pooled
    assert (opened - alone).abs().max() > 1e-4, "the gates do not reach the attention"


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
