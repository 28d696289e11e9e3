"""``anchorad backbones --plan``: parameter counts against a hand count, memory against autograd, the paper figures."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from anchorad_core.backbones.inventory import size_backbone
from anchorad_core.backbones.registry import build_backbone
from anchorad_core.cli import main
from anchorad_core.errors import ConfigError
from anchorad_core.fusion.anchored_round import AnchoredRound
from anchorad_core.fusion.lora import LoraSettings, attach_lora
from anchorad_core.fusion.qformer import AuxiliaryFeatures
from anchorad_core.modality import Modality
from anchorad_core.planning import PAPER_PRESETS, format_plan, plan_run, presets_by_modality
from anchorad_core.planning import memory
from anchorad_core.planning.backbone_shape import backbone_shape
from anchorad_core.training.config import TrainConfig
from anchorad_core.training.gradient_checkpointing import enable_gradient_checkpointing, keep_checkpointing_in_eval
from test_backbone_hf_text import _write_tiny_llama
from test_backbone_nucleotide import _write_tiny_nt

GiB = 2**30


@pytest.fixture(scope="module")
def tiny_specs(tmp_path_factory) -> dict[str, object]:
    """One small config per modality: the demo UniFormer and Brain-JEPA, a tiny LLaMA, a tiny NT."""
    return {
        "smri": "brainmvp-demo",
        "fmri": "brainjepa-demo",
        "clinical": {"family": "hf-text", "model_path": str(_write_tiny_llama(tmp_path_factory.mktemp("llama"))),
                     "max_length": 48},
        "genetics": {"family": "nucleotide-transformer", "model_path": str(_write_tiny_nt(tmp_path_factory.mktemp("nt")))},
    }


# ------------------------------------------------------------------------------------ parameters


def _qformer_layer(d: int) -> int:
    """QFormerLayer(d): 4 LayerNorms, 2 MultiheadAttention (in 3d·d + 3d, out d·d + d), FFN d -> 2d -> d."""
    return 4 * 2 * d + 2 * (4 * d * d + 4 * d) + (d * 2 * d + 2 * d) + (2 * d * d + d)


def _hand_count(anchor: str, r: int, d: int, nq: int) -> dict[str, int]:
    """Trainable parameters of the tiny rounds, counted from the architectures' numbers."""
    widths = {"smri": 48, "fmri": 64, "clinical": 32, "genetics": 32}  # token widths C_m
    extra_width = {"smri": 32}.get(anchor, widths[anchor])  # the UniFormer takes H_a at stage 3's width
    pooled = {"smri": 48 + 8 * (8 + 16), "fmri": 64 + 2 * 17, "clinical": 32, "genetics": 32}[anchor]
    lora = {
        # UniFormer: blocks3 (2 blocks, C=32) and blocks4 (1 block, C=48): qkv C -> 3C, proj C -> C
        "smri": 2 * r * ((32 + 96) + (32 + 32)) + 1 * r * ((48 + 144) + (48 + 48)),
        # Brain-JEPA: 2 blocks, C=64: qkv and proj
        "fmri": 2 * r * ((64 + 192) + (64 + 64)),
        # LLaMA: 2 layers, h=32, 4 heads of 8, 2 key/value heads: q 32->32, k 32->16, v 32->16, o 32->32
        "clinical": 2 * r * ((32 + 32) + (32 + 16) + (32 + 16) + (32 + 32)),
        # ESM: 2 layers, h=32: query, key, value, attention output dense
        "genetics": 2 * 4 * r * (32 + 32),
    }[anchor]
    aux = [m for m in widths if m != anchor]
    qformer = (len(aux) + 1) * _qformer_layer(d) + (len(aux) + 1) * nq * d + (len(aux) + 1) * d + 2 * d
    projections = sum(widths[m] * d + d for m in aux) + d * extra_width + extra_width
    if anchor == "smri":
        projections += 32 * 48 + 48  # the trainable copy of extra_bridge (stage 3 -> stage 4)
    gates = {"smri": 2 * 2 + 1 * 3, "fmri": 2 * 4, "clinical": 2 * 4, "genetics": 2 * 4}[anchor]
    head = pooled * 2 + 2
    return {"lora": lora, "qformer": qformer, "projections": projections, "gates": gates, "head": head,
            "trainable": lora + qformer + projections + gates + head}


