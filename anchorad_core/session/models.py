"""The models a session runs: where they can run (devices, dtypes) and the cache of loaded ones."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from .. import device as _device

if TYPE_CHECKING:
    from ..inference import DiagnosisPipeline

__all__ = ["DTYPES", "available_devices", "dtype_supported", "pipeline_key", "PipelineCache", "PIPELINES"]

#: The dtypes a model can run in.
DTYPES = ("float32", "bfloat16", "float16")


def available_devices() -> list[str]:
    """The device names offered on this machine (``auto`` first)."""
    return list(_device.available_devices())


def dtype_supported(device: str, dtype: str) -> bool:
    """Whether ``dtype`` runs on ``device`` here."""
    return bool(_device.dtype_supported(device, dtype))


def pipeline_key(bundle: "str | Path", device: str, dtype: str) -> tuple[str, str, str]:
    """Cache key of a loaded model: resolved bundle folder, device name, dtype name."""
    return (str(Path(bundle).expanduser().resolve()), str(device or "auto"), str(dtype or "float32"))


class PipelineCache:
    """``(bundle, device, dtype)`` -> :class:`~anchorad_core.inference.DiagnosisPipeline`, thread-safe.

    Loading a bundle (hash check, backbones, adapters) is the slow part of a first diagnosis;
    going through subjects with one model must not pay it again.

    Parameters
    ----------
    max_size : int
        Pipelines kept at once (the least recently used is dropped first).
    """

    def __init__(self, max_size: int = 2) -> None:
        self.max_size = max_size
        self._items: dict[tuple[str, str, str], DiagnosisPipeline] = {}
        self._lock = threading.Lock()
        self.loads = 0  # how many bundles were loaded (for tests and status lines)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._items

    def get(self, bundle: "str | Path", device: str = "auto", dtype: str = "float32") -> "DiagnosisPipeline":
        """The pipeline for this key, loading the bundle on first use (may take seconds)."""
        from ..inference import DiagnosisPipeline

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


#: The process-wide cache (the GUI's sessions share it).
PIPELINES = PipelineCache()
