"""Gradient checkpointing of the Hugging Face backbones: the same gradients, fewer kept activations."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from anchorad_core.backbones.registry import build_backbone
from anchorad_core.errors import ConfigError
from anchorad_core.fusion.anchored_round import AnchoredRound
from anchorad_core.fusion.lora import LoraSettings, attach_lora
from anchorad_core.fusion.qformer import AuxiliaryFeatures
from anchorad_core.modality import Modality
from anchorad_core.training.config import TrainConfig
from anchorad_core.training.gradient_checkpointing import (
    checkpointed_layers,
    enable_gradient_checkpointing,
    keep_checkpointing_in_eval,
)
from anchorad_core.training.trainer import build_model
from test_backbone_hf_text import SENTENCES, _write_tiny_llama
from test_backbone_nucleotide import _write_tiny_nt

AUX = Modality.SMRI


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    return {
        "hf-text": _write_tiny_llama(tmp_path_factory.mktemp("llama")),
        "nucleotide-transformer": _write_tiny_nt(tmp_path_factory.mktemp("nt")),
    }


def _inputs(family: str) -> list:
    if family == "hf-text":
        return SENTENCES[:3]
    return [["ACGTACGTAAACCCGGGTTTACGATCGATCGGCTA" * 3], ["TTGACCA" * 9, "ACGTTT" * 5], ["GATTACA" * 11]]


def _training_step(folder: Path, family: str, checkpointing: bool) -> "tuple[dict[str, torch.Tensor], int]":
    """Gradients of one anchored phase-2 step (LoRA, gates, Q-former, head) and the attention calls made."""
    torch.manual_seed(0)
    backbone = build_backbone({"family": family, "model_path": str(folder)})
    if checkpointing:
        assert enable_gradient_checkpointing(backbone)
    peft_model = attach_lora(backbone, LoraSettings(r=4, alpha=8, dropout=0.0))
    anchor = backbone.modality
    round_ = AnchoredRound(anchor, {AUX: 12}, backbone.extra_token_width, backbone.pooled_width, num_queries=3,
                           num_heads=2, qformer_width=16, attention_heads=backbone.attention_heads)
    with torch.no_grad():  # away from the zero start, so that every trainable gets a gradient
        for name, p in backbone.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.1)
        for gate in round_.gates:
            gate.fill_(0.3)
    backbone.eval()
    keep_checkpointing_in_eval(backbone)
    round_.train()
    calls = []
    hooks = [m.register_forward_hook(lambda *_: calls.append(1))
             for name, m in backbone.named_modules() if name.endswith(("self_attn", "attention.self"))]
    generator = torch.Generator().manual_seed(1)
    aux = {AUX: AuxiliaryFeatures(torch.randn(3, 5, 12, generator=generator), torch.ones(3, 5, dtype=torch.bool),
                                  torch.tensor([True, False, True]))}
    batch = backbone.collate(_inputs(family))
    loss = torch.nn.functional.cross_entropy(round_(peft_model, batch, aux).logits, torch.tensor([0, 1, 1]))
    loss.backward()
    for h in hooks:
        h.remove()
    grads = {f"backbone.{n}": p.grad.clone() for n, p in backbone.named_parameters() if p.requires_grad}
    grads.update({f"round.{n}": p.grad.clone() for n, p in round_.named_parameters() if p.grad is not None})
    return grads, len(calls)


@pytest.mark.parametrize("family", ["hf-text", "nucleotide-transformer"])
def test_checkpointed_step_gives_the_same_gradients(folders, family):
    plain, plain_calls = _training_step(folders[family], family, checkpointing=False)
    checked, checked_calls = _training_step(folders[family], family, checkpointing=True)
    assert checked_calls == 2 * plain_calls > 0  # every layer ran again in the backward pass
    assert plain.keys() == checked.keys()
    assert any("lora_A" in k for k in plain) and any("gates" in k for k in plain)
    for name in plain:
        assert plain[name].abs().sum() > 0 or "lora" not in name, name
        torch.testing.assert_close(checked[name], plain[name], rtol=1e-5, atol=1e-7, msg=name)


def test_eval_mode_keeps_dropout_off_but_layers_checkpointing(folders):
    backbone = build_backbone({"family": "hf-text", "model_path": str(folders["hf-text"])})
    keep_checkpointing_in_eval(backbone.eval())  # nothing to keep: not enabled
    assert not any(m.training for m in backbone.modules())
    enable_gradient_checkpointing(backbone)
    backbone.eval()
    keep_checkpointing_in_eval(backbone)
    layers = checkpointed_layers(backbone)
    assert layers and all(layer.training for layer in layers)
    assert not any(m.training for layer in layers for m in layer.modules() if m is not layer)


def test_config_option_is_validated_saved_and_applied(folders):
    with pytest.raises(ConfigError, match="gradient_checkpointing"):
        TrainConfig(gradient_checkpointing="yes")
    config = TrainConfig(backbones={"clinical": {"family": "hf-text", "model_path": str(folders["hf-text"])}},
                         gradient_checkpointing=True)
    assert TrainConfig.from_dict(config.to_dict()).gradient_checkpointing is True
    assert TrainConfig.from_dict({k: v for k, v in config.to_dict().items()
                                  if k != "gradient_checkpointing"}).gradient_checkpointing is False  # older bundles
    model = build_model(config, ["NC", "AD"])
    assert checkpointed_layers(model.backbone(Modality.CLINICAL))
    config.gradient_checkpointing = False
    assert not checkpointed_layers(build_model(config, ["NC", "AD"]).backbone(Modality.CLINICAL))


def test_backbones_without_a_hugging_face_model_are_left_alone():
    backbone = build_backbone("brainmvp-demo", load_weights=False)
    assert enable_gradient_checkpointing(backbone) is False
