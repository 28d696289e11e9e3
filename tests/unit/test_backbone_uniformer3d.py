"""BrainMVP 3-D UniFormer backbone: exactness against the original code, loader, extras, LoRA."""
from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from anchorad_core.backbones.base import BackboneOutput
from anchorad_core.backbones.uniformer3d import UniFormer3DBackbone, load_brainmvp_checkpoint
from anchorad_core.errors import CheckpointError, InputDataError

FIX = Path(__file__).parents[1] / "fixtures" / "reference-models"
TINY = dict(depth=[1, 1, 2, 1], embed_dim=[8, 16, 32, 64], head_dim=8, mlp_ratio=4, qkv_bias=True,
            in_chans=1, img_size=32)
ATOL = 1e-5


def _tiny(**overrides) -> UniFormer3DBackbone:
    return UniFormer3DBackbone(**{**TINY, **overrides}).eval()


@pytest.fixture(scope="module")
def io() -> dict[str, torch.Tensor]:
    return load_file(str(FIX / "brainmvp_tiny_io.safetensors"))


@pytest.fixture(scope="module")
def tiny() -> UniFormer3DBackbone:
    model = _tiny()
    load_brainmvp_checkpoint(model, FIX / "brainmvp_tiny.pt")
    return model


# ---------------------------------------------------------------- exactness


@pytest.mark.parametrize("prefix", ["", "noncube_"])
def test_stage_outputs_match_original(tiny, io, prefix):
    captured = {}

    def keep_prenorm(module, args, output) -> None:
        captured["prenorm"] = args[0]

    handle = tiny.norm.register_forward_hook(keep_prenorm)
    try:
        with torch.no_grad():
            stages = tiny.forward_stages(io[prefix + "input"])
    finally:
        handle.remove()
    names = ["out_x0", "out_stage1", "out_stage2", "out_stage3", "out_stage4"]
    x0, x1, x2, x3, x4 = stages  # unpacks like the original forward
    for name, got in zip(names, (x0, x1, x2, x3, x4)):
        want = io[prefix + name]
        assert got.shape == want.shape, name
        assert (got - want).abs().max().item() <= ATOL, name
    assert (captured["prenorm"] - io[prefix + "out_stage4_prenorm"]).abs().max().item() <= ATOL
    assert (stages.x4 - io[prefix + "out_final"]).abs().max().item() <= ATOL


def test_forward_tokens_are_stage4_in_dhw_order(tiny, io):
    with torch.no_grad():
        out = tiny({"image": io["input"]})
    assert isinstance(out, BackboneOutput)
    want = io["out_final"].flatten(2).transpose(1, 2)
    assert out.tokens.shape == (1, 8, 64) and out.mask.all() and out.extra is None
    assert (out.tokens - want).abs().max().item() <= ATOL
    assert (out.pooled - want.mean(1)).abs().max().item() <= ATOL


def test_bare_safetensors_keys_are_the_original_names():
    bare = load_file(str(FIX / "brainmvp_tiny_bare.safetensors"))
    model = _tiny()
    new = {"extra_bridge.weight", "extra_bridge.bias"}
    assert set(model.state_dict()) == set(bare) | new
    state = {**bare, **{k: v for k, v in model.state_dict().items() if k in new}}
    model.load_state_dict(state, strict=True)
    assert "patch_embed1.proj.weight" in bare and "blocks3.0.attn.qkv.weight" in bare
    assert "norm.running_var" in bare


def test_loader_report(tmp_path):
    report = load_brainmvp_checkpoint(_tiny(), FIX / "brainmvp_tiny.pt")
    assert len(report.loaded) == 107
    assert set(report.skipped) == {
        "module.decoder.proj1.proj.weight", "module.decoder.proj1.proj.bias",
        "module.decoder.proj1.norm.weight", "module.decoder.proj1.norm.bias", "module.rep_template"}
    assert report.left_initialised == ["extra_bridge.bias", "extra_bridge.weight"]
    assert "brainmvp_tiny.pt" in report.summary()
    # the bare safetensors goes through the same loader
    assert len(load_brainmvp_checkpoint(_tiny(), FIX / "brainmvp_tiny_bare.safetensors").loaded) == 107