def test_plan_counts_equal_a_hand_count(tiny_specs):
    config = TrainConfig(num_queries=3, qformer_width=16, qformer_heads=2, lora=LoraSettings(r=4, alpha=8))
    plan = plan_run(config, tiny_specs)
    assert [r["anchor"] for r in plan["rounds"]] == ["smri", "fmri", "clinical", "genetics"]
    for r in plan["rounds"]:
        expected = _hand_count(r["anchor"], 4, 16, 3)
        got = {k: r["parameters"][k] for k in expected}
        assert got == expected, r["anchor"]
        assert r["parameters"]["frozen"] == size_backbone(tiny_specs[r["anchor"]])["parameters"]
        assert r["appended_tokens"] == 4 * 3  # three auxiliary blocks and the cross block of N_q each
        assert r["memory"]["trainable_state_bytes"] == 16 * expected["trainable"]
    frozen = sum(b["parameters"] for b in plan["backbones"])
    others = [sum(o["parameters"]["trainable"] for o in plan["rounds"] if o is not r) for r in plan["rounds"]]
    heads = sum(2 * (p + 1) for p in (240, 98, 32, 32))
    assert [r["memory"]["weights_bytes"] for r in plan["rounds"]] == [2 * frozen + 4 * (o + heads) for o in others]
    json.loads(json.dumps(plan))  # --json ready


def test_lora_count_is_what_training_injects(tiny_specs):
    for modality, spec in tiny_specs.items():
        backbone = build_backbone(spec, load_weights=False)
        attach_lora(backbone, LoraSettings(r=4, alpha=8))
        injected = sum(p.numel() for n, p in backbone.named_parameters() if "lora_" in n)
        assert injected == _hand_count(modality, 4, 16, 3)["lora"], modality


# ------------------------------------------------------------------------------------ activations


def _sample(backbone, family: str) -> list:
    rng = np.random.default_rng(0)
    if family == "hf-text":  # longer than max_length: truncated to it, the estimate's length
        return [" ".join(["patient reports memory loss and word finding problems"] * 30)]
    if family == "nucleotide-transformer":  # two strings of one full 64-token window each
        return [["ACGTAC" * 63, "GGTACA" * 63]]
    if family == "uniformer3d":
        return [rng.random((backbone.img_size,) * 3, dtype=np.float32)]
    return [rng.random((backbone.n_rois, backbone.n_frames), dtype=np.float32)]


