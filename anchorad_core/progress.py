"""Progress reporting and cancellation: one :class:`Step` record, shared by the CLI, the GUI and the core.

* Long jobs that can stop between stages are generators yielding :class:`Step` (the
  :class:`~anchorad_core.session.Session` methods, :meth:`DiagnosisPipeline.run
  <anchorad_core.inference.DiagnosisPipeline.run>`) and returning their result; :func:`drive`
  runs one to the end, passing each step to a :class:`Progress`.
* Blocking loops (training, cohort loading) call :meth:`Progress.update` with the same three
  figures; a :class:`ProgressSink` shows them: :class:`TqdmSink` on a terminal,
  :class:`LogSink` (one line per stage) in a log. The GUI turns steps into napari progress bars.
* Cancelling: a :class:`CancelToken` (or any ``() -> bool``) is checked between steps and raises
  :class:`~anchorad_core.errors.CancelledError`.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Generator, NoReturn, Protocol, TextIO, TypeVar

from .errors import CancelledError

if TYPE_CHECKING:
    from tqdm.std import tqdm

T = TypeVar("T")


@dataclass(frozen=True)
class Step:
    """``done`` of ``total`` steps of the stage ``name`` are finished; ``message`` says what comes next."""

    name: str
    done: int
    total: int
    message: str = ""

    @property
    def fraction(self) -> float:
        """``done / total`` in ``[0, 1]``."""
        return min(1.0, max(0.0, self.done / self.total)) if self.total > 0 else 1.0

    @property
    def text(self) -> str:
        """The message, else the stage name."""
        return self.message or self.name


class CancelToken:
    """Set by whoever wants a job to stop; the job checks it between steps (thread-safe)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Ask the job to stop at its next step."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._event.is_set()

    def __call__(self) -> bool:
        """Same as :attr:`cancelled` (so a token can be a :class:`Progress`'s ``cancelled``)."""
        return self._event.is_set()

    def check(self) -> None:
        """Raise :class:`CancelledError` if :meth:`cancel` was called."""
        if self._event.is_set():
            raise CancelledError("cancelled by the user")


class ProgressSink(Protocol):
    """Receives ``(stage, done, total)`` updates."""

    def __call__(self, stage: str, done: int, total: int) -> None: ...


class Progress:
    """A progress callback plus a cancellation check.

    Parameters
    ----------
    sink
        Called with ``(stage, done, total)``; ``None`` reports nothing.
    cancelled
        Returns ``True`` once the user asked to stop; checked between steps.
    """

    def __init__(self, sink: "ProgressSink | None" = None, cancelled: "Callable[[], bool] | None" = None) -> None:
        self.sink = sink
        self.cancelled = cancelled

    def report(self, step: Step) -> None:
        """Pass a :class:`Step` on to the sink, then check for cancel."""
        self.update(step.name, step.done, step.total)

    def update(self, stage: str, done: int, total: int) -> None:
        """Report that ``done`` of ``total`` steps of ``stage`` are finished, then check for cancel."""
        if self.sink is not None:
            self.sink(stage, done, total)
        self.check()

    def check(self) -> None:
        """Raise :class:`CancelledError` if the user asked to stop."""
        if self.cancelled is not None and self.cancelled():
            raise CancelledError("cancelled by the user")


SILENT = Progress()


def drive(steps: "Generator[Step, None, T]", progress: Progress = SILENT) -> T:
    """Run a step generator to the end, reporting each step; return the generator's result.

    Each stage (a run of steps with one ``name``) is reported complete when the next stage
    begins and at the end, so a :class:`LogSink` prints its ``done`` line. A cancel request
    (``progress.cancelled``) raises :class:`CancelledError` here, between two steps, after the
    generator was closed (the session's generators then commit nothing).
    """
    last: Step | None = None
    try:
        while True:
            try:
                step = next(steps)
            except StopIteration as finished:
                result: T = finished.value
                break
            if last is not None and step.name != last.name:
                progress.update(last.name, last.total, last.total)
            last = step
            progress.report(step)
    finally:
        steps.close()
    if last is not None:
        progress.update(last.name, last.total, last.total)
    return result


class TqdmSink:
    """A :class:`ProgressSink` that shows one tqdm bar per stage (used by the CLI)."""

    def __init__(self, disable: bool = False) -> None:
        self._bars: "dict[str, tqdm[NoReturn]]" = {}
        self.disable = disable

    def __call__(self, stage: str, done: int, total: int) -> None:
        from tqdm.auto import tqdm

        bar = self._bars.get(stage)
        if bar is None:
            bar = tqdm(total=total, desc=stage, leave=True, disable=self.disable, dynamic_ncols=True)
            self._bars[stage] = bar
        bar.total = total
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()
            self._bars.pop(stage, None)

    def close(self) -> None:
        """Close any bar still open."""
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()


class LogSink:
    """A :class:`ProgressSink` for logs (stderr not a terminal): one line per stage, not per update.

    Prints ``stage: started (total N)`` when a stage first reports and ``stage: done in Xs``
    when it completes; updates in between are dropped.
    """

    def __init__(self, stream: "TextIO | None" = None) -> None:
        import sys

        self.stream = stream if stream is not None else sys.stderr
        self._started: dict[str, float] = {}
        self._finished: set[str] = set()

    def __call__(self, stage: str, done: int, total: int) -> None:
        import time

        now = time.perf_counter()
        if stage not in self._started:
            if done >= total and stage in self._finished:  # a repeated final update: said already
                return
            self._started[stage] = now
            self._finished.discard(stage)
            if done < total:
                print(f"{stage}: started ({total} steps)", file=self.stream, flush=True)
        if done >= total:
            start = self._started.pop(stage)
            self._finished.add(stage)
            print(f"{stage}: done in {now - start:.1f} s", file=self.stream, flush=True)

    def close(self) -> None:
        """Nothing to close (kept for the :class:`TqdmSink` interface)."""
        self._started.clear()