# ---------------------------------------------------------------- input-channel rule


def test_in_chans_rule_skip_is_the_original_behaviour():
    model = _tiny(in_chans=2)
    before = model.patch_embed1.proj.weight.detach().clone()
    report = load_brainmvp_checkpoint(model, FIX / "brainmvp_tiny.pt")
    assert torch.equal(model.patch_embed1.proj.weight, before)
    assert "patch_embed1.proj.weight" in report.skipped and "patch_embed1.proj.bias" in report.skipped
    bare = load_file(str(FIX / "brainmvp_tiny_bare.safetensors"))
    assert torch.equal(model.patch_embed1.norm.weight, bare["patch_embed1.norm.weight"])
    assert torch.equal(model.blocks3[0].attn.qkv.weight, bare["blocks3.0.attn.qkv.weight"])
    assert any("as the original downstream code does" in note for note in report.notes)


def test_in_chans_rule_repeat_preserves_the_response(tiny, io):
    model = _tiny(in_chans=2)
    load_brainmvp_checkpoint(model, FIX / "brainmvp_tiny.pt", in_channels_rule="repeat")
    image = io["input"]
    with torch.no_grad():
        two = model.forward_stages(image.repeat(1, 2, 1, 1, 1)).x4
        one = tiny.forward_stages(image).x4
    assert (two - one).abs().max().item() <= ATOL


def test_in_chans_rule_error():
    with pytest.raises(CheckpointError, match="brainmvp_tiny.pt"):
        load_brainmvp_checkpoint(_tiny(in_chans=4), FIX / "brainmvp_tiny.pt", in_channels_rule="error")


# ---------------------------------------------------------------- unsafe / unfit files


