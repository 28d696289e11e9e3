"""Integrated Gradients per anchor round, the missing-modality rule, saving, timing."""
from __future__ import annotations

import json
import re

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from anchorad_core.explain import explain_subject
pytestmark = pytest.mark.slow  # trains a tiny bundle once per session (~2-4 min on 2 CPU cores)

from tiny_setup import N_STEPS

def _independent_f(model, anchor, batches, target, baseline):
    """The round's p(target) by one plain forward of the model (no Captum, no recording): at the
    subject (``baseline=False``) or at IG's path start (``True``: the sMRI image blurred with
    scipy's Gaussian of SMRI_BASELINE_SIGMA voxels, the fMRI series zero, every non-special
    text/DNA token id looked up as the pad token; everything else from the subject)."""
    import torch
    import torch.nn.functional as F

    from anchorad_core.fusion.qformer import AuxiliaryFeatures
    from anchorad_core.modality import Modality

    batches = {m: dict(b) for m, b in batches.items()}
    hooks = []
    if baseline:
        for m, b in batches.items():
            if m is Modality.SMRI:
                from scipy.ndimage import gaussian_filter

                from anchorad_core.explain.attributions import SMRI_BASELINE_SIGMA

                image = torch.as_tensor(b["image"]).numpy()
                b["image"] = torch.from_numpy(gaussian_filter(image, (0, 0) + (SMRI_BASELINE_SIGMA,) * 3))
            elif m is Modality.FMRI:
                b["series"] = torch.zeros_like(torch.as_tensor(b["series"]))
            else:
                tok = model.backbone(m).tokenizer
                special = torch.tensor(sorted(set(tok.all_special_ids)))
                emb = model.backbone(m).model.get_input_embeddings()

                def lookup(mod, args, out, special=special, pad=int(tok.pad_token_id)):
                    ids = args[0]
                    base = torch.where(torch.isin(ids, special.to(ids.device)), ids, torch.full_like(ids, pad))
                    return F.embedding(base, mod.weight, mod.padding_idx)

                hooks.append(emb.register_forward_hook(lookup))
    try:
        with torch.no_grad():
            aux = {}
            for m in batches:
                if m is anchor:
                    continue
                with model.phase1(m) as backbone:
                    out = backbone(batches[m])
                aux[m] = AuxiliaryFeatures.of(out)
            logits = model.anchored(anchor, batches[anchor], aux).logits
    finally:
        for h in hooks:
            h.remove()
    return float(torch.softmax(logits.float(), dim=-1)[0, target])


def test_ig_sum_matches_two_independent_forward_passes(explained, tiny_pipeline):
    """Completeness checked against f(x) - f(x') computed without Captum: the diagnosis's own
    round probability and a plain forward at the path start. A wrong baseline, a layer the path
    misses, LoRA left on in an auxiliary pass or too few steps make the IG sum miss it."""
    from anchorad_core.explain.attributions import DELTA_FLOOR, DELTA_TOLERANCE

    _, diagnosis, explanation, seconds = explained
    model = tiny_pipeline.model
    target = explanation.labels.index(explanation.target)
    print(f"explanation of one subject ({len(explanation.rounds)} rounds, from {N_STEPS} steps): {seconds:.1f} s")
    assert len(explanation.rounds) == 4
    for r, rr in zip(explanation.rounds, diagnosis.rounds):
        a = r.attribution
        assert set(a.maps) == {"smri", "fmri", "clinical", "genetics"}
        f_x = r.probabilities[explanation.target]  # the diagnosis's forward
        f_x_plain = _independent_f(model, rr.anchor, diagnosis.features, target, baseline=False)
        f_b = _independent_f(model, rr.anchor, diagnosis.features, target, baseline=True)
        ig_sum = sum(a.totals.values())
        print(f"  {r.anchor}: f(x)={f_x:.4f} f(x')={f_b:.4f} IG sum={ig_sum:+.4f} vs {f_x - f_b:+.4f} "
              f"({a.n_steps} steps, tried {a.steps_tried})")
        assert f_x_plain == pytest.approx(f_x, abs=1e-4)
        assert a.output == pytest.approx(f_x, abs=1e-4) and a.baseline_output == pytest.approx(f_b, abs=1e-4)
        assert abs(ig_sum - (f_x - f_b)) <= max(DELTA_TOLERANCE * abs(f_x - f_b), DELTA_FLOOR) + 2e-4


def test_default_ig_meets_the_bound_by_doubling_the_steps(explained):
    from anchorad_core.explain.attributions import DELTA_TOLERANCE, MAX_N_STEPS

    _, _, explanation, _ = explained
    for r in explanation.rounds:
        a = r.attribution
        steps = [n for n, _ in a.steps_tried]
        assert steps[0] == N_STEPS and steps == [N_STEPS * 2 ** i for i in range(len(steps))]
        assert steps[-1] == a.n_steps <= MAX_N_STEPS and a.tolerance == DELTA_TOLERANCE
        assert a.converged and a.warning == "" and abs(a.delta) <= a.bound
        # it stopped at the first run within the bound
        assert all(abs(d) > a.bound for _, d in a.steps_tried[:-1])
        assert "within the 5% bound" in a.convergence_text()


