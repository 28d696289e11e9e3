"""How far an attention map is from uniform (fast: no model)."""
from __future__ import annotations

import numpy as np
import pytest

from anchorad_core.explain.attention import (
    NEAR_UNIFORM_ENTROPY,
    BlockAttention,
    relative_map,
    uniformity,
)
from anchorad_core.explain.maps import RoiMap, WordMap
from anchorad_core.explain.token_maps import WordScore


def test_uniform_distribution_is_near_uniform():
    u = uniformity(np.full(1200, 1 / 1200))
    assert u.entropy == pytest.approx(1.0) and u.max_ratio == pytest.approx(1.0)
    assert u.near_uniform and u.n_keys == 1200
    assert "near uniform (normalised entropy 1.000): no region stands out" == u.verdict()


def test_the_issues_fmri_map_is_near_uniform():
    # values 0.0007-0.0010 around the uniform 0.00083 (1200 keys), as measured in the issue
    rng = np.random.default_rng(0)
    w = rng.uniform(0.0007, 0.0010, 1200)
    w /= w.sum()
    u = uniformity(w)
    assert u.entropy > 0.99 and u.max_ratio < 1.3 and u.near_uniform


def test_a_peaked_map_is_not_near_uniform():
    w = np.full(100, 1.0)
    w[7] = 50.0  # one key carries a third of the mass
    w /= w.sum()
    u = uniformity(w)
    assert u.max_ratio == pytest.approx(100 * 50 / 149)
    assert u.entropy < NEAR_UNIFORM_ENTROPY and not u.near_uniform
    assert u.verdict().startswith("not uniform")


def test_one_standout_key_among_many_is_not_near_uniform_although_entropy_is_high():
    w = np.full(2000, 1.0)
    w[0] = 5.0
    w /= w.sum()
    u = uniformity(w)
    assert u.entropy > NEAR_UNIFORM_ENTROPY  # the entropy alone would miss it ...
    assert u.max_ratio > 4.9 and not u.near_uniform  # ... the max/uniform ratio does not


def test_masked_keys_are_ignored():
    w = np.array([0.25, 0.25, 0.25, 0.25, 0.0, 0.0])
    mask = np.array([1, 1, 1, 1, 0, 0], bool)
    u = uniformity(w, mask)
    assert u.n_keys == 4 and u.entropy == pytest.approx(1.0) and u.near_uniform
    assert not uniformity(w).near_uniform  # over all six keys two get nothing


def test_relative_map_is_weight_over_uniform():
    n_rois, p = 3, 2
    mean = np.array([0.1, 0.1, 0.2, 0.2, 0.3, 0.1])  # ROI-major tokens
    block = BlockAttention("fmri", mean[None], mean, np.ones(6, bool),
                           RoiMap(mean.reshape(n_rois, p).sum(1), mean.reshape(n_rois, p)))
    rel = relative_map(block)
    np.testing.assert_allclose(rel.roi_time, mean.reshape(n_rois, p) * 6)
    np.testing.assert_allclose(rel.values, [0.6, 1.2, 1.2])  # mean ratio of each ROI's tokens
    note = "memory loss"
    words = [WordScore("memory", 0, 6, 0.5, 1), WordScore("loss", 7, 11, 0.25, 2)]
    wblock = BlockAttention("clinical", np.array([[0.5, 0.125, 0.125, 0.25]]), np.array([0.5, 0.125, 0.125, 0.25]),
                            np.ones(4, bool), WordMap(note, words, 0.25))
    rel = relative_map(wblock)
    assert [w.score for w in rel.words] == [pytest.approx(2.0), pytest.approx(0.5)]