class _WritesAFile:
    """Unpickling this calls ``Path.write_text(target, "pwned")``."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.write_text, (self.target, "pwned"))


def test_pickle_with_code_is_refused(tmp_path):
    control = tmp_path / "control.txt"
    pickle.loads(pickle.dumps(_WritesAFile(control)))  # the payload is live ...
    assert control.read_text() == "pwned"

    target = tmp_path / "pwned.txt"
    evil = tmp_path / "evil_brainmvp.pt"
    bare = load_file(str(FIX / "brainmvp_tiny_bare.safetensors"))
    torch.save({"state_dict": bare, "payload": _WritesAFile(target)}, evil)
    with pytest.raises(CheckpointError, match="evil_brainmvp.pt") as info:
        load_brainmvp_checkpoint(_tiny(), evil)
    assert "refused" in str(info.value)
    assert not target.exists()  # ... but the loader never ran it


def test_unreadable_missing_and_unfit_files(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="garbage.pt"):
        load_brainmvp_checkpoint(_tiny(), garbage)
    with pytest.raises(CheckpointError, match="absent.pt"):
        load_brainmvp_checkpoint(_tiny(), tmp_path / "absent.pt")
    with pytest.raises(CheckpointError, match=r"brainmvp_tiny.pt.*shape mismatch"):
        load_brainmvp_checkpoint(_tiny(embed_dim=[8, 16, 32, 128]), FIX / "brainmvp_tiny.pt")
    with pytest.raises(CheckpointError, match="missing"):
        load_brainmvp_checkpoint(_tiny(depth=[1, 1, 3, 1]), FIX / "brainmvp_tiny.pt")
    weird = tmp_path / "weird.pt"
    torch.save({"state_dict": {**load_file(str(FIX / "brainmvp_tiny_bare.safetensors")),
                               "module.mystery.weight": torch.zeros(2)}}, weird)
    with pytest.raises(CheckpointError, match=r"weird.pt.*unexpected.*mystery"):
        load_brainmvp_checkpoint(_tiny(), weird)


# ---------------------------------------------------------------- appended tokens


def _batch(n: int = 2, size: int = 32) -> dict[str, torch.Tensor]:
    return {"image": torch.randn(n, 1, size, size, size)}


def test_extra_token_width_is_checked(tiny):
    with pytest.raises(ValueError, match="extra_tokens"):
        tiny(_batch(), torch.randn(2, 3, 64))


# Appended tokens (shapes, gradient, masked / unmasked extras, readout), LoRA targets and merging,
# the gated injection at initialisation and the config + weights round trip: test_backbone_contract.py.


# ---------------------------------------------------------------- config, collate, grid


def test_config_round_trip_through_the_registry():
    from anchorad_core.backbones import registry

    for preset in ("brainmvp-demo", "brainmvp-uniformer-s"):
        model = registry.build_backbone(preset, load_weights=False)
        config = model.get_config()
        json.dumps(config)
        assert config["family"] == "uniformer3d"
        again = registry.build_backbone(config, load_weights=False)
        assert again.get_config() == config
        assert {k: v.shape for k, v in again.state_dict().items()} == {
            k: v.shape for k, v in model.state_dict().items()}
    s = registry.build_backbone("brainmvp-uniformer-s", load_weights=False)
    assert s.width == 512 and s.extra_token_width == 320 and s.token_grid() == (6, 6, 6)


def test_from_config_loads_a_relative_checkpoint(tmp_path, io):
    shutil.copy(FIX / "brainmvp_tiny.pt", tmp_path / "weights.pt")
    config = {**TINY, "checkpoint": "weights.pt"}
    model = UniFormer3DBackbone.from_config(config, base_dir=tmp_path).eval()
    with torch.no_grad():
        x4 = model.forward_stages(io["input"]).x4
    assert (x4 - io["out_final"]).abs().max().item() <= ATOL
    untouched = UniFormer3DBackbone.from_config(config, base_dir=tmp_path, load_weights=False).eval()
    with torch.no_grad():
        assert (untouched.forward_stages(io["input"]).x4 - io["out_final"]).abs().max().item() > 1e-3


def test_demo_preset_forward_and_backward():
    from anchorad_core.backbones import registry

    model = registry.build_backbone("brainmvp-demo", load_weights=False)
    batch = model.collate([torch.rand(64, 64, 64).numpy() for _ in range(2)])
    assert batch["image"].shape == (2, 1, 64, 64, 64) and batch["image"].dtype == torch.float32
    out = model(batch, torch.randn(2, 4, model.extra_token_width))
    assert out.tokens.shape == (2, 64, model.width)
    out.pooled.sum().backward()


def test_collate_rejects_bad_volumes(tiny):
    with pytest.raises(InputDataError, match=r"\(32, 32, 32\)"):
        tiny.collate([torch.zeros(32, 32, 31).numpy()])
    bad = torch.zeros(32, 32, 32)
    bad[0, 0, 0] = float("nan")
    with pytest.raises(InputDataError, match="NaN"):
        tiny.collate([bad.numpy()])
    with pytest.raises(InputDataError):
        tiny.collate([])


def test_token_grid_maps_back_to_input_axes(tiny, io):
    shape = tuple(io["noncube_input"].shape[2:])  # (X, Y, Z) = (16, 32, 48)
    d, h, w = tiny.token_grid(shape)
    assert (d, h, w) == (3, 1, 2)
    with torch.no_grad():
        x4 = tiny.forward_stages(io["noncube_input"]).x4
    assert tuple(x4.shape[2:]) == (d, h, w)
    index = torch.arange(d * h * w, dtype=torch.float32)[None]
    grid = tiny.tokens_to_input_grid(index, shape)
    assert grid.shape == (1, 1, 2, 3)  # (X/16, Y/16, Z/16)
    for x in range(1):
        for y in range(2):
            for z in range(3):
                assert grid[0, x, y, z] == z * h * w + x * w + y
