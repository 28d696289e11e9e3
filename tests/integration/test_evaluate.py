"""Cross-validation as the reported figures depend on it: no leakage, every subject scored once."""
import numpy as np
import pytest

import toy_backbone  # noqa: F401  (registers the "toy" family)
from anchorad_core.modality import Modality
from anchorad_core.training import evaluate as evaluate_module
from anchorad_core.training.classical import ClassicalBaseline, SummaryFeatures, clinical_features
from anchorad_core.training.evaluate import cross_validate, paired_tests, pooled_summary, write_results
from toy_backbone import toy_config, toy_inputs


def _features(inputs):
    rng = np.random.default_rng(0)
    values = {m: {} for m in Modality}
    for i, sid in enumerate(inputs.subject_ids):
        values[Modality.CLINICAL][sid] = np.array([inputs.labels[i] + rng.normal(0, 0.5), rng.normal()])
    return SummaryFeatures(values)


@pytest.fixture(scope="module")
def spied_cv():
    """A 2-repeat 2-fold CV on toy backbones that records which subjects each stage trained on."""
    seen: list[dict[str, set]] = []
    real_train, real_fit = evaluate_module.train_anchorad, ClassicalBaseline.fit
    real_fusion = evaluate_module.train_output_fusion

    def train_spy(config, labels, train, val, progress, device, extra_cache_inputs=None, **kw):
        seen.append({"train": set(train.subject_ids) | set(val.subject_ids),
                     "test": set(extra_cache_inputs.subject_ids), "fits": set(), "fusion": set()})
        return real_train(config, labels, train, val, progress, device, extra_cache_inputs=extra_cache_inputs, **kw)

    def fit_spy(self, features, subject_ids, labels):
        seen[-1]["fits"] |= set(subject_ids)
        return real_fit(self, features, subject_ids, labels)

    def fusion_spy(method, modalities, cache, train, val, *args, **kw):
        seen[-1]["fusion"] |= set(train.subject_ids) | set(val.subject_ids)
        return real_fusion(method, modalities, cache, train, val, *args, **kw)

    mp = pytest.MonkeyPatch()
    mp.setattr(evaluate_module, "train_anchorad", train_spy)
    mp.setattr(ClassicalBaseline, "fit", fit_spy)
    mp.setattr(evaluate_module, "train_output_fusion", fusion_spy)
    inputs = toy_inputs(16, drop={"fmri": [3]})
    config = toy_config()
    config.cross_fit_folds = 2
    try:
        evaluation = cross_validate(config, inputs, ["NC", "AD"], "NC-AD", folds=2,
                                    ablation=("nq=0", "no-gate", "pool-extra", "width=16", "in-sample"),
                                    repeats=2, features=_features(inputs))
    finally:
        mp.undo()
    return inputs, evaluation, seen


def test_no_fold_trains_on_its_test_subjects(spied_cv):
    _, _, seen = spied_cv
    assert len(seen) == 4
    for fold in seen:
        assert fold["test"] and not fold["train"] & fold["test"]
        assert not fold["fits"] & fold["test"], "classical baseline saw test subjects"
        assert not fold["fusion"] & fold["test"], "output fusion saw test subjects"
        assert fold["fits"] == fold["train"] and fold["fusion"] == fold["train"]


def test_every_subject_is_scored_once_per_repeat(spied_cv):
    inputs, evaluation, seen = spied_cv
    for repeat in range(2):
        tested = [s for fold in seen[2 * repeat : 2 * repeat + 2] for s in fold["test"]]
        assert sorted(tested) == sorted(inputs.subject_ids)
    probs = evaluation.predictions[("All", "late fusion")]
    assert probs.shape == (2, 16, 2) and not np.isnan(probs).any()
    fmri = evaluation.predictions[("fMRI", "uni-modal")]
    assert np.isnan(fmri[:, 3]).all() and not np.isnan(np.delete(fmri, 3, axis=1)).any()


