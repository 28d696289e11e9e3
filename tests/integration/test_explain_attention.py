"""Q-former attention maps: rows sum to 1, sMRI on the T1 grid, one value per ROI, words, bases."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from anchorad_core.explain.attention import check_rows_sum_to_one
from anchorad_core.explain.maps import paint_atlas
from anchorad_core.modality import Modality
pytestmark = pytest.mark.slow  # trains a tiny bundle once per session (~2-4 min on 2 CPU cores)



def test_raw_attention_rows_sum_to_one_before_mapping(explained):
    subject, diagnosis, explanation, _ = explained
    for r in explanation.rounds:
        assert set(r.attention) >= {"cross"}
        for name, block in r.attention.items():
            # per query, over the valid keys (mean over heads): 1
            assert np.allclose(block.per_query.sum(axis=1), 1.0, atol=1e-4), (r.anchor, name)
            assert np.allclose(block.mean.sum(), 1.0, atol=1e-4)
            assert np.all(block.per_query[:, ~block.key_mask] < 1e-6)


def test_check_rows_sum_to_one_rejects_bad_weights():
    good = torch.softmax(torch.randn(2, 3, 5), -1)
    check_rows_sum_to_one(good, torch.ones(5, dtype=torch.bool))
    with pytest.raises(ValueError):
        check_rows_sum_to_one(good * 0.5, torch.ones(5, dtype=torch.bool))


def test_smri_maps_have_the_t1_shape_and_affine(explained):
    subject, _, explanation, _ = explained
    t1 = nib.load(explanation.t1_path)
    maps = [r.attention["smri"].map for r in explanation.rounds if "smri" in r.attention]
    maps += [r.attribution.maps["smri"] for r in explanation.rounds]
    assert maps
    for mp in maps:
        assert mp.data.shape == t1.shape[:3]
        assert np.allclose(mp.affine, t1.affine)
        assert np.isfinite(mp.data).all()
    # the attention map conserves the mass on the token grid (undoing the (Z, X, Y) order)
    block = next(r.attention["smri"] for r in explanation.rounds if "smri" in r.attention)
    assert block.map.cube.shape == (4, 4, 4) or block.map.cube.ndim == 3
    assert np.isclose(block.map.cube.sum(), 1.0, atol=1e-4)


def test_token_grid_order_is_undone():
    from anchorad_core.backbones.uniformer3d import UniFormer3DBackbone

    bb = UniFormer3DBackbone(depth=(1, 1, 1, 1), embed_dim=(8, 16, 32, 48), head_dim=16, img_size=64)
    scores = torch.zeros(64)
    # token index i sits at (z, x, y) = unravel(i, (4, 4, 4)): put one at z=3, x=1, y=0
    scores[np.ravel_multi_index((3, 1, 0), (4, 4, 4))] = 1.0
    grid = bb.tokens_to_input_grid(scores, (64, 64, 64))
    assert grid[1, 0, 3] == 1.0 and grid.sum() == 1.0


def test_roi_maps_have_one_value_per_atlas_roi(explained):
    from anchorad_core.data.templates import atlas_image, atlas_labels

    _, _, explanation, _ = explained
    n = len(atlas_labels("schaefer400_17n"))
    block = next(r.attention["fmri"] for r in explanation.rounds if "fmri" in r.attention)
    assert block.map.values.shape == (n,)
    assert block.map.roi_time.shape[0] == n
    assert np.isclose(block.map.values.sum(), 1.0, atol=1e-4)
    table = block.map.table()
    assert len(table) == n and list(table.columns) == ["roi_index", "name", "network", "value"]
    painted = np.asarray(paint_atlas(block.map.values).dataobj)
    labels = np.asarray(atlas_image().dataobj)
    r = int(np.argmax(block.map.values))
    assert np.allclose(painted[labels == r + 1], block.map.values[r])
    assert np.all(painted[labels == 0] == 0)


def test_word_and_base_maps_align_with_the_inputs(explained):
    subject, _, explanation, _ = explained
    r = next(r for r in explanation.rounds if "clinical" in r.attention)
    words = r.attention["clinical"].map.words
    assert [w.word for w in words] == subject.clinical.split()
    assert np.isclose(sum(w.score for w in words) + r.attention["clinical"].map.special, 1.0, atol=1e-4)
    g = next(r for r in explanation.rounds if "genetics" in r.attention).attention["genetics"].map
    assert [len(t) for t in g.tracks] == [len(s) for s in subject.genetics]
    assert np.isclose(g.total + g.special, 1.0, atol=1e-4)
    # IG maps of the anchor's own text align too
    ig = explanation.round("clinical").attribution.maps["clinical"]
    assert [w.word for w in ig.words] == subject.clinical.split()


def test_cross_block_shares(explained):
    _, _, explanation, _ = explained
    for r in explanation.rounds:
        cross = r.attention["cross"]
        assert set(cross.shares) == {m.value for m in Modality if m.value != r.anchor}
        assert np.isclose(sum(cross.shares.values()), 1.0, atol=1e-4)
        assert np.allclose(cross.query_shares.sum(axis=1), 1.0, atol=1e-4)


def test_every_block_carries_its_distance_from_uniform(explained):
    """Normalised entropy and max/uniform recomputed from the per-query matrix over the valid keys."""
    from anchorad_core.explain.attention import NEAR_UNIFORM_ENTROPY, NEAR_UNIFORM_MAX_RATIO

    _, _, explanation, _ = explained
    seen = []
    for r in explanation.rounds:
        for name, block in r.attention.items():
            p = block.per_query.mean(axis=0)[block.key_mask]
            p = p / p.sum()
            n = p.size
            entropy = float(-(p * np.log(p)).sum() / np.log(n))
            u = block.uniformity
            assert u.n_keys == n == int(block.key_mask.sum())
            assert u.entropy == pytest.approx(entropy, abs=1e-6)
            assert u.max_ratio == pytest.approx(float(p.max()) * n, rel=1e-5)
            assert block.near_uniform == (entropy >= NEAR_UNIFORM_ENTROPY and p.max() * n < NEAR_UNIFORM_MAX_RATIO)
            seen.append((r.anchor, name, round(entropy, 4), round(float(p.max() * n), 2), block.near_uniform))
    print("uniformity per round/block:", seen)
    assert len(seen) == 16
