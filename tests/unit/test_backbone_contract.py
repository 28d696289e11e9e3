"""The backbone contract, checked over every registered family (as peft runs one suite over every method).

Each family shipped with ``anchorad_core`` has a :class:`Case` here (a tiny model, a batch, and
the few figures that differ between families); a family registered without one fails
:func:`test_every_registered_family_has_a_case`. The contract: forward shapes and token
features, appended tokens ``H_a`` (gradients reach them, masked ones change nothing and are
never read, unmasked ones change the pooled feature), the readout, LoRA on the attention
projections only (merging is exact), the gated injection is the anchor alone at
initialisation, and the config plus a saved state dict rebuild the same model.

Reference outputs of the original codes and other family-specific behaviour stay in the
per-family files (``test_backbone_uniformer3d.py``, ``_brainjepa``, ``_hf_text``,
``_nucleotide``), which also provide the tiny models used here.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

import pytest
import torch
from safetensors.torch import load_file, save_file

from anchorad_core.backbones import registry
from anchorad_core.backbones.base import ModalityBackbone
from anchorad_core.modality import Modality

ATOL = 1e-5


@dataclass
class Case:
    """One family's tiny model and the figures of the contract that differ between families."""

    family: str
    build: Callable[[Any], ModalityBackbone]  # (tmp_path_factory) -> model in eval mode
    batch: Callable[[ModalityBackbone], dict[str, torch.Tensor]]  # two samples, collated
    gated: Callable[[Any], tuple[Modality, ModalityBackbone, list]]  # demo-size model and raw samples
    lora_names: Callable[[ModalityBackbone, list[str]], None]  # asserts the LoRA-wrapped module names
    #: Expected ``(width, extra_token_width, tokens shape)`` of the tiny model, where fixed.
    shapes: "tuple[int, int, tuple[int, int, int]] | None" = None
    #: Pooled feature from the own tokens alone (``out.tokens``), where the readout is a plain pool.
    readout: "Callable[[ModalityBackbone, Any], torch.Tensor] | None" = None
    #: All-masked extras give bit-identical outputs (native families) rather than equal to ATOL.
    exact_when_masked: bool = False
    #: Masked appended tokens come back as zeros in ``out.extra``.
    masked_extra_zero: bool = False
    #: A sample's output equals that of passing only its valid extras.
    valid_only_equal: bool = False
    #: Tolerances scale with the output's magnitude (the text number readout reaches ~100).
    scaled_tolerance: bool = False
    extra_scale: float = 1.0
    pooled_change: float = 1e-3
    tokens_change: "float | None" = 1e-3
    merge_atol: float = 1e-4


def _close(case: Case, a: torch.Tensor, b: torch.Tensor, atol: float = ATOL) -> bool:
    """Equal within ``atol`` (times the magnitude of ``b`` where the case says so)."""
    scale = max(1.0, float(b.abs().max())) if case.scaled_tolerance else 1.0
    return a.shape == b.shape and bool(((a - b).abs() <= atol * scale).all())


# --- the families' tiny models (built by the per-family test modules' helpers) -----------------

def _uniformer(_factory):
    from test_backbone_uniformer3d import FIX, _tiny

    from anchorad_core.backbones.uniformer3d import load_brainmvp_checkpoint

    model = _tiny()
    load_brainmvp_checkpoint(model, FIX / "brainmvp_tiny.pt")
    return model.eval()


def _brainjepa(_factory):
    from test_backbone_brainjepa import _tiny

    torch.manual_seed(1)
    return _tiny(n_frames=32).eval()


def _llama(factory):
    from test_backbone_hf_text import _write_tiny_llama

    from anchorad_core.backbones.hf_text import HFTextBackbone

    folder = _write_tiny_llama(factory.mktemp("contract-llama"))
    return HFTextBackbone.from_config({"model_path": str(folder), "max_length": 64}).eval()


def _minilm(_factory):
    from anchorad_core.backbones.hf_text import HFTextBackbone

    return HFTextBackbone.from_config(registry.presets()["minilm-l6"]["config"]).eval()


