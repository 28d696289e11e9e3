"""The core session service: open -> diagnose -> explain -> report, cancelling, reuse and stale results.

The end-to-end tests run on the tiny session-wide bundle (``tiny_trained`` in conftest.py).
"""
from __future__ import annotations

import io

import pytest

from anchorad_core.errors import CancelledError
from anchorad_core.progress import CancelToken, LogSink, Progress, Step, drive
from anchorad_core.session import Session, describe_genetics

from tiny_setup import complete_subject_dir


@pytest.fixture
def bundle_and_cohort(tiny_bundle, tiny_cohort):
    """``(bundle, cohort)`` of the shared tiny bundle."""
    return tiny_bundle, tiny_cohort

slow = pytest.mark.slow  # trains the tiny bundle once per session


def _toy_job(log: list[str]):
    """A step generator that records how far it got."""
    for i in range(5):
        yield Step("toy", i, 5, f"part {i}")
        log.append(f"did {i}")
    return "finished"


# ---------------------------------------------------------------------------------------- progress
def test_drive_passes_every_step_and_returns_the_result():
    seen, log = [], []
    assert drive(_toy_job(log), Progress(lambda *a: seen.append(a))) == "finished"
    assert seen == [("toy", i, 5) for i in range(5)] + [("toy", 5, 5)]
    assert len(log) == 5


def test_drive_cancels_between_steps_and_closes_the_job():
    log: list[str] = []
    token = CancelToken()
    seen = []

    def sink(stage, done, total):
        seen.append(done)
        if done == 2:
            token.cancel()

    with pytest.raises(CancelledError):
        drive(_toy_job(log), Progress(sink, token))
    assert seen == [0, 1, 2] and log == ["did 0", "did 1"]  # part 2 was never run


def test_a_log_gets_one_line_per_stage_not_per_step():
    def job():
        for i in range(100):
            yield Step("explanation", i, 100)
        for i in range(3):
            yield Step("report", i, 3, "writing")

    stream = io.StringIO()
    drive(job(), Progress(LogSink(stream)))
    lines = stream.getvalue().splitlines()
    assert [line.split(":")[0] for line in lines] == ["explanation", "explanation", "report", "report"]
    assert lines[0] == "explanation: started (100 steps)" and lines[1].startswith("explanation: done in ")


def test_step_fraction_and_text():
    assert Step("diagnosis", 3, 12, "anchor round sMRI").fraction == 0.25
    assert Step("diagnosis", 3, 12).text == "diagnosis" and Step("d", 0, 0).fraction == 1.0


def test_describe_genetics_says_what_was_understood():
    assert describe_genetics("e4/e3")[:2] == (True, describe_genetics("E3/E4")[1])
    assert "APOE genotype E3/E4" in describe_genetics("e4/e3")[1]
    assert describe_genetics("E3/E9")[0] is False
    assert describe_genetics("")[1].startswith("empty")


# ---------------------------------------------------------------------------------------- end to end
def _session(bundle_and_cohort) -> Session:
    bundle, cohort = bundle_and_cohort
    session = Session()
    session.load_bundle(bundle, device="cpu")
    session.open_subject(complete_subject_dir(cohort))
    return session


@slow
def test_open_diagnose_explain_report(bundle_and_cohort, tiny_pipeline, tmp_path):
    from anchorad_core.report import ReportExistsError

    session = _session(bundle_and_cohort)
    assert session.subject.clinical_text and session.overrides() == {}
    seen = []
    result = drive(session.diagnose(), Progress(lambda *a: seen.append(a)))
    assert session.result is result and not session.stale
    assert {stage for stage, _, _ in seen} == {"diagnosis"}
    assert [done for _, done, _ in seen] == sorted(done for _, done, _ in seen) and seen[-1][1] == seen[-1][2]
    # the same numbers as the pipeline itself
    subject = tiny_pipeline.load_subject(complete_subject_dir(bundle_and_cohort[1]))
    expected = tiny_pipeline.diagnose(subject)
    assert result.diagnosis.aggregate_probabilities == pytest.approx(expected.aggregate_probabilities, abs=1e-6)
    assert drive(session.diagnose()) is result  # reused: nothing changed

    explanation = drive(session.explain_attention())
    assert session.explanation is explanation and drive(session.explain_attention()) is explanation
    assert [r.anchor for r in explanation.rounds] == [r.anchor.value for r in result.diagnosis.rounds]
    assert all(r.attention and r.attribution is None for r in explanation.rounds)

    attribution = drive(session.explain_round("smri", 2))
    assert explanation.round("smri").attribution is attribution and attribution.requested_steps == 2
    assert drive(session.explain_round("smri", 2)) is attribution  # reused

    out = tmp_path / "report.pdf"
    steps = []
    assert drive(session.write_report(out), Progress(lambda *a: steps.append(a))) == out
    assert out.read_bytes()[:5] == b"%PDF-"
    assert [done for stage, done, _ in steps if stage == "report"][0] == 1  # the attention was reused
    with pytest.raises(ReportExistsError):
        next(session.write_report(out))  # refused before any work
    assert [p.name for p in tmp_path.iterdir()] == ["report.pdf"]


