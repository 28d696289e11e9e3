"""Bad inputs (issue 7): every case of the generated corpus gives one clear line and writes nothing.

The corpus lives in ``tests/make_bad_inputs.py`` (built from a good demo cohort and a good
demo bundle each session; nothing binary is committed). For each case the real CLI runs -
in-process through ``anchorad_core.cli.main``, or as ``python -m anchorad_core.cli`` for a
few - and must exit with status 2, print exactly one line on stderr naming the offending
file (or option) and the problem, print no traceback, and create or change no file.
"""
from __future__ import annotations

from collections import Counter

import pytest

import make_bad_inputs as corpus
from anchorad_core.cli import main


@pytest.fixture(scope="session")
def bad_inputs_cohort(tmp_path_factory):
    return corpus.make_base_cohort(tmp_path_factory.mktemp("bad-inputs-base") / "cohort")


@pytest.fixture(scope="session")
def bad_inputs_bundle(tiny_bundle):
    """The shared tiny bundle: the same setup ``corpus.train_base_bundle`` trains (16 demo
    subjects, seed 1, NC-AD, one epoch a stage), trained once per session. Each case checks
    that it changes no file of it."""
    import tiny_setup

    assert (corpus.N_SUBJECTS, corpus.SEED, corpus.TASK) == (tiny_setup.N_SUBJECTS, tiny_setup.SEED, "NC-AD")
    return tiny_bundle


def _params():
    for c in corpus.CASES:
        marks = [pytest.mark.slow] if c.needs_bundle or c.subprocess else []
        yield pytest.param(c, id=c.id, marks=marks)


@pytest.mark.parametrize("case", _params())
def test_bad_input_gives_one_line_and_writes_nothing(case, request, bad_inputs_cohort, tmp_path, capsys):
    bundle = request.getfixturevalue("bad_inputs_bundle") if case.needs_bundle else None
    base = corpus.Base(bad_inputs_cohort, bundle)
    setup = corpus.prepare_case(case, base, tmp_path / "case")
    watched = [tmp_path, base.cohort] + ([bundle] if bundle else [])
    before = corpus.snapshot(*watched)
    capsys.readouterr()
    if case.subprocess:
        result = corpus.run_subprocess(setup.argv)
    else:
        code = main(setup.argv)
        captured = capsys.readouterr()
        result = corpus.Result(code, captured.out, captured.err)
    problems = corpus.check_result(setup, result, before, corpus.snapshot(*watched))
    assert not problems, "\n".join(problems)


def test_corpus_is_large_and_covers_every_kind_of_input():
    groups = Counter(c.group for c in corpus.CASES)
    assert len(corpus.CASES) >= 30
    assert {"sMRI", "fMRI", "clinical", "genetics", "cohort", "bundle", "options"} <= set(groups)
    assert min(groups.values()) >= 3, groups
    assert len({c.id for c in corpus.CASES}) == len(corpus.CASES)
    assert any(c.subprocess for c in corpus.CASES)
