"""Long work off the Qt thread: the core session's generators in napari workers, with progress, cancel, notices.

Each job is a plain generator (no Qt) that yields :class:`anchorad_core.Step` before each
stage and returns its result - the :class:`anchorad_core.session.Session` methods, and
:func:`open_subject_job`; :func:`start_job` runs it in a napari ``GeneratorWorker`` (a thread
that emits Qt signals) with a progress bar in napari's activity dock. ``worker.quit()`` (the
Cancel buttons) stops the job at its next stage boundary; the core commits a result only when
its job completes, so a stopped job changes nothing.

Every way a job can end reaches the panel that started it: ``on_done`` is always called, on the
Qt thread, with a :class:`JobOutcome` (done, cancelled or failed with its one-line reason). A
failure also becomes a napari notification and its full traceback goes to the
``anchorad_gui`` logger. The job runs inside :func:`_guarded`, which turns any exception into
a :class:`JobFailure` *inside* the worker thread: napari's worker would otherwise swallow a
``RuntimeError`` (a dtype mismatch, CUDA out of memory) without emitting ``errored`` or
``finished``, and the panel would wait for ever.
"""
from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Generator

from anchorad_core import AnchorADError, Step
from anchorad_core.session import OpenedSubject, read_subject

__all__ = ["JobFailure", "JobOutcome", "failure_reason", "open_subject_job", "start_job"]

log = logging.getLogger("anchorad_gui")


def failure_reason(exc: BaseException) -> str:
    """One line saying why: an AnchorAD error's own message, else ``Type: message`` (never cut)."""
    text = " ".join(str(exc).split())  # one line, whole
    if isinstance(exc, AnchorADError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass
class JobFailure:
    """What a failed job returns from its worker thread (see :func:`_guarded`)."""

    reason: str
    traceback: str
    exception: BaseException


@dataclass
class JobOutcome:
    """How a job ended: ``status`` is ``"done"``, ``"cancelled"`` or ``"failed"`` (with ``reason``)."""

    status: str
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "done"

    @property
    def cancelled(self) -> bool:
        return self.status == "cancelled"

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    def __bool__(self) -> bool:
        return self.ok


def _guarded(job: Callable[..., Any], args: tuple, what: str, sink: dict[str, Any]) -> Generator[Any, None, Any]:
    """Run ``job(*args)`` (a generator), passing its steps on; an exception becomes a :class:`JobFailure`.

    The failure is also put in ``sink["failure"]``: napari drops a worker's return value when
    Cancel was pressed meanwhile, and a failure must not pass for a cancel.
    """
    try:
        gen = job(*args)
        if not isinstance(gen, Generator):
            return gen
        result = yield from gen
    except Exception as exc:  # every failure must reach the user, whatever its type
        tb = traceback.format_exc()
        log.error("AnchorAD %s failed: %s\n%s", what or getattr(job, "__name__", "job"), failure_reason(exc), tb)
        sink["failure"] = JobFailure(failure_reason(exc), tb, exc)
        return sink["failure"]
    return result


def open_subject_job(folder: "str | Path") -> Generator[Step, None, tuple[OpenedSubject, list]]:
    """Read the subject's files and text, then its image layers (T1, fMRI); changes nothing."""
    from ._reader import read_subject_layers

    yield Step("open", 0, 2, "finding files")
    state = read_subject(folder)
    yield Step("open", 1, 2, "reading images")
    files = state.files
    layers = read_subject_layers(state.folder) if files is not None and (files.smri or files.fmri) else []
    return state, layers


def start_job(
    session: Any,
    job: Callable[..., Generator[Step, None, Any]],
    *args: Any,
    desc: str,
    on_return: Callable[[Any], None] | None = None,
    on_step: Callable[[Step], None] | None = None,
    on_done: Callable[[JobOutcome], None] | None = None,
    what: str = "",
) -> Any:
    """Run ``job(*args)`` in a napari generator worker with a progress bar; returns the worker.

    Parameters
    ----------
    session : Session
        Marked busy while the job runs.
    on_return
        Called (Qt thread) with the job's result when it completes.
    on_step
        Called (Qt thread) with each :class:`Step`.
    on_done
        Called (Qt thread) exactly once at the very end with a :class:`JobOutcome`: done,
        cancelled, or failed (the job raised, or ``on_return`` did) with the one-line reason,
        which has then also been shown as a napari notification and logged with its traceback.
    what
        What the job does, for the notification (``"diagnosis"``, ``"report"``...).
    """
    from napari.qt.threading import create_worker

    from ._session import report_error

    sink: dict[str, Any] = {}
    worker = create_worker(_guarded, job, args, what, sink, _progress={"desc": desc}, _ignore_errors=True,
                           _start_thread=False)
    state: dict[str, Any] = {"outcome": None, "over": False, "ended": False}

    def _fail(reason: str) -> None:
        if state["outcome"] is None or state["outcome"].ok:
            state["outcome"] = JobOutcome("failed", reason)
            report_error(reason, what)

    def _stepped(step: Any) -> None:
        # updating the progress bar can process pending events, so the job's end may be
        # handled in the middle of this function: tell the caller first, the bar second
        if not isinstance(step, Step) or state["over"]:
            return
        if on_step is not None:
            try:
                on_step(step)
            except Exception:  # a status line must never stop the job
                log.exception("AnchorAD %s: showing a step failed", what)
        pbar = getattr(worker, "pbar", None)
        if pbar is not None:
            try:
                if pbar.total != step.total:
                    pbar.total = step.total
                pbar.update(step.done - pbar.n)
                pbar.set_description(f"{desc}: {step.text}")
            except Exception:  # the bar is cosmetic
                pass

    def _returned(value: Any) -> None:
        state["over"] = True
        if isinstance(value, JobFailure):
            _fail(value.reason)
            return
        state["outcome"] = JobOutcome("done")
        if on_return is not None:
            try:
                on_return(value)
            except Exception as exc:  # showing a result must never crash the viewer
                log.error("AnchorAD %s: showing the result failed\n%s", what, traceback.format_exc())
                _fail(failure_reason(exc))

    def _errored(exc: BaseException) -> None:  # not expected (see _guarded), but never silent
        state["over"] = True
        log.error("AnchorAD %s failed: %s", what, failure_reason(exc), exc_info=exc)
        _fail(failure_reason(exc))

    def _finished() -> None:
        if state["ended"]:
            return
        state["ended"] = True
        state["over"] = True
        if state["outcome"] is None:
            if "failure" in sink:
                _fail(sink["failure"].reason)
            elif not worker.abort_requested:
                _fail("the job stopped without a result")
        outcome = state["outcome"] if state["outcome"] is not None else JobOutcome("cancelled")
        session.end()
        if on_done is not None:
            try:
                on_done(outcome)
            except Exception:
                log.exception("AnchorAD %s: resetting the panel failed", what)

    worker.yielded.connect(_stepped)
    worker.returned.connect(_returned)
    worker.errored.connect(_errored)
    worker.finished.connect(_finished)
    worker.outcome = lambda: state["outcome"]  # for tests and callers that poll
    session.begin()
    worker.start()
    return worker