@slow
def test_cancel_mid_way_commits_nothing(bundle_and_cohort, tmp_path):
    session = _session(bundle_and_cohort)

    # a first diagnosis cancelled after two stages: no result
    token = CancelToken()
    job = session.diagnose(cancel=token)
    next(job), next(job)
    token.cancel()
    with pytest.raises(CancelledError):
        drive(job)
    assert session.result is None and not session.stale

    # a later one cancelled: the earlier result stays, marked stale, and is not reused
    result = drive(session.diagnose())
    token = CancelToken()
    job = session.diagnose(reuse=False, cancel=token)
    next(job), next(job), next(job)
    token.cancel()
    with pytest.raises(CancelledError):
        next(job)
    assert session.result is result and session.stale_reasons() == ["a later run was cancelled"]

    # a job that is simply dropped commits nothing either
    job = session.explain_attention()
    next(job)
    job.close()
    assert session.explanation is None
    fresh = drive(session.diagnose())
    assert fresh is not result and session.result is fresh and not session.stale

    # a report cancelled while its explanations are computed leaves no file, no temporary
    out = tmp_path / "report.pdf"
    token = CancelToken()
    job = session.write_report(out, all_attributions=True, n_steps=2, cancel=token)
    steps = [next(job), next(job), next(job)]  # attention, first round's IG, (before) the second round's
    assert [s.message for s in steps][:2] == ["Q-former attention", "Integrated Gradients of the sMRI round"]
    token.cancel()
    with pytest.raises(CancelledError):
        drive(job)
    assert list(tmp_path.iterdir()) == []
    # what finished before the cancel is kept: the attention and the first round's attribution
    assert session.explanation is not None
    assert session.explanation.rounds[0].attribution is not None
    assert all(r.attribution is None for r in session.explanation.rounds[1:])


@slow
def test_editing_inputs_or_the_model_marks_the_diagnosis_stale(bundle_and_cohort):
    bundle, cohort = bundle_and_cohort
    session = _session(bundle_and_cohort)
    note = session.subject.clinical_text
    result = drive(session.diagnose())
    drive(session.explain_attention())

    session.edit_note(note + "\n")  # the same text: not an edit
    assert session.overrides() == {} and not session.stale
    session.edit_note(note + " Reports worsening memory.")
    assert session.edited("clinical") and session.overrides() == {"clinical": note + " Reports worsening memory."}
    assert session.stale_reasons() == ["the clinical note changed after this diagnosis"]
    # a stale diagnosis is not reused: diagnosing again recomputes it from the edited note
    edited = drive(session.diagnose())
    assert edited is not result and session.explanation is None and not session.stale
    assert edited.inputs["overrides"] == {"clinical": note + " Reports worsening memory."}

    session.edit_note("")  # an emptied box: the note is missing
    assert session.overrides() == {"clinical": None}
    session.edit_note(note)
    assert session.stale_reasons() == ["the clinical note changed after this diagnosis"]  # vs the edited run

    session.edit_genetics("E2/E2")
    assert "the genetics changed after this diagnosis" in session.stale_reasons()
    session.edit_genetics(session.subject.genetics_text or "")
    assert "the genetics changed after this diagnosis" not in session.stale_reasons()

    session.select_bundle(bundle, "cpu", "bfloat16")
    assert session.stale_reasons()[-1] == "the model (bundle, device or dtype) changed after this diagnosis"
    session.select_bundle(bundle, "cpu", "float32")
    assert "the model (bundle, device or dtype) changed after this diagnosis" not in session.stale_reasons()

    session.open_subject(complete_subject_dir(cohort))  # (re)opening a subject clears everything
    assert session.result is None and session.explanation is None and session.overrides() == {}


@slow
def test_the_cli_report_goes_through_the_session_and_logs_a_line_per_stage(bundle_and_cohort, tmp_path, capsys):
    from anchorad_core.cli import main

    bundle, cohort = bundle_and_cohort
    out = tmp_path / "report.pdf"
    code = main(["report", "--bundle", str(bundle), "--subject", str(complete_subject_dir(cohort)), "--out", str(out),
                 "--steps", "2", "--max-steps", "2", "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert out.read_bytes()[:5] == b"%PDF-" and f"report written to {out}" in captured.out
    progress = [line for line in captured.err.splitlines() if not line.startswith("IG ")]
    stages = [line.split(":")[0] for line in progress]
    # stderr is not a terminal here: one line when a stage starts, one when it is done, nothing per step
    assert stages == ["diagnosis", "diagnosis", "explanation", "explanation", "report", "report"], captured.err
    assert all(line.endswith(" steps)") or " done in " in line for line in progress)
