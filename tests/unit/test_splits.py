"""Splits grouped by participant: no person on both sides of any fold or held-out split."""
import numpy as np
import pytest
from sklearn.model_selection import StratifiedKFold, train_test_split

import toy_backbone  # noqa: F401  (registers the "toy" family)
from anchorad_core.errors import ConfigError
from anchorad_core.modality import Modality
from anchorad_core.training import cross_fitting
from anchorad_core.training import evaluate as evaluate_module
from anchorad_core.training.evaluate import cross_validate, split_train_val
from anchorad_core.training.inputs import CohortInputs
from anchorad_core.training.splits import grouped_holdout, grouped_kfold, max_grouped_folds
from toy_backbone import toy_config, toy_inputs


def _visits(n_participants: int, seed: int = 0):
    """Labels and groups of 2-3 visits per participant (labels may change between visits)."""
    rng = np.random.default_rng(seed)
    labels, groups = [], []
    for p in range(n_participants):
        for _ in range(int(rng.integers(2, 4))):
            labels.append(int((p + rng.integers(0, 2)) % 2 if p % 5 == 0 else p % 2))
            groups.append(f"sub-{p:02d}")
    return np.array(labels), groups


def _participants(groups, index):
    return {groups[i] for i in index}


def test_singleton_groups_reproduce_the_ungrouped_splits():
    y = np.arange(20) % 2
    groups = [f"sub-{i}" for i in range(20)]
    expected = list(StratifiedKFold(4, shuffle=True, random_state=3).split(np.zeros(20), y))
    for (a, b), (c, d) in zip(grouped_kfold(y, groups, 4, 3), expected):
        assert a.tolist() == c.tolist() and b.tolist() == d.tolist()
    keep, held = grouped_holdout(y, groups, 0.25, 7)
    k2, h2 = train_test_split(np.arange(20), test_size=0.25, random_state=7, stratify=y)
    assert keep.tolist() == sorted(k2) and held.tolist() == sorted(h2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kfold_never_splits_a_participant(seed):
    y, groups = _visits(15, seed)
    folds = grouped_kfold(y, groups, 3, seed)
    tested = np.concatenate([test for _, test in folds])
    assert sorted(tested.tolist()) == list(range(len(y)))  # every visit scored exactly once
    for train, test in folds:
        assert not _participants(groups, train) & _participants(groups, test)
        assert set(y[test]) == {0, 1}


@pytest.mark.parametrize("fraction", [0.2, 0.25, 0.5])
def test_holdout_never_splits_a_participant(fraction):
    y, groups = _visits(12)
    keep, held = grouped_holdout(y, groups, fraction, 0)
    assert len(keep) + len(held) == len(y) and len(held) > 0
    assert not _participants(groups, keep) & _participants(groups, held)


def test_too_few_participants_is_a_clear_error():
    with pytest.raises(ConfigError, match="5 folds need at least 5 participants; the samples come from 3"):
        grouped_kfold(np.array([0, 1, 0, 1, 0, 1]), ["a", "a", "b", "b", "c", "c"], 5, 0)
    with pytest.raises(ConfigError, match="at least 2 participants"):
        grouped_holdout(np.array([0, 1]), ["a", "a"], 0.5, 0)
    assert max_grouped_folds(np.array([0, 0, 1, 1, 1]), ["a", "a", "b", "c", "c"]) == 1


def _grouped_toy(n_participants: int = 10):
    """Toy inputs with two visits per participant (sample ids sub-XX_ses-M000 / _ses-M012)."""
    base = toy_inputs(2 * n_participants)
    ids = [f"sub-{i // 2:02d}_ses-M{12 * (i % 2):03d}" for i in range(len(base))]
    groups = [sid.split("_")[0] for sid in ids]
    labels = np.array([(i // 2) % 2 for i in range(len(base))])
    return CohortInputs(ids, labels, base.samples, groups)


def test_inputs_carry_groups_through_subset_and_concat():
    inputs = _grouped_toy(4)
    part = inputs.subset([3, 0])
    assert part.group_ids == ["sub-01", "sub-00"]
    assert CohortInputs.concat(part, inputs.subset([1])).group_ids == ["sub-01", "sub-00", "sub-00"]
    assert inputs.restricted(()).group_ids == inputs.group_ids
    assert toy_inputs(4).group_ids == toy_inputs(4).subject_ids  # no groups: each sample its own


def test_train_val_split_keeps_visits_together():
    inputs = _grouped_toy(10)
    train, val = split_train_val(inputs, 0.2, seed=0)
    assert not set(train.group_ids) & set(val.group_ids)
    assert len(train) + len(val) == len(inputs)


def test_cross_validation_and_cross_fitting_keep_each_participant_on_one_side(monkeypatch):
    """Every fold, its train/validation split and the cross-fitting folds inside training."""
    seen: list[dict[str, set]] = []
    real_train, real_phase1 = evaluate_module.train_anchorad, cross_fitting.train_phase1

    def participants(ids):
        return {sid.split("_")[0] for sid in ids}

    def train_spy(config, labels, train, val, progress, device, extra_cache_inputs=None, **kw):
        seen.append({"train": participants(train.subject_ids), "val": participants(val.subject_ids),
                     "test": participants(extra_cache_inputs.subject_ids), "train_ids": set(train.subject_ids),
                     "fits": []})
        return real_train(config, labels, train, val, progress, device, extra_cache_inputs=extra_cache_inputs, **kw)

    def phase1_spy(model, modality, fit, val, *args, **kw):
        seen[-1]["fits"].append(set(fit.subject_ids))
        return real_phase1(model, modality, fit, val, *args, **kw)

    monkeypatch.setattr(evaluate_module, "train_anchorad", train_spy)
    monkeypatch.setattr(cross_fitting, "train_phase1", phase1_spy)
    two = (Modality.SMRI, Modality.CLINICAL)  # two modalities keep it fast
    config = toy_config().restricted(two)
    config.cross_fit_folds = 2
    for stage in (*config.phase1.values(), *config.phase2.values()):
        stage.epochs = 1
    inputs = _grouped_toy(10).restricted(two)
    evaluation = cross_validate(config, inputs, ["NC", "AD"], "NC-AD", folds=2)
    assert len(seen) == 2
    for fold in seen:
        assert not fold["train"] & fold["test"] and not fold["val"] & fold["test"] and not fold["train"] & fold["val"]
        assert fold["fits"], "cross-fitting ran"
        for fit in fold["fits"]:
            held = fold["train_ids"] - fit
            assert held and not participants(fit) & participants(held)
    assert not np.isnan(evaluation.predictions[("All", "late fusion")]).any()


@pytest.mark.parametrize("seed", range(6))
def test_holdout_never_leaves_training_with_one_class(seed):
    """One participant of a class: it stays on the training side (a probe cannot fit one class)."""
    y = np.array([0, 0, 1, 1, 1, 1, 1, 1])
    groups = ["a", "a", "b", "b", "c", "d", "d", "e"]
    keep, held = grouped_holdout(y, groups, 0.2, seed)
    assert set(y[keep]) == {0, 1} and not _participants(groups, keep) & _participants(groups, held)


def test_stacking_scores_keep_a_participants_visits_in_one_fold(monkeypatch):
    """The stacker's out-of-fold scores (aggregation-rule selection) are grouped too."""
    from anchorad_core.fusion.aggregation import stacking_cv_probabilities
    from anchorad_core.training import splits

    rng = np.random.default_rng(0)
    y, groups = _visits(12)
    probs = rng.uniform(0.05, 0.95, (2, len(y), 1))
    probs = np.concatenate([1 - probs, probs], axis=-1)
    present = np.ones((2, len(y)), dtype=bool)
    used = []
    real = splits.grouped_kfold
    monkeypatch.setattr(splits, "grouped_kfold", lambda *a: used.append(real(*a)) or used[-1])
    out = stacking_cv_probabilities(probs, present, y, groups=groups)
    assert out.shape == (len(y), 2) and used
    for train, test in used[0]:
        assert not _participants(groups, train) & _participants(groups, test)
    # no groups: exactly the ungrouped stratified folds used before
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    from anchorad_core.fusion.aggregation import _features

    k = min(5, np.bincount(y).min())
    before = cross_val_predict(LogisticRegression(C=1.0, max_iter=2000), _features(probs, present), y,
                               cv=StratifiedKFold(k, shuffle=True, random_state=0), method="predict_proba")
    np.testing.assert_allclose(stacking_cv_probabilities(probs, present, y), before)