def test_ig_at_the_cap_warns_with_the_figure(explained, tiny_pipeline):
    from anchorad_core.explain.attributions import round_attributions

    subject, diagnosis, explanation, _ = explained
    labels = list(diagnosis.labels)
    warned = []
    for rr in diagnosis.rounds:
        a = round_attributions(tiny_pipeline.model, rr.anchor, subject, diagnosis.features,
                               target=labels.index(explanation.target), labels=labels, n_steps=2, max_steps=2)
        assert a.steps_tried == [(2, pytest.approx(a.delta))] and a.n_steps == 2
        assert a.converged == (abs(a.delta) <= a.bound)
        if not a.converged:
            warned.append(a)
    assert warned, "2 IG steps met the bound in every round: the cap cannot be tested on this bundle"
    a = warned[0]
    assert a.warning.startswith("NOT CONVERGED") and f"{a.relative_delta:.0%}" in a.warning
    assert "after 2 steps (cap 2)" in a.warning and a.convergence_text() == a.warning


def test_smri_ig_is_summed_per_parcel_inside_the_brain(explained):
    from anchorad_core.data.templates import atlas_image

    _, _, explanation, _ = explained
    labels = np.asarray(atlas_image("schaefer400_17n").dataobj).astype(int)
    for r in explanation.rounds:
        mp = r.attribution.maps["smri"]
        assert "per Schaefer-400 parcel" in mp.caption and "brain only" in mp.caption
        assert mp.data.shape == labels.shape and mp.voxels.shape == labels.shape
        assert np.all(mp.data[labels == 0] == 0)  # nothing outside the parcels (skull, background)
        for roi in (1, 150, 400):
            inside = mp.data[labels == roi]
            assert np.allclose(inside, inside[0]) and inside[0] == pytest.approx(mp.parcels.values[roi - 1], abs=1e-6)
            assert mp.parcels.values[roi - 1] == pytest.approx(float(mp.voxels[labels == roi].sum()), rel=1e-4, abs=1e-7)
        dropped = float(np.abs(mp.voxels[labels == 0]).sum()) / max(float(np.abs(mp.voxels).sum()), 1e-30)
        assert mp.outside_share == pytest.approx(dropped, abs=1e-4)


def test_missing_modality_has_no_round_and_no_map(tiny_subject, tiny_pipeline):
    folder = tiny_subject
    subject = tiny_pipeline.load_subject(folder, overrides={"genetics": None})
    diagnosis, explanation = explain_subject(tiny_pipeline, subject, n_steps=4, auxiliary_attributions=True,
                                             adaptive=False)
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
    # every attention block states its uniformity; a near-uniform one lists no top items
    for rnd, r in zip(data["rounds"], explanation.rounds):
        for name, block in rnd["attention"].items():
            u = block["uniformity"]
            assert u["near_uniform"] == r.attention[name].near_uniform
            assert 0 < u["normalised_entropy"] <= 1 + 1e-9 and u["max_over_uniform"] >= 1 - 1e-9
            listed = [k for k in block if k.startswith("top_")]
            if u["near_uniform"]:
                assert not listed
                assert name == "cross" or block.get("top") == "none: near uniform, no region stands out"
                assert re.fullmatch(r"near uniform \(normalised entropy (0\.9[89]\d|1\.000)\): no region stands out",
                                    u["verdict"])
            elif name != "cross":
                assert listed or "peak_voxel" in block
        ig = rnd["integrated_gradients"]
        assert ig["converged"] is True and ig["warning"] is None and ig["n_steps"] == r.attribution.n_steps
        assert [t["n_steps"] for t in ig["steps_tried"]][-1] == ig["n_steps"]
        assert "share_dropped" in ig["maps"]["smri"] and "parcel" in ig["maps"]["smri"]["shown"]
    assert (tmp_path / "out" / "round-smri" / "ig-smri_voxels_T1w.nii.gz").is_file()
    assert (tmp_path / "out" / "round-smri" / "ig-smri_parcels_rois.tsv").is_file()


def test_progress_and_cancel_between_rounds(tiny_subject, tiny_pipeline):
    from anchorad_core.errors import CancelledError
    from anchorad_core.progress import Progress

    subject = tiny_pipeline.load_subject(tiny_subject)
    seen = []
    progress = Progress(lambda stage, done, total: seen.append((stage, done, total)), lambda: len(seen) >= 2)
    with pytest.raises(CancelledError):
        explain_subject(tiny_pipeline, subject, attributions=False, progress=progress)
    assert seen[0][0] == "explanation"
