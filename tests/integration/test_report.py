"""The PDF report: written atomically, readable, refuses to overwrite, names missing modalities."""
from __future__ import annotations

import pytest

from anchorad_core.errors import AnchorADError
from anchorad_core.explain import explain_subject
from anchorad_core.report import RESEARCH_USE_ONLY, ReportExistsError, write_report
from pdf_pages import check_report, needs_poppler
from pdf_pages import page_count as _pages
from pdf_pages import text as _text

pytestmark = pytest.mark.slow  # trains a tiny bundle once per session (~2-4 min on 2 CPU cores)


@needs_poppler
def test_report_written_readable_and_not_overwritten(explained, tiny_pipeline, tmp_path):
    subject, diagnosis, explanation, _ = explained
    out = tmp_path / "report.pdf"
    path = write_report(diagnosis, explanation, subject, out, tiny_pipeline.bundle)
    assert path == out and out.is_file()
    assert not [p for p in tmp_path.iterdir() if p.name != "report.pdf"]  # no temporary left
    pages = _pages(out)
    assert pages >= 2 + len(explanation.rounds)
    text = _text(out)
    assert text.count("RESEARCH USE ONLY") == pages  # the footer on every page
    check_report(out, explanation.subject_id, pages)  # every page rendered, numbered, with the subject id
    assert explanation.subject_id in text and diagnosis.label in text
    assert "synthetic" in text.lower() and "MiniLM" in text
    before = out.read_bytes()
    with pytest.raises(ReportExistsError) as err:
        write_report(diagnosis, explanation, subject, out, tiny_pipeline.bundle)
    assert isinstance(err.value, AnchorADError) and err.value.path == out
    assert out.read_bytes() == before
    write_report(diagnosis, explanation, subject, out, tiny_pipeline.bundle, force=True)
    assert _pages(out) == pages


@needs_poppler
def test_missing_modality_is_named_in_the_report(tiny_subject, tiny_pipeline, tmp_path):
    subject = tiny_pipeline.load_subject(tiny_subject, overrides={"fmri": None})
    diagnosis, explanation = explain_subject(tiny_pipeline, subject, attributions=False)
    out = write_report(diagnosis, explanation, subject, tmp_path / "r.pdf", tiny_pipeline.bundle)
    text = _text(out)
    assert "MISSING" in text and "Missing (masked, no map): fMRI" in text
    assert "Anchor round: fMRI" not in text


def test_failed_report_leaves_no_file(explained, tmp_path, monkeypatch):
    subject, diagnosis, explanation, _ = explained
    import anchorad_core.report.writer as writer

    def boom(*args, **kwargs):
        yield from ()
        raise RuntimeError("boom")

    monkeypatch.setattr(writer, "report_figures", boom)
    with pytest.raises(RuntimeError):
        write_report(diagnosis, explanation, subject, tmp_path / "x.pdf")
    assert list(tmp_path.iterdir()) == []
    assert RESEARCH_USE_ONLY.startswith("RESEARCH USE ONLY")


@needs_poppler
def test_report_states_uniformity_and_convergence(explained, tiny_pipeline, tmp_path):
    """Every attention panel carries its figures; near-uniform ones list no top items; every
    round states its IG delta, steps and that the bound was met (or warns when it was not)."""
    import copy
    import dataclasses

    subject, diagnosis, explanation, _ = explained
    out = write_report(diagnosis, explanation, subject, tmp_path / "r.pdf", tiny_pipeline.bundle)
    text = " ".join(_text(out).split())
    blocks = [b for r in explanation.rounds for b in r.attention.values()]
    assert text.count("normalised entropy") >= len(blocks)
    for b in blocks:
        assert f"normalised entropy {b.uniformity.entropy:.3f} · max/uniform {b.uniformity.max_ratio:.2f}×" in text
    near = [b for b in blocks if b.near_uniform]
    assert text.count("NEAR UNIFORM: no region stands out") == len(near)
    near_rois = sum(1 for b in near if b.block == "fmri")
    listed_rois = sum(1 for b in blocks if b.block == "fmri" and not b.near_uniform)
    assert text.count("no top ROIs listed") == near_rois
    ig_roi_panels = sum(1 for r in explanation.rounds if "fmri" in r.attribution.maps)
    assert text.count("top-10 ROIs by |value|") == listed_rois + ig_roi_panels
    for r in explanation.rounds:
        a = r.attribution
        assert f"delta={a.delta:+.1e} = " in text
        assert f"at {a.n_steps} steps; bound 5% met" in text
    assert "per Schaefer-400 parcel" in text and "NOT MET" not in text
    # a round that did not converge says so plainly
    bad = copy.copy(explanation)
    bad.rounds = [dataclasses.replace(explanation.rounds[0], attribution=dataclasses.replace(
        explanation.rounds[0].attribution, converged=False, n_steps=128, max_steps=128))] + explanation.rounds[1:]
    text = " ".join(_text(write_report(diagnosis, bad, subject, tmp_path / "bad.pdf", tiny_pipeline.bundle)).split())
    assert "bound 5% NOT MET" in text and "NOT CONVERGED" in text and "after 128 steps" in text
