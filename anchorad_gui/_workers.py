"""Long work off the Qt thread: napari generator workers with progress, cancel and error notices.

Each job is a plain generator (no Qt) that yields :class:`Step` before each stage and
returns its result; :func:`start_job` runs it in a napari ``GeneratorWorker`` with a progress
bar in napari's activity dock. ``worker.quit()`` (the Cancel buttons) stops the job at its
next stage boundary. Errors become napari notifications, never exceptions in the Qt loop.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Generator

__all__ = ["Step", "diagnose_job", "open_subject_job", "start_job"]


@dataclass
class Step:
    """A stage of a job, yielded before it runs (``done`` of ``total`` steps finished)."""

    name: str
    done: int
    total: int


def open_subject_job(folder: "str | Path") -> Generator[Step, None, tuple[Any, list]]:
    """Read the subject's files and text, then its image layers (T1, fMRI)."""
    from ._reader import read_subject_layers
    from ._session import read_subject_state

    yield Step("finding files", 0, 2)
    state = read_subject_state(folder)
    yield Step("reading images", 1, 2)
    layers = read_subject_layers(state.folder) if (state.files.smri or state.files.fmri) else []
    return state, layers


def diagnose_job(
    bundle: "str | Path",
    device: str,
    dtype: str,
    folder: "str | Path | None",
    overrides: dict[str, Any],
    n_modalities: int = 4,
) -> Generator[Step, None, Any]:
    """Load (or reuse) the pipeline, read the subject, run every stage; return a ``DiagnosisState``."""
    from ._pipelines import PIPELINES, pipeline_key
    from ._session import DiagnosisState

    start = time.perf_counter()
    extra = 2
    total = extra + 2 * n_modalities + 1
    key = pipeline_key(bundle, device, dtype)
    yield Step("loading the model" if key not in PIPELINES else "model loaded", 0, total)
    pipeline = PIPELINES.get(bundle, device, dtype)
    yield Step("reading the subject", 1, total)
    subject = pipeline.load_subject(folder, overrides=overrides)
    runner = pipeline.run(subject, return_outputs=True)
    try:
        while True:
            stage = next(runner)
            yield Step(stage.name, stage.index + extra, stage.total + extra)
    except StopIteration as done:
        diagnosis = done.value
    return DiagnosisState(pipeline, subject, diagnosis, key, time.perf_counter() - start)


def start_job(
    session: Any,
    job: Callable[..., Generator[Step, None, Any]],
    *args: Any,
    desc: str,
    on_return: Callable[[Any], None] | None = None,
    on_step: Callable[[Step], None] | None = None,
    on_done: Callable[[bool], None] | None = None,
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
        Called (Qt thread) at the very end with ``True`` if the job completed, ``False`` if it
        was cancelled or failed.
    """
    from napari.qt.threading import create_worker

    from ._session import report_error

    worker = create_worker(job, *args, _progress={"desc": desc}, _ignore_errors=True, _start_thread=False)
    outcome = {"ok": False, "over": False}

    def _stepped(step: Any) -> None:
        # updating the progress bar can process pending events, so the job's end may be
        # handled in the middle of this function: tell the caller first, the bar second
        if not isinstance(step, Step) or outcome["over"]:
            return
        if on_step is not None:
            on_step(step)
        pbar = getattr(worker, "pbar", None)
        if pbar is not None:
            try:
                if pbar.total != step.total:
                    pbar.total = step.total
                pbar.update(step.done - pbar.n)
                pbar.set_description(f"{desc}: {step.name}")
            except Exception:  # the bar is cosmetic
                pass

    def _returned(value: Any) -> None:
        outcome["ok"] = True
        outcome["over"] = True
        if on_return is not None:
            try:
                on_return(value)
            except Exception as exc:  # showing a result must never crash the viewer
                outcome["ok"] = False
                report_error(exc, what)

    def _errored(exc: BaseException) -> None:
        report_error(exc, what)

    def _finished() -> None:
        outcome["over"] = True
        session.end()
        if on_done is not None:
            on_done(outcome["ok"])

    worker.yielded.connect(_stepped)
    worker.returned.connect(_returned)
    worker.errored.connect(_errored)
    worker.finished.connect(_finished)
    session.begin()
    worker.start()
    return worker
