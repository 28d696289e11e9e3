"""Brain-JEPA backbone and connectivity gradients: exactness, loader, extras, LoRA, bundles."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

from anchorad_core.backbones.brainjepa import BrainJEPABackbone, load_brainjepa_checkpoint, sincos_1d
from anchorad_core.backbones.gradients import connectivity_gradients, load_gradient_csv
from anchorad_core.errors import CheckpointError, ConfigError, InputDataError
from anchorad_core.resources import resolve_path

FIX = Path(__file__).parents[1] / "fixtures" / "reference-models"
GRADIENT_450 = FIX / "gradient_mapping_450.csv"
TINY = dict(n_rois=450, n_frames=160, patch_size=16, embed_dim=32, depth=2, num_heads=2,
            mlp_ratio=4, qkv_bias=True, gradient_path=str(GRADIENT_450))
SHARED_DATA = Path("/work/shared/data")
ATOL = 1e-5


def _tiny(**overrides) -> BrainJEPABackbone:
    return BrainJEPABackbone(**{**TINY, **overrides}).eval()


@pytest.fixture(scope="module")
def io() -> dict[str, torch.Tensor]:
    return load_file(str(FIX / "brainjepa_tiny_io.safetensors"))


@pytest.fixture(scope="module")
def head() -> dict[str, torch.Tensor]:
    return load_file(str(FIX / "brainjepa_tiny_downstream_head.safetensors"))


@pytest.fixture(scope="module")
def tiny(head) -> BrainJEPABackbone:
    model = _tiny()
    load_brainjepa_checkpoint(model, FIX / "brainjepa_tiny.pth")
    model.fc_norm.load_state_dict({"weight": head["fc_norm.weight"], "bias": head["fc_norm.bias"]})
    return model


def _maxdiff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return (a - b).abs().max().item()


# ---------------------------------------------------------------- exactness


def test_gradient_csv_parses_like_the_original(io):
    gradient = load_gradient_csv(GRADIENT_450)
    assert gradient.dtype == torch.float32 and gradient.shape == (1, 450, 30)
    assert torch.equal(gradient, io["gradient"])


def test_outputs_match_original(tiny, io, head):
    with torch.no_grad():
        out = tiny({"series": io["input"]})
        patch = tiny.patch_embed(io["input"])[:, :100]
        rows = tiny.pos_embed_proj.gradient_rows(tiny.gradient)
        logits = torch.nn.functional.linear(out.pooled, head["head.weight"], head["head.bias"])
    assert _maxdiff(out.tokens, io["out_tokens"]) <= ATOL
    assert _maxdiff(patch, io["patch_tokens_first100"]) <= ATOL
    assert _maxdiff(rows, io["pos_embed_grad_rows"]) <= ATOL
    assert _maxdiff(out.tokens.mean(1), io["ds_pooled_mean"]) <= ATOL
    assert _maxdiff(out.pooled, io["ds_fc_norm_out"]) <= ATOL
    assert _maxdiff(logits, io["ds_logits"]) <= ATOL
    assert out.mask.shape == (1, 4500) and out.mask.all() and out.extra is None


def test_fixed_sincos_half_is_rebuilt_exactly():
    stored = load_file(str(FIX / "brainjepa_tiny_bare.safetensors"))["pos_embed_proj.emb_h"]
    assert torch.equal(_tiny().pos_embed_proj.emb_h, stored)


def test_target_encoder_is_the_default_key(io):
    other = _tiny()
    load_brainjepa_checkpoint(other, FIX / "brainjepa_tiny.pth", key="encoder")
    with torch.no_grad():
        assert _maxdiff(other({"series": io["input"]}).tokens, io["out_tokens"]) > 1e-2


def test_bare_safetensors_keys_are_the_original_names(io, head):
    bare = load_file(str(FIX / "brainjepa_tiny_bare.safetensors"))
    model = _tiny()
    pooling = {"fc_norm.weight", "fc_norm.bias"}
    assert set(model.state_dict()) == set(bare) | pooling
    model.load_state_dict({**bare, **{k: head[k] for k in pooling}}, strict=True)
    with torch.no_grad():
        out = model({"series": io["input"]})
    assert _maxdiff(out.pooled, io["ds_fc_norm_out"]) <= ATOL


def test_loader_report_and_errors(tmp_path):
    report = load_brainjepa_checkpoint(_tiny(), FIX / "brainjepa_tiny.pth")
    assert len(report.loaded) == 31
    assert report.left_initialised == ["fc_norm.bias", "fc_norm.weight"]
    with pytest.raises(CheckpointError, match=r"brainjepa_tiny.pth.*'predictor'"):
        load_brainjepa_checkpoint(_tiny(), FIX / "brainjepa_tiny.pth", key="predictor")
    with pytest.raises(CheckpointError, match=r"brainjepa_tiny.pth.*shape mismatch"):
        load_brainjepa_checkpoint(_tiny(embed_dim=64, num_heads=4), FIX / "brainjepa_tiny.pth")
    with pytest.raises(CheckpointError, match=r"brainjepa_tiny.pth.*missing.*blocks\.2"):
        load_brainjepa_checkpoint(_tiny(depth=3), FIX / "brainjepa_tiny.pth")


def test_pickle_with_code_is_refused(tmp_path):
    bare = load_file(str(FIX / "brainjepa_tiny_bare.safetensors"))
    # an arbitrary object next to the weights (as an optimizer pickled by class would be)
    odd = tmp_path / "jepa-latest.pth.tar"
    torch.save({"target_encoder": {f"module.{k}": v for k, v in bare.items()}, "opt": _Global()}, odd)
    with pytest.raises(CheckpointError, match="jepa-latest.pth.tar"):
        load_brainjepa_checkpoint(_tiny(), odd)
    # a payload that would write a file is refused before it runs
    target = tmp_path / "pwned.txt"
    evil = tmp_path / "evil.pth"
    torch.save({"target_encoder": {f"module.{k}": v for k, v in bare.items()},
                "x": _WritesAFile(target)}, evil)
    with pytest.raises(CheckpointError, match="evil.pth"):
        load_brainjepa_checkpoint(_tiny(), evil)
    assert not target.exists()
    pickle.loads(pickle.dumps(_WritesAFile(target)))  # control: the payload was live
    assert target.exists()


class _Global:
    """An arbitrary object: weights_only loading must refuse it."""


class _WritesAFile:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.write_text, (self.target, "pwned"))


def test_fine_tuned_models_vit_state_dict_is_accepted(tmp_path, io, head):
    bare = load_file(str(FIX / "brainjepa_tiny_bare.safetensors"))
    state = {f"encoder.{k}": v for k, v in bare.items()}
    state.update(head)  # fc_norm.* and head.*
    path = tmp_path / "finetuned.safetensors"
    save_file(state, str(path))
    model = _tiny()
    report = load_brainjepa_checkpoint(model, path)
    assert set(report.skipped) == {"head.weight", "head.bias"}
    with torch.no_grad():
        assert _maxdiff(model({"series": io["input"]}).pooled, io["ds_fc_norm_out"]) <= ATOL


# ---------------------------------------------------------------- other frame counts


def test_time_patches_generalise_beyond_the_hardcoded_ten():
    model = _tiny(n_frames=48)  # 3 time patches
    report = load_brainjepa_checkpoint(model, FIX / "brainjepa_tiny.pth")
    assert "pos_embed_proj.emb_h" in report.skipped
    assert model.num_tokens == 450 * 3
    with torch.no_grad():
        pos = model.positional_embedding()[0]
        rows = model.pos_embed_proj.gradient_rows(model.gradient)
    first = torch.from_numpy(sincos_1d(16, np.tile(np.arange(3.0), 450))).float()
    assert torch.equal(pos[:, :16], first)
    assert torch.equal(pos[:, 16:], rows.repeat_interleave(3, dim=0))
    assert pos[:, 16:].min() == -1 and pos[:, 16:].max() == 1  # one global min-max scaling
    out = model({"series": torch.randn(2, 1, 450, 48)})
    assert out.tokens.shape == (2, 1350, 32)


# Appended tokens (shapes, gradient, masked / unmasked extras, readout), LoRA targets and merging,
# the gated injection at initialisation and the config + weights round trip: test_backbone_contract.py.


# ---------------------------------------------------------------- config, bundle, presets


def test_config_round_trip_through_the_registry():
    from anchorad_core.backbones import registry

    model = registry.build_backbone("brainjepa-demo", load_weights=False)
    config = model.get_config()
    json.dumps(config)
    assert config["gradient_path"] == "resource:gradients/schaefer400_17n_gradients.csv"
    again = registry.build_backbone(config, load_weights=False)
    assert again.get_config() == config
    assert model.num_tokens == 400 * 3 and model.width == 64
    with pytest.raises(ConfigError, match="gradient_path"):
        registry.build_backbone("brainjepa-vit-b", load_weights=False)
    vitb = registry.resolve_config({"preset": "brainjepa-vit-b", "gradient_path": str(GRADIENT_450)})
    assert (vitb["n_rois"], vitb["n_frames"], vitb["embed_dim"], vitb["depth"], vitb["num_heads"]) == (
        450, 160, 768, 12, 12)


def test_export_files_makes_a_self_contained_bundle(tmp_path):
    from anchorad_core.backbones import registry

    model = registry.build_backbone("brainjepa-demo", load_weights=False)
    updates = model.export_files(tmp_path)
    assert (tmp_path / updates["gradient_path"]).is_file()
    config = {**model.get_config(), **updates}
    rebuilt = registry.build_backbone(config, base_dir=tmp_path, load_weights=False)
    rebuilt.load_state_dict(model.state_dict())
    assert torch.equal(rebuilt.gradient, model.gradient)
    assert torch.equal(rebuilt.positional_embedding(), model.positional_embedding())


def test_from_config_loads_a_relative_checkpoint(io):
    config = {**TINY, "gradient_path": "gradient_mapping_450.csv", "checkpoint": "brainjepa_tiny.pth"}
    model = BrainJEPABackbone.from_config(config, base_dir=FIX).eval()
    with torch.no_grad():
        assert _maxdiff(model({"series": io["input"]}).tokens, io["out_tokens"]) <= ATOL


def test_demo_preset_collate_forward_backward():
    from anchorad_core.backbones import registry

    model = registry.build_backbone("brainjepa-demo", load_weights=False)
    batch = model.collate([np.random.randn(400, 48).astype(np.float32) for _ in range(2)])
    assert batch["series"].shape == (2, 1, 400, 48)
    out = model(batch, torch.randn(2, 4, 64))
    out.pooled.sum().backward()
    with pytest.raises(InputDataError, match=r"\(400, 48\)"):
        model.collate([np.zeros((400, 47))])
    with pytest.raises(InputDataError, match="NaN"):
        model.collate([np.full((400, 48), np.nan)])


def test_gradient_row_count_must_match_rois():
    with pytest.raises(ConfigError, match="450 rows"):
        _tiny(n_rois=400)


# ---------------------------------------------------------------- gradients


def test_shipped_demo_gradients_are_reproducible():
    shipped = resolve_path("resource:gradients/schaefer400_17n_gradients.csv")
    values = load_gradient_csv(shipped)
    assert values.shape == (1, 400, 30)
    fc_path = SHARED_DATA / "hcp_schaefer400_mean_fc.csv.gz"
    labels_path = SHARED_DATA / "schaefer400_17n_labels.tsv"
    if not fc_path.is_file():
        pytest.skip("shared group FC not available")
    fc = np.loadtxt(fc_path, delimiter=",")
    idx = pd.read_csv(labels_path, sep="\t")["group_fc_index"].to_numpy()
    gradients, lambdas = connectivity_gradients(fc[np.ix_(idx - 1, idx - 1)], n_components=30)
    np.testing.assert_allclose(gradients, np.loadtxt(shipped, delimiter=","), atol=1e-6, rtol=0)
    assert np.all(np.diff(lambdas) <= 0)


def test_connectivity_gradients_conventions():
    rng = np.random.default_rng(0)
    series = rng.standard_normal((60, 200))
    series[:30] += rng.standard_normal(200) * 2  # two communities
    series[30:] += rng.standard_normal(200) * 2
    fc = np.corrcoef(series)
    grads, lambdas = connectivity_gradients(fc, n_components=5)
    assert grads.shape == (60, 5) and lambdas.shape == (5,)
    # the first gradient separates the two communities
    assert np.sign(grads[:30, 0]).std() == 0 and np.sign(grads[30:, 0]).std() == 0
    assert np.sign(grads[0, 0]) != np.sign(grads[59, 0])
    # each column's largest-magnitude entry is positive
    assert np.all(grads[np.abs(grads).argmax(0), np.arange(5)] > 0)
    again, _ = connectivity_gradients(fc, n_components=5)
    np.testing.assert_array_equal(grads, again)
    le, _ = connectivity_gradients(fc, n_components=5, approach="le")
    assert abs(np.corrcoef(le[:, 0], grads[:, 0])[0, 1]) > 0.9


def test_bad_gradient_csv(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(InputDataError, match="bad.csv"):
        load_gradient_csv(bad)
    with pytest.raises(InputDataError, match="missing.csv"):
        load_gradient_csv(tmp_path / "missing.csv")
