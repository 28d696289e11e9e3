"""Error types raised by :mod:`anchorad_core`.

Every error that reaches a user names the file (when there is one) and the problem in one
line. The CLI prints ``str(error)`` and exits with status 2; the GUI shows it as a napari
notification.
"""
from __future__ import annotations

from pathlib import Path


class AnchorADError(Exception):
    """Base class of every error AnchorAD raises on purpose."""

    def __init__(self, message: str, path: "str | Path | None" = None) -> None:
        self.path = Path(path) if path is not None else None
        self.problem = message
        super().__init__(f"{self.path}: {message}" if self.path is not None else message)


class InputDataError(AnchorADError):
    """A subject file, cohort table or user-typed input is malformed."""


class BundleError(AnchorADError):
    """A model bundle is missing, incomplete, tampered with or of an unknown format."""


class CheckpointError(AnchorADError):
    """A published checkpoint cannot be read or does not fit the architecture."""


class ConfigError(AnchorADError):
    """A configuration value (task, preset, option) is invalid."""


class CancelledError(AnchorADError):
    """Long work was cancelled by the user between two stages."""
