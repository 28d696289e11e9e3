"""Integrated Gradients per anchor round, the missing-modality rule, saving, timing."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from anchorad_core.explain import explain_subject
pytestmark = pytest.mark.slow  # trains a tiny bundle once per session (~2-4 min on 2 CPU cores)

from explain_fixtures import N_STEPS, complete_subject_dir, explain_bundle, explain_pipeline, explained  # noqa: F401

#: Bound on |convergence delta| (probability units). IG of a smooth function with 16
#: Gauss-Legendre steps is exact up to quadrature error; on the demo bundle it is ~1e-3 or less,
#: against round probabilities of order 0.5 and |f(x) - f(x')| of order 0.01-0.1. 0.02 leaves room
#: for the tiny test bundle and still catches a broken path (wrong baseline, a hook that misses a
#: window, LoRA left on in an auxiliary pass), which gives deltas of the size of f(x) - f(x').
DELTA_BOUND = 0.02


def test_ig_convergence_delta_is_small(explained):
    _, diagnosis, explanation, seconds = explained
    print(f"explanation of one subject ({len(explanation.rounds)} rounds, n_steps={N_STEPS}): {seconds:.1f} s")
    assert len(explanation.rounds) == 4
    for r in explanation.rounds:
        a = r.attribution
        assert a.n_steps == N_STEPS
        assert set(a.maps) == {"smri", "fmri", "clinical", "genetics"}
        print(f"  {r.anchor}: f(x)={a.output:.4f} f(x')={a.baseline_output:.4f} delta={a.delta:+.2e}")
        assert abs(a.delta) < DELTA_BOUND
        # f(x) is the round's probability of the explained class
        assert np.isclose(a.output, r.probabilities[explanation.target], atol=1e-4)
        # completeness: the totals add up to f(x) - f(x') + delta
        assert np.isclose(sum(a.totals.values()), a.output - a.baseline_output + a.delta, atol=1e-5)


def test_missing_modality_has_no_round_and_no_map(explain_bundle, explain_pipeline):
    folder = complete_subject_dir(explain_bundle[1])
    subject = explain_pipeline.load_subject(folder, overrides={"genetics": None})
    diagnosis, explanation = explain_subject(explain_pipeline, subject, n_steps=4, auxiliary_attributions=True)
    assert explanation.modalities_missing == ["genetics"]
    assert [r.anchor for r in explanation.rounds] == ["smri", "fmri", "clinical"]
    for r in explanation.rounds:
        assert "genetics" not in r.attention
        assert "genetics" not in r.attribution.maps
        assert r.attention["cross"].shares["genetics"] == pytest.approx(0.0, abs=1e-7)


def test_save_writes_maps_on_the_t1_grid(explained, tmp_path):
    subject, _, explanation, _ = explained
    summary = explanation.save(tmp_path / "out")
    data = json.loads(summary.read_text())
    assert data["modalities_missing"] == [] and len(data["rounds"]) == 4
    t1 = nib.load(explanation.t1_path)
    niftis = sorted((tmp_path / "out").rglob("*_T1w.nii.gz"))
    assert niftis
    for f in niftis:
        img = nib.load(f)
        assert img.shape == t1.shape[:3] and np.allclose(img.affine, t1.affine)
    tsv = pd.read_csv(tmp_path / "out" / "round-smri" / "attention-fmri_rois.tsv", sep="\t")
    assert list(tsv.columns) == ["roi_index", "name", "network", "value"] and len(tsv) == 400
    words = json.loads((tmp_path / "out" / "round-smri" / "attention-clinical_words.json").read_text())
    assert [w["word"] for w in words["words"]] == subject.clinical.split()
    bases = json.loads((tmp_path / "out" / "round-clinical" / "ig-genetics_bases.json").read_text())
    assert [s["length"] for s in bases["sequences"]] == [len(s) for s in subject.genetics]
    assert not list((tmp_path / "out").rglob("*.tmp")) and not list((tmp_path / "out").rglob(".*"))


def test_progress_and_cancel_between_rounds(explain_bundle, explain_pipeline):
    from anchorad_core.errors import CancelledError
    from anchorad_core.progress import Progress

    subject = explain_pipeline.load_subject(complete_subject_dir(explain_bundle[1]))
    seen = []
    progress = Progress(lambda stage, done, total: seen.append((stage, done, total)), lambda: len(seen) >= 2)
    with pytest.raises(CancelledError):
        explain_subject(explain_pipeline, subject, attributions=False, progress=progress)
    assert seen[0][0] == "explanation"