def _saved_bytes(spec, lora: LoraSettings, checkpointing: bool = False) -> "tuple[int, object, int]":
    """Bytes autograd keeps after a bfloat16 anchored forward (unique storages, weights excluded)."""
    torch.manual_seed(0)
    shape = backbone_shape(spec)
    backbone = build_backbone(spec, load_weights=False).to(torch.bfloat16)
    if checkpointing:
        assert enable_gradient_checkpointing(backbone)
    peft_model = attach_lora(backbone, lora)
    aux_modality = Modality.FMRI if shape.modality is Modality.SMRI else Modality.SMRI
    round_ = AnchoredRound(backbone.modality, {aux_modality: 12}, backbone.extra_token_width, backbone.pooled_width,
                           num_queries=4, num_heads=2, qformer_width=16, attention_heads=backbone.attention_heads)
    batch = backbone.collate(_sample(backbone, shape.family))
    if shape.family in ("uniformer3d", "brainjepa"):  # these take their input in the weights' dtype
        round_.to(torch.bfloat16)
        batch = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in batch.items()}
    dtype = next(round_.parameters()).dtype
    aux = {aux_modality: AuxiliaryFeatures(torch.randn(1, 30, 12, dtype=dtype), torch.ones(1, 30, dtype=torch.bool),
                                           torch.ones(1, dtype=torch.bool))}
    backbone.eval()
    keep_checkpointing_in_eval(backbone)
    for name, module in backbone.named_modules():
        if "lora_dropout" in name:
            module.train()
    weights = {t.untyped_storage().data_ptr() for t in [*backbone.parameters(), *backbone.buffers(), *round_.parameters()]}
    kept: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in weights:
            kept[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        round_(peft_model, batch, aux)
    estimate = memory.estimate_activations(shape, round_.qformer.num_tokens, {aux_modality.value: (30, 12)}, 16, lora)
    return sum(kept.values()), estimate, round_.qformer.num_tokens


@pytest.mark.parametrize("modality", ["smri", "fmri", "clinical", "genetics"])
def test_activation_estimate_matches_what_autograd_keeps(tiny_specs, modality, monkeypatch):
    monkeypatch.setattr(memory, "DROPOUT_MASK_BYTES", 4)  # the CPU's dropout keeps a float mask (a GPU's a bool one)
    spec = {"preset": "brainjepa-demo", "n_frames": 32} if modality == "fmri" else tiny_specs[modality]  # 800 tokens
    for dropout in (0.0, 0.05):
        kept, estimate, _ = _saved_bytes(spec, LoraSettings(r=4, alpha=8, dropout=dropout))
        ratio = (estimate.layers + estimate.outside) / kept
        assert 0.8 <= ratio <= 1.25, (modality, dropout, ratio)


@pytest.mark.parametrize("modality", ["clinical", "genetics"])
def test_checkpointed_estimate_matches_what_autograd_and_the_checkpoints_keep(tiny_specs, modality):
    lora = LoraSettings(r=4, alpha=8)
    plain, _, _ = _saved_bytes(tiny_specs[modality], lora)
    kept, estimate, appended = _saved_bytes(tiny_specs[modality], lora, checkpointing=True)
    shape = backbone_shape(tiny_specs[modality])
    # the checkpoints hold each layer's input themselves (autograd's hooks do not see them): 2h bytes per token
    inputs = sum(len(s.layers) * s.sequences * (s.tokens + appended) * 2 * shape.width for s in shape.stacks)
    assert inputs == estimate.layer_inputs
    ratio = (estimate.layer_inputs + estimate.outside) / (kept + inputs)
    assert 0.8 <= ratio <= 1.25, ratio
    assert kept + inputs < 0.5 * plain
    assert estimate.with_checkpointing < estimate.without_checkpointing


# ------------------------------------------------------------------------------------ the paper run


@pytest.fixture(scope="module")
def paper_plan() -> dict:
    return plan_run()


def test_paper_presets_fit_the_targets(paper_plan):
    rounds = {r["anchor"]: r for r in paper_plan["rounds"]}
    assert [b["preset"] for b in paper_plan["backbones"]] == list(PAPER_PRESETS.values())
    llama = rounds["clinical"]
    assert llama["preset"] == "llama-2-13b"
    assert llama["parameters"]["trainable"] <= 60e6
    assert llama["parameters"]["lora"] == 40 * 4 * 8 * (5120 + 5120)  # q, k, v, o of 40 layers at r=8
    assert llama["memory"]["checkpointing"] and llama["memory"]["peak_checkpointed_bytes"] <= 40 * GiB
    assert llama["memory"]["peak_checkpointed_bytes"] < llama["memory"]["peak_bytes"]
    assert llama["layers"] == [{"stack": "layers", "layers": 40, "tokens": 512 + 64, "sequences": 1}]
    for r in paper_plan["rounds"]:  # every round holds the 13B text model's weights (one device)
        assert r["memory"]["weights_bytes"] >= 2 * 12.8e9
        assert r["memory"]["checkpointing"] == (r["anchor"] in ("clinical", "genetics"))
    text = format_plan(paper_plan)
    assert "llama-2-13b" in text and "n/a (not HF)" in text and "GiB" in text


def test_presets_are_one_per_modality():
    assert presets_by_modality(["nt-demo", "llama-2-7b"]) == {"genetics": "nt-demo", "clinical": "llama-2-7b"}
    with pytest.raises(ConfigError, match="both clinical"):
        presets_by_modality(["llama-2-7b", "llama-2-13b"])
    with pytest.raises(ConfigError, match="unknown backbone preset"):
        presets_by_modality(["llama-3-70b"])
    with pytest.raises(ConfigError, match="batch-size"):
        plan_run(batch_size=0)


def test_cli_plan_prints_json_and_one_line_errors(capsys):
    assert main(["backbones", "--plan", "--demo", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert [b["preset"] for b in plan["backbones"]] == ["brainmvp-demo", "brainjepa-demo", "minilm-l6", "nt-demo"]
    assert plan["settings"]["num_queries"] == TrainConfig.demo().num_queries
    assert main(["backbones", "--plan", "--presets", "llama-2-13b,nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown backbone preset 'nope'" in err[0]