def _nt(factory):
    from test_backbone_nucleotide import _write_tiny_nt

    from anchorad_core.backbones.nucleotide_transformer import NucleotideTransformerBackbone

    folder = _write_tiny_nt(factory.mktemp("contract-nt"))
    return NucleotideTransformerBackbone.from_config({"model_path": str(folder)}).eval()


def _text_batch(model):
    from test_backbone_hf_text import SENTENCES

    return model.collate(SENTENCES[:2])


def _dna_batch(model):
    from test_backbone_nucleotide import APOE_LIKE

    return model.collate([[APOE_LIKE, "ACGTN"], ["GATTACA" * 20]])


# --- the demo-size models of the gated-injection check (as the anchored rounds build them) -----

_rng = torch.Generator().manual_seed(0)


def _gated_smri(_factory):
    model = registry.build_backbone("brainmvp-demo", load_weights=False)
    return Modality.SMRI, model, [torch.rand(64, 64, 64, generator=_rng).numpy() for _ in range(2)]


def _gated_fmri(_factory):
    model = registry.build_backbone("brainjepa-demo", load_weights=False)
    return Modality.FMRI, model, [torch.randn(model.n_rois, model.n_frames, generator=_rng).numpy() for _ in range(2)]


_NOTES = ["MMSE: 24/30 (borderline). Complaints: misplaces objects.", "Age: 70 years."]


def _gated_llama(factory):
    from test_backbone_hf_text import _write_tiny_llama

    folder = _write_tiny_llama(factory.mktemp("gated-llama"))
    return Modality.CLINICAL, registry.build_backbone(
        {"family": "hf-text", "model_path": str(folder), "max_length": 64}), _NOTES


def _gated_minilm(_factory):
    return Modality.CLINICAL, registry.build_backbone("minilm-l6"), _NOTES


def _gated_dna(_factory):
    return Modality.GENETICS, registry.build_backbone("nt-demo", load_weights=False), [
        ["ACGTACGTTAGCCATGACGTACGGATCCAT" * 3], ["GGATCCATTAGC" * 5, "ACGTAC" * 4]]


# --- expected LoRA targets ----------------------------------------------------------------------

def _uniformer_lora(model, names):
    assert set(names) == {"blocks3.0.attn.qkv", "blocks3.0.attn.proj", "blocks3.1.attn.qkv",
                          "blocks3.1.attn.proj", "blocks4.0.attn.qkv", "blocks4.0.attn.proj"}


def _brainjepa_lora(model, names):
    assert set(names) == {"blocks.0.attn.qkv", "blocks.0.attn.proj", "blocks.1.attn.qkv", "blocks.1.attn.proj"}


def _hf_lora(suffixes, parents):
    def check(model, names):
        assert len(names) == 4 * model.model.config.num_hidden_layers
        assert {n.split(".")[-1] for n in names} == suffixes
        assert all(any(p in n for p in parents) for n in names)
    return check


