"""The auxiliary-feature cache: float16 tokens (half the bytes), spilled to memory-mapped files past a budget."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import toy_backbone  # noqa: F401  (registers the "toy" family)
from anchorad_core.errors import ConfigError
from anchorad_core.modality import Modality
from anchorad_core.training.config import TrainConfig
from anchorad_core.training.evaluate import split_train_val
from anchorad_core.training.features import FeatureCache
from anchorad_core.training.phase2 import anchored_probabilities
from anchorad_core.training.token_store import TokenStore
from anchorad_core.training.trainer import TrainingResult, build_model, run_phase2, train_anchorad
from toy_backbone import toy_config, toy_inputs

#: Stated tolerance of the phase-2 probabilities from the float16 cache against the float32 one.
PROBABILITY_TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def trained():
    """Phase-2 rounds of the (phase-1 untrained) toy backbones, trained on a float32 cache."""
    inputs = toy_inputs(16, drop={"fmri": [1, 5], "genetics": [2]})
    train, val = split_train_val(inputs, 0.25, seed=0)
    config = toy_config()
    model = build_model(config, ["NC", "AD"])
    reference = FeatureCache.compute(model, inputs, token_dtype="float32")
    run_phase2(TrainingResult(model), config, train, val, reference)
    return inputs, model, reference


def _batches(cache: FeatureCache, model, ids: list[str]) -> list:
    return [(m, f) for a in model.anchors() for m, f in cache.aux_for_anchor(a, ids).items()]


def test_half_precision_cache_gives_the_float32_phase2_outputs(trained):
    inputs, model, reference = trained
    half = FeatureCache.compute(model, inputs)
    assert all(s.dtype == np.float16 for s in half.tokens.values())
    for (m, a), (_, b) in zip(_batches(half, model, inputs.subject_ids), _batches(reference, model, inputs.subject_ids)):
        assert a.tokens.dtype == torch.float32  # upcast per batch
        torch.testing.assert_close(a.tokens, b.tokens, rtol=2**-11, atol=1e-6)  # float16 rounding, no more
        assert torch.equal(a.mask, b.mask) and torch.equal(a.present, b.present)
        assert torch.equal(a.readout, b.readout)  # pooled readouts stay float32
    probs16, present16 = anchored_probabilities(model, inputs, half)
    probs32, present32 = anchored_probabilities(model, inputs, reference)
    assert np.array_equal(present16, present32)
    difference = np.nanmax(np.abs(probs16 - probs32))
    assert difference <= PROBABILITY_TOLERANCE, difference
    assert not np.array_equal(np.nan_to_num(probs16), np.nan_to_num(probs32))  # the test sees the rounding


def test_tokens_take_half_the_bytes(trained):
    inputs, model, reference = trained
    half = FeatureCache.compute(model, inputs)
    token_bytes = half.nbytes() - half.pooled_bytes()
    assert token_bytes * 2 == reference.nbytes() - reference.pooled_bytes()
    assert half.float32_nbytes() == reference.nbytes()


def test_spilled_cache_reads_identical_batches_and_cleans_up(trained):
    inputs, model, _ = trained
    in_ram = FeatureCache.compute(model, inputs)
    spilled = FeatureCache.compute(model, inputs, ram_budget_mb=1e-3)  # a ~1 kB budget: spills at once
    assert not in_ram.spilled and spilled.spilled
    folder = spilled._spill_dir
    assert folder is not None and sorted(p.name for p in Path(folder).iterdir()) == sorted(
        f"{m.value}-tokens.float16" for m in Modality)
    assert spilled.disk_bytes() == in_ram.nbytes() - in_ram.pooled_bytes()
    assert spilled.ram_bytes() == spilled.pooled_bytes()
    ids = inputs.subject_ids
    for chunk in (ids[:4], ids[5:13], ids[::-3]):
        for (m, a), (_, b) in zip(_batches(spilled, model, chunk), _batches(in_ram, model, chunk)):
            for x, y in ((a.tokens, b.tokens), (a.mask, b.mask), (a.present, b.present), (a.readout, b.readout)):
                assert torch.equal(x, y), m
    probs_disk, _ = anchored_probabilities(model, inputs, spilled)
    probs_ram, _ = anchored_probabilities(model, inputs, in_ram)
    assert np.array_equal(probs_disk, probs_ram, equal_nan=True)
    spilled.close()
    assert not Path(folder).exists()


def test_replacing_features_of_a_spilled_cache_matches_ram(trained):
    inputs, model, _ = trained
    replacement = FeatureCache.compute(model, inputs.subset(np.arange(3, 9)))
    with torch.no_grad():
        for store in replacement.tokens.values():
            for sid in list(store):
                store.put(sid, np.asarray(store.get(sid), dtype=np.float32) + 1.0)
    caches = [FeatureCache.compute(model, inputs, ram_budget_mb=budget) for budget in (None, 1e-3)]
    for cache in caches:
        cache.update(replacement, Modality.SMRI)
    a, b = (c.aux(Modality.SMRI, inputs.subject_ids) for c in caches)
    assert torch.equal(a.tokens, b.tokens)
    assert torch.equal(a.tokens[3, : a.mask[3].sum()], replacement.aux(Modality.SMRI, [inputs.subject_ids[3]]).tokens[0])


def test_values_beyond_float16_keep_float32_rows():
    store = TokenStore(2)
    store.put("big", np.array([[1e5, -3.0]], dtype=np.float32))
    store.put("small", np.array([[0.1, 2.0]], dtype=np.float32))
    assert store.get("big").dtype == np.float32 and store.get("big")[0, 0] == 1e5
    assert store.get("small").dtype == np.float16
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        store.put("wrong", np.zeros((3, 4)))


def test_training_uses_the_configured_budget():
    with pytest.raises(ConfigError, match="feature_cache_ram_mb"):
        TrainConfig(feature_cache_ram_mb=-1)
    with pytest.raises(ConfigError, match="feature_cache_ram_mb"):
        TrainConfig(feature_cache_ram_mb="lots")
    inputs = toy_inputs(12)
    train, val = split_train_val(inputs, 0.25, seed=0)
    config = toy_config()
    config.feature_cache_ram_mb = 0
    config.cross_fit_folds = 2
    assert TrainConfig.from_dict(config.to_dict()).feature_cache_ram_mb == 0
    result = train_anchorad(config, ["NC", "AD"], train, val)
    assert result.cache.spilled and result.cross_fitted  # cross-fitted rows were written to the files too
    assert result.cache.ram_bytes() == result.cache.pooled_bytes()
