"""Backbone inventory: every preset sized on the meta device, counts equal to real builds."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from anchorad_core.backbones import registry
from anchorad_core.backbones.hf_text import LLAMA2_ARCHITECTURES, HFTextBackbone, default_text_model_path
from anchorad_core.backbones.inventory import (
    backbone_inventory,
    format_bytes,
    format_count,
    format_inventory,
    meta_build,
    parameters_on_meta,
    size_backbone,
)
from anchorad_core.backbones.nucleotide_transformer import NT_V1_500M_ESM_CONFIG, NucleotideTransformerBackbone
from anchorad_core.errors import ConfigError

GRADIENT_450 = Path(__file__).parents[1] / "fixtures" / "reference-models" / "gradient_mapping_450.csv"
#: Small presets that really build on the CPU in a second (weights not needed for counting).
SMALL = ("nt-demo", "minilm-l6", "brainmvp-demo", "brainjepa-demo")


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return backbone_inventory()


def _by_name(rows: list[dict]) -> dict[str, dict]:
    return {r["preset"]: r for r in rows}


def _llama_bare_params(hidden: int, layers: int, intermediate: int, vocab: int = 32000) -> int:
    """LlamaModel without LM head: embeddings + per layer (q,k,v,o + gate,up,down + 2 norms) + final norm."""
    return vocab * hidden + layers * (4 * hidden * hidden + 3 * hidden * intermediate + 2 * hidden) + hidden


def _esm_encoder_params(c: dict) -> int:
    """EsmModel without pooler / contact head, absolute positions, no emb_layer_norm_before."""
    h, i, n = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"]
    embeddings = c["vocab_size"] * h + c["max_position_embeddings"] * h
    layer = 4 * (h * h + h) + 2 * h + (h * i + i) + (i * h + h) + 2 * h  # attn, attn LN, FFN, out LN
    return embeddings + n * layer + 2 * h  # + emb_layer_norm_after


def test_every_preset_has_a_sized_row(rows):
    presets = registry.presets()
    assert [r["preset"] for r in rows] == list(presets)
    families = registry.families()
    for row in rows:
        entry = presets[row["preset"]]
        assert row["error"] is None, row
        assert row["family"] == entry["config"]["family"]
        assert row["modality"] == families[row["family"]].modality.value
        assert row["description"] == entry["description"]
        assert row["parameters"] > 0 and row["width"] > 0
        assert row["fp32_bytes"] == 4 * row["parameters"] and row["bf16_bytes"] == 2 * row["parameters"]
        assert row["built"] in ("meta", "meta-parameters")
    json.loads(json.dumps(rows))  # --json ready
    assert {r["modality"] for r in rows} >= {"clinical", "genetics"}


@pytest.mark.parametrize("name", SMALL)
def test_counts_equal_a_real_build(rows, name):
    if name not in registry.presets():
        pytest.skip(f"{name} not registered")
    real = registry.build_backbone(name, load_weights=False)
    assert all(not p.is_meta for p in real.parameters())
    params = sum(p.numel() for p in real.parameters())
    state = sum(t.numel() for t in real.state_dict().values())
    row = _by_name(rows)[name]
    assert row["parameters"] == params
    assert row["parameters"] + row["buffers"] == state  # persistent buffers: what a checkpoint also holds
    assert row["width"] == real.width


def test_meta_build_allocates_no_weight_storage():
    for name in registry.presets():
        module, how, _ = meta_build(name)
        assert all(p.is_meta for p in module.parameters()), name
        # buffers may be real (parameters-only build, or tensors made with torch.from_numpy,
        # which ignores the default device), but they are only small tables and statistics
        assert sum(b.numel() for b in module.buffers() if not b.is_meta) < 5_000_000, name
    # the big ones are built entirely on the meta device: not one byte of weights
    for name in ("llama-2-7b", "llama-2-13b", "nt-v1-500m-human-ref"):
        module, how, note = meta_build(name)
        assert how == "meta" and "published architecture" in note
        assert all(t.is_meta for t in [*module.parameters(), *module.buffers()])


def test_parameters_on_meta_restores_module_registration():
    original = nn.Module.register_parameter
    with pytest.raises(RuntimeError):
        with parameters_on_meta():
            layer = nn.Linear(3, 2)
            assert layer.weight.is_meta and isinstance(layer.weight, nn.Parameter)
            raise RuntimeError("boom")
    assert nn.Module.register_parameter is original
    assert not nn.Linear(3, 2).weight.is_meta


def test_published_sizes(rows):
    by = _by_name(rows)
    seven = by["llama-2-7b"]
    assert seven["parameters"] == _llama_bare_params(4096, 32, 11008) == 6_607_343_616  # ~6.7e9 with LM head
    assert 6.5e9 < seven["parameters"] < 6.8e9
    assert seven["width"] == 4096 and seven["dtype"] == "bfloat16"
    assert "published architecture" in seven["note"]
    assert by["llama-2-13b"]["parameters"] == _llama_bare_params(5120, 40, 13824)
    assert 12.5e9 < by["llama-2-13b"]["parameters"] < 13.1e9
    nt = by["nt-v1-500m-human-ref"]
    assert nt["parameters"] == _esm_encoder_params(NT_V1_500M_ESM_CONFIG)
    assert 4.5e8 < nt["parameters"] < 5.0e8 and nt["width"] == 1280
    if "brainjepa-vit-b" in by:
        vitb = by["brainjepa-vit-b"]
        assert "gradient_path not set" in vitb["note"] and vitb["width"] == 768
        assert 80e6 < vitb["parameters"] < 90e6  # ViT-B
        if GRADIENT_450.is_file():  # the published-shape table gives the same count as the real file
            real = size_backbone({"preset": "brainjepa-vit-b", "gradient_path": str(GRADIENT_450)})
            assert real["parameters"] == vitb["parameters"] and real["note"] == ""
    if "brainmvp-uniformer-s" in by:
        assert 20e6 < by["brainmvp-uniformer-s"]["parameters"] < 25e6 and by["brainmvp-uniformer-s"]["width"] == 512


def test_reference_architecture_is_only_for_sizing():
    with pytest.raises(ConfigError, match="model_path"):
        registry.build_backbone("llama-2-7b", load_weights=False)
    with pytest.raises(ConfigError, match="model_path"):
        registry.build_backbone("nt-v1-500m-human-ref", load_weights=False)
    assert registry.presets()["llama-2-7b"]["config"]["reference_architecture"] == LLAMA2_ARCHITECTURES["7b"]
    # accepted (and ignored) when a model is given: the model's own config decides
    with torch.device("meta"):
        text = HFTextBackbone.from_config(
            {**registry.resolve_config("minilm-l6"), "reference_architecture": LLAMA2_ARCHITECTURES["7b"]},
            load_weights=False,
        )
    assert text.width == 384 and "reference_architecture" not in text.get_config()
    genetics = NucleotideTransformerBackbone.from_config(
        {**registry.resolve_config("nt-demo"), "reference_architecture": NT_V1_500M_ESM_CONFIG}
    )
    assert genetics.width == 64 and "reference_architecture" not in genetics.get_config()


def test_size_configs_with_a_local_model_folder(tmp_path):
    from transformers import EsmConfig

    from anchorad_core.backbones.nucleotide_transformer.kmer_tokenizer import build_nt_v1_tokenizer
    from anchorad_core.backbones.nucleotide_transformer import NT_DEMO_ESM_CONFIG

    # hf-text with a real folder: its config.json decides (the generic load_weights=False path)
    text = size_backbone({"family": "hf-text", "model_path": str(default_text_model_path())})
    assert text["parameters"] == size_backbone("minilm-l6")["parameters"] and text["built"] == "meta"
    # a Nucleotide Transformer folder with only config.json and tokenizer files (no weights)
    folder = tmp_path / "nt"
    EsmConfig(**NT_DEMO_ESM_CONFIG).save_pretrained(str(folder))
    build_nt_v1_tokenizer(folder)
    sized = size_backbone({"preset": "nt-v1-500m-human-ref", "model_path": str(folder)})
    assert sized["parameters"] == size_backbone("nt-demo")["parameters"] and sized["note"] == ""


def test_unsizable_preset_keeps_its_row():
    name = "test-unsizable-preset"
    registry.register_preset(name, {"family": "hf-text", "model_path": None}, "no model, no reference")
    try:
        (row,) = backbone_inventory([name])
    finally:
        registry._PRESETS.pop(name, None)
    assert row["parameters"] is None and row["fp32_bytes"] is None
    assert "model_path" in row["error"] and row["modality"] == "clinical"
    assert "?" in format_inventory([row]) and "not sized" in format_inventory([row])
    with pytest.raises(KeyError):
        backbone_inventory(["no-such-preset"])


def test_format_inventory(rows):
    text = format_inventory(rows)
    lines = text.splitlines()
    assert len(lines) == len(rows) + 2
    header = [c.strip() for c in lines[0].split("|")]
    assert header == ["preset", "modality", "family", "params", "fp32", "bf16", "description"]
    bars = {tuple(i for i, ch in enumerate(line) if ch == "|")[:6] for line in [lines[0], *lines[2:]]}
    assert len(bars) == 1  # columns aligned
    seven = next(line for line in lines if line.startswith("llama-2-7b "))
    assert "6.61 B" in seven and "24.6 GiB" in seven and "12.3 GiB" in seven
    full = format_inventory(rows, max_description=None)
    assert all(r["description"].split()[0] in full for r in rows)


def test_number_formats():
    assert format_count(6_607_343_616) == "6.61 B"
    assert format_count(22_565_376) == "22.6 M"
    assert format_count(379_328) == "379 k"
    assert format_count(512) == "512" and format_count(None) == "?"
    assert format_bytes(2 * 6_607_343_616) == "12.3 GiB"
    assert format_bytes(1024) == "1 KiB" and format_bytes(100) == "100 B" and format_bytes(None) == "?"


def test_sizing_leaves_the_random_stream_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    backbone_inventory(["brainmvp-demo", "nt-demo"])
    assert torch.equal(torch.rand(3), expected)


