"""Crash-safe training runs: finished stages and per-epoch checkpoints in a run folder.

A run folder holds ``run.json`` (which stages are finished and a fingerprint of the run's
configuration) and one file per finished stage; the stage in progress keeps an epoch
checkpoint (trainable weights, optimiser state, best weights so far, history). Every file is
written to a temporary name and renamed, so a run killed at any instant (even by SIGKILL)
resumes from its last complete epoch. Checkpoints hold only tensors, numbers and strings and
are read with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError
from ..io_utils import atomic_write_json

RUN_FILE = "run.json"


class RunState:
    """Progress of one training run in ``run_dir``.

    Parameters
    ----------
    run_dir
        Folder of the run (created if needed).
    fingerprint
        JSON-serialisable description of the run (config, task, subjects); resuming a folder
        written for a different fingerprint is refused.
    resume
        Continue a run found in ``run_dir``; without it an existing run is an error.
    writer
        Whether this process writes (the main process of a distributed run); the others
        only read.
    """

    def __init__(
        self, run_dir: "str | Path", fingerprint: dict[str, Any], resume: bool = False, writer: bool = True
    ) -> None:
        self.dir = Path(run_dir)
        self.writer = writer
        self.key = hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()
        file = self.dir / RUN_FILE
        if file.is_file():
            state = json.loads(file.read_text(encoding="utf-8"))
            if not resume:
                raise ConfigError(f"{self.dir}: a training run is already there (use --resume to continue it)")
            if state.get("fingerprint") != self.key:
                raise ConfigError(f"{self.dir}: this run folder belongs to a different configuration or cohort")
            self.completed: list[str] = list(state.get("completed", []))
        else:
            self.completed = []
            if writer:
                self.dir.mkdir(parents=True, exist_ok=True)
                self._write()

    def _write(self) -> None:
        if not self.writer:
            return
        atomic_write_json(self.dir / RUN_FILE, {"fingerprint": self.key, "completed": self.completed})

    def is_done(self, stage: str) -> bool:
        """Whether ``stage`` finished in an earlier (or this) run."""
        return stage in self.completed

    def finish_stage(self, stage: str, payload: dict[str, Any]) -> None:
        """Record ``stage`` as finished with its result ``payload`` (tensors, numbers, strings)."""
        self.completed.append(stage)
        if not self.writer:
            return
        save_checkpoint(self._stage_file(stage), payload)
        self._write()
        self.epoch_file(stage).unlink(missing_ok=True)

    def stage_result(self, stage: str) -> dict[str, Any]:
        """The payload saved by :meth:`finish_stage`."""
        return load_checkpoint(self._stage_file(stage))

    def epoch_file(self, stage: str) -> Path:
        """Where the epoch checkpoint of ``stage`` lives."""
        return self.dir / f"{_safe(stage)}.epoch.pt"

    def _stage_file(self, stage: str) -> Path:
        return self.dir / f"{_safe(stage)}.done.pt"


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """``torch.save`` to a temporary file, fsync, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (no code execution)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def _safe(stage: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stage)
