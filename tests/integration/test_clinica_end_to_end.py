"""A synthetic cohort in the exact Clinica layout (2-3 sessions each, ClinicaDL labels): train, evaluate, predict.

Tiny on purpose: 10 participants (about 25 sessions), one epoch per stage, two folds.
"""
import json

import pytest

from anchorad_core import workflows
from anchorad_core.cli import main
from anchorad_core.data import load_cohort, make_clinica_demo_cohort
from anchorad_core.training import evaluate as evaluate_module
from anchorad_core.training.config import TrainConfig

pytestmark = pytest.mark.slow


def _participants(ids):
    return {sid.split("_")[0] for sid in ids}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("clinica")
    info = make_clinica_demo_cohort(root / "bids", 10, seed=5)
    config = TrainConfig.demo(quick=True)
    for stage in (*config.phase1.values(), *config.phase2.values()):
        stage.epochs, stage.patience = 1, 1
    (root / "tiny.json").write_text(json.dumps(config.to_dict()))
    return root, info


def test_the_writer_uses_the_clinica_layout(cohort):
    root, info = cohort
    bids = info.root
    assert (bids / "sub-01" / "ses-M000" / "anat" / "sub-01_ses-M000_T1w.nii.gz").is_file()
    assert sorted(p.name for p in (bids / "sub-01").iterdir() if p.name.startswith("ses-"))[0] == "ses-M000"
    assert (bids / "sub-01" / "sub-01_sessions.tsv").is_file() and (bids / "phenotype" / "visits.csv").is_file()
    c = load_cohort(bids, info.labels_tsv)
    assert 20 <= len(c.ids) <= 30 and len(set(c.groups(c.ids))) == 10
    assert {"NC", "AD", "sMCI", "pMCI"} <= set(c.labels_present)
    assert len(c.unmatched) == 10  # the clinical-only last visit of each participant


def test_train_and_evaluate_never_put_a_participant_on_both_sides(cohort, monkeypatch, capsys):
    root, info = cohort
    splits = []
    real_train = evaluate_module.train_anchorad

    def spy(config, labels, train, val, progress=None, device="cpu", extra_cache_inputs=None, **kw):
        splits.append((train.subject_ids, val.subject_ids, extra_cache_inputs.subject_ids if extra_cache_inputs else []))
        return real_train(config, labels, train, val, progress, device, extra_cache_inputs=extra_cache_inputs, **kw)

    monkeypatch.setattr(evaluate_module, "train_anchorad", spy)
    monkeypatch.setattr(workflows, "train_anchorad", spy)
    bundle = root / "bundle"
    code = main(["train", "--cohort", str(info.root), "--labels", str(info.labels_tsv), "--task", "NC-AD",
                 "--out", str(bundle), "--config", str(root / "tiny.json"), "--note-exclude", "diagnostic",
                 "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "sessions of 10 participants; 10 listed sessions have no folder" in err
    manifest = json.loads((bundle / "bundle.json").read_text())
    notes = manifest["note_fields"]
    assert notes["left_out"] == ["cdr_global", "cdr_sb", "mmse"]
    assert {"age", "sex", "education_years"} <= set(notes["fields"]) and "mmse" not in notes["fields"]
    assert manifest["config"]["preprocess"]["clinical_exclude"] == ["cdr_global", "cdr_sb", "mmse"]
    assert manifest["training_participants"] < manifest["training_subjects"] + manifest["validation_subjects"]

    code = main(["evaluate", "--cohort", str(info.root), "--labels", str(info.labels_tsv), "--task", "NC-AD",
                 "--folds", "2", "--config", str(root / "tiny.json"), "--modalities", "clinical,genetics",
                 "--device", "cpu", "--json"])
    out = capsys.readouterr().out
    assert code == 0
    assert len(splits) == 3  # the bundle's training, then one per fold
    for train, val, test in splits:
        assert not _participants(train) & _participants(val)
        assert not (_participants(train) | _participants(val)) & _participants(test)
    tested = [sid for _, _, test in splits[1:] for sid in test]
    ids, _ = load_cohort(info.root, info.labels_tsv).task_subjects("NC-AD")
    assert sorted(tested) == sorted(ids)  # every session scored exactly once
    assert any(r["method"] == "late fusion" for r in json.loads(out)["summary"])

    session = info.root / "sub-01" / "ses-M000"
    assert main(["predict", "--bundle", str(bundle), "--subject", str(session), "--json", "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["subject_id"] == "sub-01_ses-M000"
    assert main(["predict", "--bundle", str(bundle), "--subject", str(info.root / "sub-01"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sessions" in err[0] and "give one session folder" in err[0]
