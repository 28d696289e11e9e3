"""Demo cohort -> train (real demo backbones, tiny epochs) -> predict through the CLI."""
import json
import shutil

import pytest

from anchorad_core.cli import main
from anchorad_core.data import make_demo_cohort
from anchorad_core.training.config import TrainConfig
from anchorad_core.workflows import train_bundle

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    make_demo_cohort(root / "cohort", 24, seed=3)
    config = TrainConfig.demo(quick=True)
    for stage in (*config.phase1.values(), *config.phase2.values()):
        stage.epochs, stage.patience = 1, 1
    path, result = train_bundle(root / "cohort", "NC-AD", root / "bundle", config, device="cpu")
    return root, path, result


def _predict(capsys, bundle, subject):
    code = main(["predict", "--bundle", str(bundle), "--subject", str(subject), "--json", "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0
    return json.loads(out)


def test_train_writes_a_complete_bundle(trained):
    _, path, result = trained
    manifest = json.loads((path / "bundle.json").read_text())
    assert manifest["labels"] == ["NC", "AD"]
    assert manifest["anchors"] == ["smri", "fmri", "clinical", "genetics"]
    assert manifest["provenance"]["synthetic_data"] is True
    for m in manifest["anchors"]:
        assert (path / "rounds" / m / "adapter" / "adapter_model.safetensors").is_file()
    assert set(result.phase2) == {"smri", "fmri", "clinical", "genetics"}


def test_predict_full_and_with_one_and_two_modalities_removed(trained, capsys, tmp_path):
    root, bundle, _ = trained
    subject = next(p for p in sorted((root / "cohort").glob("sub-*"))
                   if all((p / d).is_dir() for d in ("anat", "func", "clinical", "genetics")))
    full = _predict(capsys, bundle, subject)
    assert full["modalities_missing"] == []
    assert [r["anchor"] for r in full["rounds"]] == ["smri", "fmri", "clinical", "genetics"]
    assert full["aggregate"]["label"] in ("NC", "AD")
    assert sum(full["aggregate"]["probabilities"].values()) == pytest.approx(1.0)

    one = tmp_path / subject.name
    shutil.copytree(subject, one)
    shutil.rmtree(one / "func")
    out = _predict(capsys, bundle, one)
    assert out["modalities_missing"] == ["fmri"]
    assert [r["anchor"] for r in out["rounds"]] == ["smri", "clinical", "genetics"]

    shutil.rmtree(one / "genetics")
    out = _predict(capsys, bundle, one)
    assert out["modalities_missing"] == ["fmri", "genetics"]
    assert out["modalities_used"] == ["smri", "clinical"]
    assert out["rounds"][0]["auxiliaries_missing"] == ["fmri", "genetics"]


def test_predict_is_deterministic(trained, capsys):
    root, bundle, _ = trained
    subject = sorted((root / "cohort").glob("sub-*"))[0]
    assert _predict(capsys, bundle, subject)["aggregate"] == _predict(capsys, bundle, subject)["aggregate"]


def test_cli_bad_input_is_one_line_and_status_2(trained, capsys, tmp_path):
    _, bundle, _ = trained
    code = main(["predict", "--bundle", str(tmp_path / "nope"), "--subject", str(tmp_path), "--json"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "nope" in err[0]
