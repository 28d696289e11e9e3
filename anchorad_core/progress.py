"""Progress reporting and cancellation shared by the CLI (tqdm) and the GUI (napari progress)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, NoReturn, Protocol, TextIO

from .errors import CancelledError

if TYPE_CHECKING:
    from tqdm.std import tqdm


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

