"""Tests of the Nucleotide Transformer backbone and the NT v1 6-mer tokenizer.

The contract every family shares (appended tokens, LoRA, gated injection, config and weights
round trip) is checked in ``test_backbone_contract.py``, on this module's tiny models.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from anchorad_core.backbones import registry
from anchorad_core.backbones.nucleotide_transformer.kmer_tokenizer import build_nt_v1_tokenizer, kmer_split, nt_v1_vocabulary
from anchorad_core.backbones.nucleotide_transformer import NucleotideTransformerBackbone
from anchorad_core.errors import CheckpointError, ConfigError, InputDataError

ATOL = 1e-5
APOE_LIKE = (
    "ATGAAGGTTCTGTGGGCTGCGTTGCTGGTCACATTCCTGGCAGGATGCCAGGCCAAGGTGGAGCAAGCGGTGGAGACAGAGCCGGAGCCCGAGCTGCGCCAGCAG"
)


def _preset(name: str) -> dict:
    try:
        return registry.presets()[name]["config"]
    except ImportError:  # sibling families not written yet
        return dict(registry._PRESETS[name]["config"])


def _write_tiny_nt(folder: Path, seed: int = 0, **overrides) -> Path:
    """An NT-v1-format folder: ``EsmForMaskedLM`` weights, config and the 6-mer ``EsmTokenizer``."""
    from transformers import EsmConfig, EsmForMaskedLM

    torch.manual_seed(seed)
    config = EsmConfig(
        **{
            "vocab_size": 4105,
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "intermediate_size": 64,
            "max_position_embeddings": 66,
            "pad_token_id": 1,
            "mask_token_id": 2,
            "position_embedding_type": "absolute",
            "emb_layer_norm_before": False,
            "token_dropout": True,
            "hidden_dropout_prob": 0.0,
            "attention_probs_dropout_prob": 0.0,
            "tie_word_embeddings": False,
            "architectures": ["EsmForMaskedLM"],
            **overrides,
        }
    )
    model = EsmForMaskedLM(config)
    with torch.no_grad():  # non-trivial position rows, including the padding row
        model.esm.embeddings.word_embeddings.weight.normal_()
        if hasattr(model.esm.embeddings, "position_embeddings"):
            model.esm.embeddings.position_embeddings.weight.normal_()
    model.save_pretrained(str(folder))
    build_nt_v1_tokenizer(folder, model_max_length=64)
    return folder


@pytest.fixture(scope="module")
def nt_folder(tmp_path_factory) -> Path:
    return _write_tiny_nt(tmp_path_factory.mktemp("tiny-nt"))


@pytest.fixture(scope="module")
def nt(nt_folder) -> NucleotideTransformerBackbone:
    return NucleotideTransformerBackbone.from_config({"model_path": str(nt_folder)})


# --------------------------------------------------------------------------------------------
# tokenizer
# --------------------------------------------------------------------------------------------


def test_nt_v1_vocabulary_layout():
    vocab = nt_v1_vocabulary()
    assert len(vocab) == 4105 and len(set(vocab)) == 4105
    assert vocab[:4] == ["<unk>", "<pad>", "<mask>", "<cls>"]
    assert vocab[4] == "AAAAAA" and vocab[5] == "AAAAAT" and vocab[8] == "AAAATA" and vocab[4099] == "GGGGGG"
    assert vocab[4100:] == ["A", "T", "C", "G", "N"]


def test_tokenizer_splits_into_non_overlapping_6mers():
    tok = build_nt_v1_tokenizer()
    assert tok.vocab_size == 4105 and len(tok) == 4105
    assert (tok.pad_token_id, tok.mask_token_id, tok.cls_token_id, tok.eos_token_id) == (1, 2, 3, None)
    ids = tok("ATTCCGATTCCGAT")["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == ["<cls>", "ATTCCG", "ATTCCG", "A", "T"]
    assert tok.convert_ids_to_tokens(tok("AAANAAAAAAC")["input_ids"]) == ["<cls>", "A", "A", "A", "N", "AAAAAA", "C"]
    kmer_id = 4 + sum("ATCG".index(c) * 4 ** (5 - i) for i, c in enumerate("ATTCCG"))
    assert ids[1] == kmer_id
    for seq in (APOE_LIKE, APOE_LIKE[:-1] + "N" + APOE_LIKE, "NNACGTTTAGN", "ACGTA"):
        got = tok.convert_ids_to_tokens(tok(seq, add_special_tokens=False)["input_ids"])
        assert got == kmer_split(seq)


def test_tokenizer_round_trips_through_save_pretrained(tmp_path):
    from transformers import AutoTokenizer

    build_nt_v1_tokenizer(tmp_path)
    loaded = AutoTokenizer.from_pretrained(str(tmp_path), local_files_only=True)
    assert loaded("ACGTACA")["input_ids"] == build_nt_v1_tokenizer()("ACGTACA")["input_ids"]
    assert (tmp_path / "vocab.txt").read_text().splitlines() == nt_v1_vocabulary()


# --------------------------------------------------------------------------------------------
# embedding path == input_ids path
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"emb_layer_norm_before": True},
        {"position_embedding_type": "rotary"},
        {"token_dropout": False},
    ],
    ids=["nt-v1", "emb-layer-norm", "rotary", "no-token-dropout"],
)
def test_embeds_path_equals_input_ids_path(tmp_path, overrides):
    backbone = NucleotideTransformerBackbone.from_config({"model_path": str(_write_tiny_nt(tmp_path, **overrides))})
    assert backbone._embedding_mode == "post"
    batch = backbone.collate([[APOE_LIKE], ["ACGTAGN"]])
    ids = batch["input_ids"][:, 0]
    mask = batch["attention_mask"][:, 0]
    ids[0, 5] = backbone.tokenizer.mask_token_id  # exercises the token-dropout rescaling
    batch["input_ids"][:, 0] = ids
    with torch.no_grad():
        ref = backbone.model(input_ids=ids, attention_mask=mask).last_hidden_state
        out = backbone(batch)
    for b in range(2):
        valid = ref[b][mask[b].bool()]
        assert torch.allclose(out.tokens[b, : valid.shape[0]], valid, atol=ATOL)


def test_legacy_embedding_path_matches_the_embedding_layer(nt):
    """The legacy path (inputs_embeds that still get positions / norm / mask) is exact too."""
    batch = nt.collate([[APOE_LIKE], ["ACGTAGN"]])
    ids, mask = batch["input_ids"][:, 0].clone(), batch["attention_mask"][:, 0]
    ids[0, 3] = nt.tokenizer.mask_token_id
    emb = nt.model.embeddings
    with torch.no_grad():
        ref = emb(input_ids=ids, attention_mask=mask)
        legacy = emb(inputs_embeds=nt._embed_tokens(ids, mask.bool(), mode="legacy"), attention_mask=mask)
    valid = mask.bool()
    assert torch.allclose(legacy[valid], ref[valid], atol=ATOL)


def test_loads_the_saved_masked_lm_weights(nt, nt_folder):
    from transformers import EsmForMaskedLM

    saved = EsmForMaskedLM.from_pretrained(str(nt_folder), local_files_only=True)
    assert torch.equal(
        saved.esm.encoder.layer[1].attention.self.query.weight, nt.model.encoder.layer[1].attention.self.query.weight
    )
    assert nt.width == 32 and nt.max_length == 64 and nt.chunk_tokens == 63


# --------------------------------------------------------------------------------------------
# batching, chunking, appended tokens
# --------------------------------------------------------------------------------------------


def test_padding_invariance_with_and_without_extras(nt):
    short, long = ["ACGTACGGATTACA", "GATTACA"], [APOE_LIKE * 3, APOE_LIKE]
    torch.manual_seed(0)
    extras = torch.randn(1, 3, nt.width)
    with torch.no_grad():
        alone = nt(nt.collate([short]))
        mixed = nt(nt.collate([long, short]))
        alone_x = nt(nt.collate([short]), extras)
        mixed_x = nt(nt.collate([long, short]), extras.repeat(2, 1, 1))
    n = int(alone.mask.sum())
    assert mixed.tokens.shape[1] > n
    assert torch.allclose(alone.tokens[0, :n], mixed.tokens[1, :n], atol=ATOL)
    assert torch.allclose(alone.pooled[0], mixed.pooled[1], atol=ATOL)
    assert torch.allclose(alone_x.pooled[0], mixed_x.pooled[1], atol=ATOL)
    assert torch.allclose(alone_x.extra[0], mixed_x.extra[1], atol=ATOL)


def test_long_sequence_is_chunked_into_windows(nt):
    seq = (APOE_LIKE * 4)[:400]  # 66 six-mers + 4 single bases = 70 tokens
    batch = nt.collate([[seq]])
    n_tokens = len(kmer_split(seq))
    assert n_tokens == 70
    windows = -(-n_tokens // nt.chunk_tokens)
    assert batch["chunk_mask"].sum() == windows == 2
    assert int(batch["token_mask"].sum()) == n_tokens + windows  # one <cls> per window
    # every base is covered once, in order
    seq_index = batch["sequence_index"][0][batch["token_mask"][0]]
    offsets = batch["base_offsets"][0][batch["token_mask"][0]][seq_index >= 0]
    assert offsets[0, 0] == 0 and offsets[-1, 1] == len(seq)
    assert torch.equal(offsets[1:, 0], offsets[:-1, 1])
    # each window is encoded on its own: its states equal a subject made of that window only
    ids = nt.tokenize_sequence(seq)
    first = "".join(nt.tokenizer.convert_ids_to_tokens(ids[: nt.chunk_tokens]))
    second = "".join(nt.tokenizer.convert_ids_to_tokens(ids[nt.chunk_tokens :]))
    with torch.no_grad():
        whole = nt(batch)
        parts = nt(nt.collate([[first], [second]]))
    n1 = int(parts.mask[0].sum())
    assert torch.allclose(whole.tokens[0, :n1], parts.tokens[0, :n1], atol=ATOL)
    assert torch.allclose(whole.tokens[0, n1 : n1 + int(parts.mask[1].sum())], parts.tokens[1, : int(parts.mask[1].sum())], atol=ATOL)


def test_subject_sequences_are_concatenated(nt):
    a, b = APOE_LIKE, APOE_LIKE.replace("C", "T", 3)
    with torch.no_grad():
        joint = nt(nt.collate([[a, b]]))
        single = nt(nt.collate([[a], [b]]))
    na, nb = int(single.mask[0].sum()), int(single.mask[1].sum())
    assert int(joint.mask.sum()) == na + nb
    assert torch.allclose(joint.tokens[0, :na], single.tokens[0, :na], atol=ATOL)
    assert torch.allclose(joint.tokens[0, na : na + nb], single.tokens[1, :nb], atol=ATOL)
    batch = nt.collate([[a, b]])
    assert batch["sequence_index"][0, 0] == -1 and batch["sequence_index"][0, na] == -1  # <cls> of each
    assert batch["sequence_index"][0, na + 1] == 1


def test_invalid_input_raises_input_data_error(nt):
    with pytest.raises(InputDataError, match=r"'X' at position 4"):
        nt.collate([["ACGTXACGT"]])
    with pytest.raises(InputDataError, match="sample 1, sequence 0"):
        nt.collate([["ACGT"], ["AC-GT"]])
    with pytest.raises(InputDataError, match="empty"):
        nt.collate([[""]])
    with pytest.raises(InputDataError, match="no DNA"):
        nt.collate([[]])
    with pytest.raises(InputDataError, match="max_chunks"):
        NucleotideTransformerBackbone(nt.model, nt.tokenizer, max_chunks=2).collate([["ACGTAC" * 200]])
    assert nt.collate(["acgtac"])["input_ids"].shape[:2] == (1, 1)  # lower case, bare string


# --------------------------------------------------------------------------------------------
# presets, LoRA, configs
# --------------------------------------------------------------------------------------------


def test_nt_demo_preset_builds_from_inline_config():
    config = _preset("nt-demo")
    torch.manual_seed(0)
    backbone = NucleotideTransformerBackbone.from_config(config)
    assert backbone.width == 64 and backbone.model.config.vocab_size == 4105
    assert backbone.max_length == 256 and backbone.model.config.position_embedding_type == "absolute"
    out = backbone(backbone.collate([[APOE_LIKE * 5, APOE_LIKE * 5]]))
    assert out.pooled.shape == (1, 64)
    with pytest.raises(ConfigError, match="model_path"):
        NucleotideTransformerBackbone.from_config(_preset("nt-v1-500m-human-ref"))


def test_missing_folder_and_remote_code_are_refused(tmp_path, nt_folder):
    with pytest.raises(CheckpointError, match="not found"):
        NucleotideTransformerBackbone.from_config({"model_path": str(tmp_path / "missing")})
    with pytest.raises(CheckpointError):
        NucleotideTransformerBackbone.from_config({"model_path": "InstaDeepAI/nucleotide-transformer-500m-human-ref"})
    remote = tmp_path / "v2"
    remote.mkdir()
    cfg = json.loads((nt_folder / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForMaskedLM": "modeling_esm.EsmForMaskedLM"}
    (remote / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="allow_remote_code"):
        NucleotideTransformerBackbone.from_config({"model_path": str(remote)})


@pytest.mark.parametrize("source", ["folder", "nt-demo"])
def test_config_round_trip_and_export(source, nt, tmp_path):
    if source == "folder":
        backbone = nt
    else:
        torch.manual_seed(0)
        backbone = NucleotideTransformerBackbone.from_config(_preset("nt-demo"))
    config = backbone.get_config()
    json.dumps(config)
    exported = backbone.export_files(tmp_path)
    assert exported["model_path"] == "nucleotide-transformer"
    files = {p.name for p in (tmp_path / "nucleotide-transformer").iterdir()}
    assert {"config.json", "vocab.txt"} <= files
    assert not any(name.endswith((".safetensors", ".bin")) for name in files)
    rebuilt_config = {**{k: v for k, v in config.items() if k != "family"}, **exported}
    rebuilt = NucleotideTransformerBackbone.from_config(rebuilt_config, base_dir=tmp_path, load_weights=False)
    assert rebuilt.get_config() == {**config, **exported}
    rebuilt.load_state_dict(backbone.state_dict())
    batch = backbone.collate([[APOE_LIKE, "ACGTN"]])
    with torch.no_grad():
        assert torch.allclose(rebuilt(batch).pooled, backbone(batch).pooled, atol=ATOL)