CASES = {
    "uniformer3d": Case(
        "uniformer3d", _uniformer, lambda m: {"image": torch.randn(2, 1, 32, 32, 32)}, _gated_smri, _uniformer_lora,
        shapes=(64, 32, (2, 8, 64)), readout=lambda m, t: t.mean(1), exact_when_masked=True,
        masked_extra_zero=True, valid_only_equal=True, tokens_change=1e-4, merge_atol=ATOL),
    "brainjepa": Case(
        "brainjepa", _brainjepa, lambda m: {"series": torch.randn(2, 1, 450, 32)}, _gated_fmri, _brainjepa_lora,
        shapes=(32, 32, (2, 900, 32)), readout=lambda m, t: m.fc_norm(t.mean(1)), exact_when_masked=True,
        masked_extra_zero=True, valid_only_equal=True, extra_scale=3.0, pooled_change=1e-5,
        tokens_change=1e-5, merge_atol=ATOL),
    "hf-text/llama": Case(
        "hf-text", _llama, _text_batch, _gated_llama,
        _hf_lora({"q_proj", "k_proj", "v_proj", "o_proj"}, (".self_attn.",)), tokens_change=None,
        scaled_tolerance=True),
    "hf-text/minilm": Case(
        "hf-text", _minilm, _text_batch, _gated_minilm,
        _hf_lora({"query", "key", "value", "dense"}, (".attention.",)), tokens_change=None,
        scaled_tolerance=True),
    "nucleotide-transformer": Case(
        "nucleotide-transformer", _nt, _dna_batch, _gated_dna,
        _hf_lora({"query", "key", "value", "dense"}, (".attention.",))),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Tiny models by case name, built once per module on first use."""
    cache: dict[str, ModalityBackbone] = {}

    def get(name: str) -> ModalityBackbone:
        if name not in cache:
            cache[name] = CASES[name].build(tmp_path_factory)
        return cache[name]
    return get


def _extras(model, n: int, scale: float = 1.0, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, n, model.extra_token_width, generator=g) * scale


# --- the catalogue --------------------------------------------------------------------------------

def test_every_registered_family_has_a_case():
    shipped = {name for name, cls in registry.families().items() if cls.__module__.startswith("anchorad_core.")}
    assert shipped == {case.family for case in CASES.values()}
    assert shipped == {"uniformer3d", "brainjepa", "hf-text", "nucleotide-transformer"}


# --- forward and appended tokens ------------------------------------------------------------------

@pytest.mark.parametrize("name", CASES)
def test_forward_shapes_token_features_and_gradient_to_the_extras(name, built):
    case, model = CASES[name], built(name)
    batch = case.batch(model)
    extra = _extras(model, 5).requires_grad_(True)
    out = model(batch, extra)
    assert type(model).family == case.family and registry.families()[case.family] is type(model)
    if case.shapes is not None:
        width, extra_width, tokens = case.shapes
        assert model.width == width and model.extra_token_width == extra_width and out.tokens.shape == tokens
        assert out.mask.all()  # no padding in a volume or a time series
    assert out.tokens.ndim == 3 and out.tokens.shape[0] == 2 and out.tokens.shape[2] == model.width
    assert out.mask.shape == out.tokens.shape[:2] and out.mask.dtype == torch.bool and out.mask.any(1).all()
    assert out.pooled.shape == (2, model.pooled_width) and torch.isfinite(out.pooled).all()
    blocks = model.pooled_blocks
    assert sum(w for _, w in blocks) == model.pooled_width and all(w > 0 for _, w in blocks)
    assert len({n for n, _ in blocks}) == len(blocks)
    assert out.extra.shape == (2, 5, model.width)
    # (a plain sum of a LayerNorm output is constant: project on random weights)
    (out.pooled * torch.randn(out.pooled.shape, generator=torch.Generator().manual_seed(0))).sum().backward()
    assert extra.grad is not None and extra.grad.abs().sum() > 0
    model.zero_grad()


@pytest.mark.parametrize("name", CASES)
def test_all_masked_extras_change_nothing(name, built):
    case, model = CASES[name], built(name)
    batch = case.batch(model)
    with torch.no_grad():
        plain = model(batch)
        masked = model(batch, _extras(model, 4), torch.zeros(2, 4, dtype=torch.bool))
    if case.exact_when_masked:
        assert torch.equal(plain.tokens, masked.tokens) and torch.equal(plain.pooled, masked.pooled)
    else:
        assert _close(case, masked.pooled, plain.pooled)
        assert torch.allclose(masked.tokens, plain.tokens, atol=ATOL)
    assert torch.equal(masked.mask, plain.mask)
    if case.masked_extra_zero:
        assert torch.equal(masked.extra, torch.zeros(2, 4, model.width))


@pytest.mark.parametrize("name", CASES)
def test_masked_extras_are_never_read(name, built):
    """Other content in the masked slots changes nothing; a sample whose extras are all masked is
    the sample without extras; (native families) one with some valid equals passing only those."""
    case, model = CASES[name], built(name)
    batch = case.batch(model)
    extra = _extras(model, 4)
    mask = torch.tensor([[False, False, False, False], [True, False, True, False]])
    other = extra.clone()
    other[~mask] = torch.randn(int((~mask).sum()), model.extra_token_width) * 10
    with torch.no_grad():
        plain = model(batch)
        a = model(batch, extra, mask)
        b = model(batch, other, mask)
    assert _close(case, a.tokens, b.tokens, 1e-6) and _close(case, a.pooled, b.pooled, 1e-6)
    assert _close(case, a.pooled[0], plain.pooled[0])
    assert torch.allclose(a.tokens[0][a.mask[0]], plain.tokens[0][plain.mask[0]], atol=ATOL)
    if case.masked_extra_zero:
        assert torch.equal(a.extra[~mask], torch.zeros(int((~mask).sum()), model.width))
    if case.valid_only_equal:
        one = {k: v[1:] for k, v in batch.items()}
        with torch.no_grad():
            valid_only = model(one, extra[1:, [0, 2]])
        torch.testing.assert_close(a.tokens[1], valid_only.tokens[0], rtol=0, atol=ATOL)
        torch.testing.assert_close(a.pooled[1], valid_only.pooled[0], rtol=0, atol=ATOL)


@pytest.mark.parametrize("name", CASES)
def test_unmasked_extras_change_the_pooled_feature_and_the_readout(name, built):
    case, model = CASES[name], built(name)
    batch = case.batch(model)
    with torch.no_grad():
        plain = model(batch)
        out = model(batch, _extras(model, 3, case.extra_scale))
    assert (out.pooled - plain.pooled).abs().max() > case.pooled_change
    if case.tokens_change is not None:  # the own tokens attend to the extras
        assert (out.tokens - plain.tokens).abs().max() > case.tokens_change
    if case.readout is not None:
        with torch.no_grad():
            own = case.readout(model, out.tokens)
            joint = case.readout(model, torch.cat([out.tokens, out.extra], dim=1))
        torch.testing.assert_close(out.pooled, own, rtol=0, atol=1e-5)  # own tokens only
        torch.testing.assert_close(out.pooled_with_extra, joint, rtol=0, atol=1e-5)


# --- LoRA -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", CASES)
def test_lora_targets_exist_only_attention_linears_and_merge_exactly(name, tmp_path_factory):
    peft = pytest.importorskip("peft")
    case = CASES[name]
    model = case.build(tmp_path_factory)  # a fresh one: peft wraps it in place
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    phase2 = list(getattr(model, "phase2_trainable_modules", []) or [])
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=model.lora_target_modules,
                             modules_to_save=phase2 or None)
    wrapped = peft.get_peft_model(model, config)
    lora = {n.split("base_model.model.")[-1]: m for n, m in wrapped.named_modules()
            if isinstance(m, peft.tuners.lora.LoraLayer) and hasattr(m, "base_layer")}
    assert lora, "lora_target_modules matches no module"
    case.lora_names(model, list(lora))
    assert all(type(m.base_layer) is torch.nn.Linear for m in lora.values())
    trainable = {n for n, p in wrapped.named_parameters() if p.requires_grad}
    assert all("lora_" in n or any(s in n for s in phase2) for n in trainable)
    assert all(any(s in n for n in trainable) for s in phase2)

    torch.manual_seed(3)
    for n, p in wrapped.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.1)
    wrapped.eval()  # frozen backbone: normalisation keeps its running statistics
    batch, extra = case.batch(model), _extras(model, 3)
    optim = torch.optim.SGD([p for p in wrapped.parameters() if p.requires_grad], lr=0.1)
    wrapped(batch, extra).pooled.pow(2).mean().backward()
    optim.step()
    base = wrapped.get_base_model()
    current = {k.replace(".base_layer", "").replace(".original_module", ""): v for k, v in base.state_dict().items()
               if "lora_" not in k and "modules_to_save" not in k}
    assert set(current) == set(base_state)
    for k, v in base_state.items():
        if not any(k.startswith(s) for s in phase2):
            assert torch.equal(current[k], v), k  # the backbone stays frozen
    with torch.no_grad():
        unmerged = wrapped(batch, extra).pooled
        with wrapped.disable_adapter():
            without = wrapped(batch, extra).pooled
        assert (unmerged - without).abs().max() > 1e-4  # the adapters do act
        merged_model = wrapped.merge_and_unload()
        merged = merged_model(batch, extra).pooled
    torch.testing.assert_close(merged, unmerged, rtol=0, atol=case.merge_atol)
    merged_modules = dict(merged_model.named_modules())
    assert all(type(merged_modules[n]) is torch.nn.Linear for n in lora)


# --- gated injection --------------------------------------------------------------------------------

def _aux(anchor):
    from anchorad_core.fusion.qformer import AuxiliaryFeatures

    aux = {}
    for m in Modality:
        if m is not anchor:
            tokens = torch.randn(2, 5, 12, generator=_rng)
            mask = torch.ones(2, 5, dtype=torch.bool)
            aux[m] = AuxiliaryFeatures(tokens, mask, torch.tensor([True, m is not Modality.GENETICS]))
    return aux


@pytest.mark.parametrize("name", CASES)
def test_gated_round_starts_as_the_anchor_alone(name, tmp_path_factory):
    """At initialisation an anchored pass is the anchor alone, exactly; opening the gates must
    change the output (the gates are really in the attention path)."""
    from anchorad_core.fusion.anchored_round import AnchoredRound

    anchor, backbone, samples = CASES[name].gated(tmp_path_factory)
    backbone.eval()
    torch.manual_seed(1)
    round_ = AnchoredRound(anchor, {m: 12 for m in Modality if m is not anchor}, backbone.extra_token_width,
                           backbone.pooled_width, num_queries=3, num_heads=2, qformer_width=16,
                           attention_heads=backbone.attention_heads).eval()
    batch = backbone.collate(samples)
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


# --- config and checkpoint round trip ---------------------------------------------------------------

@pytest.mark.parametrize("name", CASES)
def test_config_and_saved_weights_rebuild_the_same_model(name, built, tmp_path):
    """What a bundle stores (the JSON config, the exported files, a safetensors state dict)
    rebuilds the model through the registry: same config, same outputs."""
    case, model = CASES[name], built(name)
    config = model.get_config()
    json.dumps(config)
    assert config["family"] == case.family
    exported = model.export_files(tmp_path)
    save_file({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()},
              str(tmp_path / "weights.safetensors"))
    rebuilt = registry.build_backbone({**config, **exported}, base_dir=tmp_path, load_weights=False)
    assert type(rebuilt) is type(model) and rebuilt.get_config() == {**config, **exported}
    rebuilt.load_state_dict(load_file(str(tmp_path / "weights.safetensors")))
    rebuilt.eval()
    batch, extra = case.batch(model), _extras(model, 3)
    with torch.no_grad():
        for args in ((batch,), (batch, extra)):
            a, b = model(*args), rebuilt(*args)
            torch.testing.assert_close(b.tokens, a.tokens, rtol=0, atol=1e-6)
            torch.testing.assert_close(b.pooled, a.pooled, rtol=0, atol=1e-6)


@pytest.mark.parametrize("preset, blocks", [
    ("brainjepa-demo", [("token mean", 64), ("within-network similarity", 17), ("network-to-all similarity", 17)]),
    ("brainmvp-demo", [("stage-4 token mean", 48), ("stage-1 grid", 64), ("stage-2 grid", 128)]),
])
def test_demo_readouts_declare_their_blocks_in_output_order(preset, blocks):
    """The probe's blocks are the readout's parts in the order forward() concatenates them."""
    model = registry.build_backbone(preset, load_weights=False)
    assert list(model.pooled_blocks) == blocks
