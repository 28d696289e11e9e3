"""The PDF report: written atomically, readable, refuses to overwrite, names missing modalities."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from anchorad_core.errors import AnchorADError
from anchorad_core.explain import explain_subject
from anchorad_core.report import RESEARCH_USE_ONLY, ReportExistsError, write_report
pytestmark = pytest.mark.slow  # trains a tiny bundle once per session (~2-4 min on 2 CPU cores)

from explain_fixtures import complete_subject_dir, explain_bundle, explain_pipeline, explained  # noqa: F401

needs_poppler = pytest.mark.skipif(shutil.which("pdfinfo") is None or shutil.which("pdftotext") is None,
                                   reason="poppler-utils (pdfinfo, pdftotext) not installed")


def _pages(path) -> int:
    out = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True, check=True).stdout
    return int(next(line.split()[-1] for line in out.splitlines() if line.startswith("Pages:")))


def _text(path) -> str:
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout


@needs_poppler
def test_report_written_readable_and_not_overwritten(explained, explain_pipeline, tmp_path):
    subject, diagnosis, explanation, _ = explained
    out = tmp_path / "report.pdf"
    path = write_report(diagnosis, explanation, subject, out, explain_pipeline.bundle)
    assert path == out and out.is_file()
    assert not [p for p in tmp_path.iterdir() if p.name != "report.pdf"]  # no temporary left
    pages = _pages(out)
    assert pages >= 2 + len(explanation.rounds)
    text = _text(out)
    assert text.count("RESEARCH USE ONLY") == pages  # the footer on every page
    assert explanation.subject_id in text and diagnosis.label in text
    assert "synthetic" in text.lower() and "MiniLM" in text
    before = out.read_bytes()
    with pytest.raises(ReportExistsError) as err:
        write_report(diagnosis, explanation, subject, out, explain_pipeline.bundle)
    assert isinstance(err.value, AnchorADError) and err.value.path == out
    assert out.read_bytes() == before
    write_report(diagnosis, explanation, subject, out, explain_pipeline.bundle, force=True)
    assert _pages(out) == pages


@needs_poppler
def test_missing_modality_is_named_in_the_report(explain_bundle, explain_pipeline, tmp_path):
    subject = explain_pipeline.load_subject(complete_subject_dir(explain_bundle[1]), overrides={"fmri": None})
    diagnosis, explanation = explain_subject(explain_pipeline, subject, attributions=False)
    out = write_report(diagnosis, explanation, subject, tmp_path / "r.pdf", explain_pipeline.bundle)
    text = _text(out)
    assert "MISSING" in text and "Missing (masked, no map): fMRI" in text
    assert "Anchor round: fMRI" not in text


def test_failed_report_leaves_no_file(explained, tmp_path, monkeypatch):
    subject, diagnosis, explanation, _ = explained
    import anchorad_core.report as report

    def boom(self):
        yield from ()
        raise RuntimeError("boom")

    monkeypatch.setattr(report._Context, "pages", boom)
    with pytest.raises(RuntimeError):
        write_report(diagnosis, explanation, subject, tmp_path / "x.pdf")
    assert list(tmp_path.iterdir()) == []
    assert RESEARCH_USE_ONLY.startswith("RESEARCH USE ONLY")
