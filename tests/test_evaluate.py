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
