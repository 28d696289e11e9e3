"""Phase 1 -> cache -> phase 2 -> bundle -> reload on tiny toy backbones (seconds)."""
import numpy as np
import pytest
import torch

import toy_backbone  # noqa: F401  (registers the "toy" family)
from anchorad_core.bundle import load_bundle, save_bundle
from anchorad_core.errors import BundleError
from anchorad_core.fusion.lora import base_state_dict
from anchorad_core.inference import DiagnosisPipeline
from anchorad_core.modality import Modality
from anchorad_core.training.evaluate import split_train_val
from anchorad_core.training.features import FeatureCache
from anchorad_core.training.phase2 import anchored_probabilities
from anchorad_core.training.trainer import run_phase1, run_phase2, train_anchorad
from toy_backbone import toy_config, toy_inputs


@pytest.fixture(scope="module")
def trained():
    inputs = toy_inputs(24, drop={"fmri": [1, 5], "genetics": [2]})
    train, val = split_train_val(inputs, 0.25, seed=0)
    result = train_anchorad(toy_config(), ["NC", "AD"], train, val)
    return inputs, train, val, result


def test_lora_leaves_phase1_base_weights_untouched():
    inputs = toy_inputs(16)
    train, val = split_train_val(inputs, 0.25, seed=0)
    config = toy_config()
    result = run_phase1(config, ["NC", "AD"], train, val)
    before = {m: {k: v.clone() for k, v in base_state_dict(result.model.backbone(m)).items()} for m in Modality}
    cache = FeatureCache.compute(result.model, inputs)
    run_phase2(result, config, train, val, cache)
    model = result.model
    for m in Modality:
        after = base_state_dict(model.backbone(m))
        assert after.keys() == before[m].keys()
        for k in after:
            assert torch.equal(after[k], before[m][k]), (m, k)
        lora = [n for n, _ in model.backbone(m).named_parameters() if "lora_" in n]
        assert lora, "LoRA adapters were injected"
    # With the adapter off, the backbone gives back exactly the cached phase-1 features.
    batch = model.backbone(Modality.SMRI).collate([inputs.samples[Modality.SMRI][0]])
    torch.testing.assert_close(model.encode(Modality.SMRI, batch).pooled[0], cache.pooled[Modality.SMRI]["sub-00"])


def test_every_anchor_has_a_round_and_missing_subjects_have_none(trained):
    inputs, _, _, result = trained
    probs, present = anchored_probabilities(result.model, inputs, result.cache)
    assert probs.shape == (4, 24, 2)
    assert not present[1, 1] and not present[1, 5] and not present[3, 2]
    assert np.isnan(probs[1, 1]).all() and np.allclose(probs[0].sum(-1), 1)


def test_bundle_round_trip_gives_identical_predictions(trained, tmp_path):
    inputs, _, _, result = trained
    path = save_bundle(result.model, toy_config(), tmp_path / "bundle")
    loaded = load_bundle(path)
    # the final phase-1 features on both sides (result.cache holds cross-fitted ones for training subjects)
    before, _ = anchored_probabilities(result.model, inputs, FeatureCache.compute(result.model, inputs))
    after, _ = anchored_probabilities(loaded.model, inputs, FeatureCache.compute(loaded.model, inputs))
    np.testing.assert_allclose(after, before, atol=1e-6)
    assert loaded.model.round_weights == pytest.approx(result.model.round_weights)
    assert not any(p.suffix in {".pt", ".pth", ".pkl", ".bin"} for p in path.rglob("*"))


def test_bundle_refuses_overwrite_tampering_and_unknown_version(trained, tmp_path):
    _, _, _, result = trained
    path = save_bundle(result.model, toy_config(), tmp_path / "b")
    with pytest.raises(BundleError, match="already exists"):
        save_bundle(result.model, toy_config(), path)
    weights = path / "weights" / "smri.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    with pytest.raises(BundleError, match="hash mismatch") as info:
        load_bundle(path)
    assert "smri.safetensors" in str(info.value)


def test_pipeline_names_missing_modalities(trained, tmp_path):
    inputs, _, _, result = trained
    path = save_bundle(result.model, toy_config(), tmp_path / "bundle")
    pipeline = DiagnosisPipeline(path, device="cpu")

    class Subject:
        subject_id = "sub-x"
        smri = inputs.samples[Modality.SMRI][0]
        fmri = None
        clinical = inputs.samples[Modality.CLINICAL][0]
        genetics = None

    diagnosis = pipeline.diagnose(Subject())
    out = diagnosis.to_dict()
    assert out["modalities_missing"] == ["fmri", "genetics"]
    assert [r["anchor"] for r in out["rounds"]] == ["smri", "clinical"]
    assert sum(out["aggregate"]["probabilities"].values()) == pytest.approx(1.0)
    assert all(r["auxiliaries_missing"] == ["fmri", "genetics"] for r in out["rounds"])
