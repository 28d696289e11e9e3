"""Loaded diagnosis pipelines, kept between subjects (one per bundle path, device and dtype).

Loading a bundle (hash check, backbones, adapters) is the slow part of a first diagnosis; a
researcher going through subjects with one model must not pay it again. The cache is shared
by every viewer of the process and is safe to use from worker threads.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

__all__ = ["PipelineCache", "PIPELINES", "pipeline_key"]


def pipeline_key(bundle: "str | Path", device: str, dtype: str) -> tuple[str, str, str]:
    """Cache key: resolved bundle folder, device name, dtype name."""
    return (str(Path(bundle).expanduser().resolve()), str(device or "auto"), str(dtype or "float32"))


class PipelineCache:
    """``(bundle, device, dtype)`` -> :class:`~anchorad_core.inference.DiagnosisPipeline`.

    Parameters
    ----------
    max_size : int
        Pipelines kept at once (the least recently used is dropped first).
    """

    def __init__(self, max_size: int = 2) -> None:
        self.max_size = max_size
        self._items: dict[tuple[str, str, str], Any] = {}
        self._lock = threading.Lock()
        self.loads = 0  # how many bundles were loaded (for tests and the status line)

    def __contains__(self, key: tuple[str, str, str]) -> bool:
        with self._lock:
            return key in self._items

    def get(self, bundle: "str | Path", device: str = "auto", dtype: str = "float32") -> Any:
        """The pipeline for this key, loading the bundle on first use (may take seconds)."""
        from anchorad_core.inference import DiagnosisPipeline

        key = pipeline_key(bundle, device, dtype)
        with self._lock:
            if key in self._items:
                pipeline = self._items.pop(key)
                self._items[key] = pipeline  # most recently used last
                return pipeline
        pipeline = DiagnosisPipeline(key[0], device=key[1], dtype=key[2])
        with self._lock:
            self._items[key] = pipeline
            self.loads += 1
            while len(self._items) > self.max_size:
                self._items.pop(next(iter(self._items)))
        return pipeline

    def clear(self) -> None:
        """Drop every loaded pipeline."""
        with self._lock:
            self._items.clear()


#: The process-wide cache used by the Diagnose panel.
PIPELINES = PipelineCache()