def test_pooled_summary_and_paired_tests(spied_cv, tmp_path):
    _, evaluation, _ = spied_cv
    summary = {(r["modality"], r["method"]): r for r in pooled_summary(evaluation)}
    for key in [("Clinical text", "classical"), ("All", "classical"), ("All", "anchored (confidence)")]:
        row = summary[key]
        assert 0 <= row["auc_low"] <= row["auc"] <= row["auc_high"] <= 1
        assert row["folds"] == 4
    for label in ("N_q=0", "without the gate (H_a at full strength)", "pooled over H_a too", "Q-former width 16",
                  "with in-sample phase-1 features"):
        assert ("All", f"anchored {label}") in summary
    tests = {t["b"] for t in paired_tests(evaluation)}
    assert tests == {"best uni-modal (" + max(
        (k for k in summary if k[1] == "uni-modal"), key=lambda k: summary[k]["auc"])[0] + ")",
        "late fusion", "classical (all)"}
    paths = write_results([evaluation], tmp_path)
    assert paths["curves"].is_file() and paths["json"].is_file()
    import json

    data = json.loads(paths["json"].read_text())
    assert {"summary", "paired_tests", "curves", "out_of_fold"} <= set(data)
    assert len(data["curves"]) == 4 and "smri" in data["curves"][0]["phase1"]


def test_clinical_features_read_both_note_styles():
    structured = "Age: 72 years. Sex: female. Education: 16 years.\nMMSE: 24/30 (borderline). CDR-SB: 2.5 (questionable impairment).\nComplaints (2): misplaces objects; repeats questions."
    np.testing.assert_allclose(clinical_features(structured), [24, 2.5, 2, 72, 16])
    free = ("70-year-old man with 12 years of education seen in the memory clinic. The spouse reports that "
            "the patient misplaces objects, repeats questions, missed appointments. MMSE today 26/30.")
    np.testing.assert_allclose(clinical_features(free), [26, np.nan, 3, 70, 12])


def test_cross_fitted_features_of_a_training_subject_come_from_a_model_without_it(monkeypatch):
    from anchorad_core.training import cross_fitting
    from anchorad_core.training.evaluate import split_train_val
    from anchorad_core.training.trainer import train_anchorad

    inputs = toy_inputs(16)
    train, val = split_train_val(inputs, 0.25, seed=0)
    config = toy_config()
    fitted_on: list[set] = []
    real = cross_fitting.train_phase1

    def spy(model, modality, fit, val_, settings, seed, *a, **kw):
        fitted_on.append(set(fit.subject_ids))
        return real(model, modality, fit, val_, settings, seed, *a, **kw)

    monkeypatch.setattr(cross_fitting, "train_phase1", spy)
    result = train_anchorad(config, ["NC", "AD"], train, val, extra_cache_inputs=inputs)
    assert set(result.cross_fitted) == set(Modality)  # toy phase 1 fine-tunes every backbone
    assert all(not s & set(val.subject_ids) for s in fitted_on)
    final = result.model.backbone(Modality.SMRI)
    for sid in train.subject_ids[:3]:
        assert any(sid not in s for s in fitted_on[:len(fitted_on) // 4])
        i = inputs.subject_ids.index(sid)
        batch = final.collate([inputs.samples[Modality.SMRI][i]])
        import torch

        with torch.no_grad():
            own = result.model.encode(Modality.SMRI, batch).pooled[0]
        assert not torch.allclose(own, result.cache.pooled[Modality.SMRI][sid])
    for sid in val.subject_ids:  # held-out subjects keep the final model's features
        i = inputs.subject_ids.index(sid)
        with torch.no_grad():
            own = result.model.encode(Modality.SMRI, final.collate([inputs.samples[Modality.SMRI][i]])).pooled[0]
        torch.testing.assert_close(own, result.cache.pooled[Modality.SMRI][sid])


def _head_config():
    from anchorad_core.training.config import StageSettings

    config = toy_config()
    for m in config.phase1:
        config.phase1[m] = StageSettings(epochs=2, batch_size=4, lr=1e-2, patience=2, mode="head")
    return config


def test_frozen_backbones_are_encoded_once_for_all_folds_with_the_same_results(monkeypatch):
    """Every phase 1 a probe of a frozen backbone: one feature pass over the cohort serves every fold,
    baseline and ablation variant, and every method's predictions equal those of per-fold passes."""
    from anchorad_core.training.features import FeatureCache

    inputs = toy_inputs(16, drop={"fmri": [3]})
    passes: list[int] = []
    real = FeatureCache.compute.__func__

    def counting(cls, model, subjects, *args, **kwargs):
        passes.append(len(subjects))
        return real(cls, model, subjects, *args, **kwargs)

    monkeypatch.setattr(FeatureCache, "compute", classmethod(counting))
    run = lambda: cross_validate(_head_config(), inputs, ["NC", "AD"], "NC-AD", folds=2, ablation=("nq=0",),  # noqa: E731
                                 features=_features(inputs))
    shared = run()
    assert passes == [16] and shared.shared_features_s > 0
    monkeypatch.setattr(evaluate_module, "features_are_fold_independent", lambda config: False)
    per_fold = run()
    assert passes[1:] == [16, 16] and per_fold.shared_features_s == 0  # each fold: its train + val + test
    assert shared.predictions.keys() == per_fold.predictions.keys()
    for key, probs in shared.predictions.items():
        np.testing.assert_allclose(probs, per_fold.predictions[key], atol=1e-5, err_msg=str(key))


def test_precomputed_features_must_cover_every_subject_and_need_frozen_backbones():
    from anchorad_core.training.evaluate import split_train_val
    from anchorad_core.training.trainer import frozen_feature_cache, train_anchorad

    inputs = toy_inputs(12)
    train, val = split_train_val(inputs, 0.25, seed=0)
    partial = frozen_feature_cache(_head_config(), ["NC", "AD"], train)
    with pytest.raises(ValueError, match="lack"):
        train_anchorad(_head_config(), ["NC", "AD"], train, val, features=partial)
    with pytest.raises(ValueError, match="head"):
        train_anchorad(toy_config(), ["NC", "AD"], train, val, features=partial)


def test_fold_profile_parts_add_up_and_reach_the_results_file(spied_cv, tmp_path):
    import json

    from anchorad_core.training.profile import PARTS

    _, evaluation, _ = spied_cv
    assert len(evaluation.profile) == 4
    for fold in evaluation.profile:
        assert set(fold["parts"]) == set(PARTS) and all(v >= 0 for v in fold["parts"].values())
        assert fold["parts"]["phase 1"] > 0 and fold["parts"]["phase 2"] > 0 and fold["parts"]["ablation"] > 0
        # what the parts leave over (splitting, bookkeeping) is a sliver of the recorded fold total
        assert 0 <= fold["other_s"] <= 0.05 * fold["total_s"] + 0.05
        assert sum(fold["parts"].values()) + fold["other_s"] == pytest.approx(fold["total_s"])
    summary = evaluation.profile_summary()
    assert summary["folds_s"] <= summary["wall_s"] and summary["evaluate_over_main_train"] >= 1
    data = json.loads(write_results([evaluation], tmp_path)["json"].read_text())
    assert data["profile"]["totals"].keys() == set(PARTS) and len(data["profile"]["folds"]) == 4


def test_cli_profile_table_and_json(spied_cv, monkeypatch, capsys, tmp_path):
    """``evaluate --profile`` prints the table after the results; ``--json`` and results.json carry the figures."""
    import json

    from anchorad_core import cli, workflows

    _, evaluation, _ = spied_cv
    monkeypatch.setattr(workflows, "evaluate_cohort", lambda *a, **kw: [evaluation])
    args = ["evaluate", "--cohort", str(tmp_path), "--task", "NC-AD", "--device", "cpu"]
    assert cli.main(args + ["--profile"]) == 0
    out = capsys.readouterr().out
    assert out.index("Paired DeLong") < out.index("Wall time per fold and part") < out.index("main train")
    assert cli.main(args + ["--json", "--out", str(tmp_path / "res")]) == 0
    captured = capsys.readouterr()
    printed = json.loads(captured.out)["profile"]
    assert "Wall time per fold" not in captured.err  # the table only with --profile
    assert len(printed["folds"]) == 4 and printed["evaluate_over_main_train"] > 0
    assert printed["main_train_s"] == pytest.approx(
        sum(printed["totals"][p] for p in ("phase 1", "features", "phase 2")) + printed["shared_features_s"])
    stored = json.loads((tmp_path / "res" / "results.json").read_text())["profile"]
    assert stored["folds"] == printed["folds"]
