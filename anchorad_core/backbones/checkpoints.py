"""Safe reading of published checkpoints and shared state-dict helpers.

Published foundation-model weights come as ``torch.save`` pickles (``.pt``, ``.pth``,
``.pth.tar``). A pickle can run arbitrary code when it is loaded, so every file goes through
``torch.load(..., weights_only=True)``: only dicts, lists, tensors and plain numbers are
accepted, and anything else is refused with a :class:`~anchorad_core.errors.CheckpointError`
that names the file. ``.safetensors`` files are read with :mod:`safetensors` (no code at all).

The family-specific loaders (:func:`anchorad_core.backbones.uniformer3d.load_brainmvp_checkpoint`,
:func:`anchorad_core.backbones.brainjepa.load_brainjepa_checkpoint`) turn the raw mapping into
the backbone's own key names and then call :func:`load_checked` here.
"""
from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from ..errors import CheckpointError

__all__ = [
    "CheckpointReport",
    "read_checkpoint",
    "select_state_dict",
    "strip_prefixes",
    "load_checked",
]

_SAFETENSORS_SUFFIXES = (".safetensors",)


@dataclass
class CheckpointReport:
    """What a checkpoint loader did.

    Attributes
    ----------
    path
        The checkpoint file.
    loaded
        Model keys that received a tensor from the file.
    skipped
        Checkpoint keys deliberately not loaded (decoder parts, templates, heads, the
        first conv under the ``"skip"`` channel rule...), each with the reason.
    left_initialised
        Model keys the file does not provide and that are allowed to keep their
        initial values (new modules such as an extra-token bridge, a pooling norm).
    notes
        Human-readable remarks (e.g. how the input-channel rule was applied).
    """

    path: Path
    loaded: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    left_initialised: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One paragraph for logs and reports."""
        parts = [f"{self.path.name}: loaded {len(self.loaded)} tensors"]
        if self.skipped:
            parts.append(f"skipped {len(self.skipped)} checkpoint entries")
        if self.left_initialised:
            parts.append(f"kept the initial values of {len(self.left_initialised)} model entries "
                         f"({_short_list(self.left_initialised)})")
        text = ", ".join(parts) + "."
        if self.notes:
            text += " " + " ".join(self.notes)
        return text


def read_checkpoint(path: "str | Path") -> dict[str, Any]:
    """Read a checkpoint file without ever executing code from it.

    Parameters
    ----------
    path
        A ``torch.save`` file (read with ``weights_only=True`` on the CPU) or a
        ``.safetensors`` file.

    Returns
    -------
    dict
        The top-level mapping stored in the file.

    Raises
    ------
    CheckpointError
        If the file is missing, unreadable, not a mapping, or would need to import or call
        anything other than tensor reconstruction (a pickle carrying code or objects).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("checkpoint file not found", path)
    if path.name.endswith(_SAFETENSORS_SUFFIXES):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path), device="cpu"))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"not a readable safetensors file ({exc})", path) from None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            "refused to load: the pickle contains objects or code beyond plain tensors and "
            f"containers, so it was not unpickled (weights_only=True said: {first_line})",
            path,
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, TypeError) as exc:
        raise CheckpointError(f"not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})",
                              path) from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"expected a dict at the top level, found {type(obj).__name__}", path)
    return dict(obj)


def select_state_dict(
    checkpoint: Mapping[str, Any], path: Path, keys: Iterable[str]
) -> dict[str, torch.Tensor]:
    """Pick the state dict stored under the first of ``keys`` present in ``checkpoint``.

    A mapping whose values are all tensors is accepted as a bare state dict.

    Raises
    ------
    CheckpointError
        If none of ``keys`` is present and the mapping is not a bare state dict.
    """
    keys = list(keys)
    for key in keys:
        if key in checkpoint:
            state = checkpoint[key]
            if not isinstance(state, Mapping):
                raise CheckpointError(f"entry {key!r} is a {type(state).__name__}, not a state dict", path)
            return _tensors_only(state, path, key)
    if checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        return dict(checkpoint)
    raise CheckpointError(
        f"no state dict under {' / '.join(repr(k) for k in keys)}; top-level keys are "
        f"{_short_list(sorted(map(str, checkpoint)))}",
        path,
    )


def strip_prefixes(key: str, prefixes: Iterable[str]) -> str:
    """Remove any of ``prefixes`` from the front of ``key``, repeatedly, in any order."""
    prefixes = tuple(prefixes)
    changed = True
    while changed:
        changed = False
        for prefix in prefixes:
            if key.startswith(prefix):
                key = key[len(prefix):]
                changed = True
    return key


def load_checked(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    report: CheckpointReport,
    allowed_missing: "Iterable[str]" = (),
) -> CheckpointReport:
    """Copy ``state`` into ``model`` after checking names and shapes.

    Parameters
    ----------
    model
        The target module.
    state
        Tensors already renamed to ``model``'s own keys (skipped entries removed).
    report
        The report to fill in; ``report.path`` names the file in errors.
    allowed_missing
        Key prefixes of ``model`` that may be absent from ``state`` (they keep their
        initial values and are listed in ``report.left_initialised``).

    Raises
    ------
    CheckpointError
        On unexpected keys, missing keys (other than the allowed ones) or shape mismatches.
        The message lists the offending keys and says which architecture would fit.
    """
    own = model.state_dict()
    allowed = tuple(allowed_missing)
    unexpected = sorted(k for k in state if k not in own)
    missing = sorted(k for k in own if k not in state and not k.startswith(allowed))
    mismatched = sorted(
        f"{k} (file {tuple(state[k].shape)}, model {tuple(own[k].shape)})"
        for k in state
        if k in own and tuple(state[k].shape) != tuple(own[k].shape)
    )
    problems = []
    if mismatched:
        problems.append(f"shape mismatch for {len(mismatched)} tensors: {_short_list(mismatched)}")
    if missing:
        problems.append(f"missing {len(missing)} tensors the model needs: {_short_list(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensors: {_short_list(unexpected)}")
    if problems:
        raise CheckpointError(
            "checkpoint does not fit the configured architecture: " + "; ".join(problems)
            + ". Check the preset (depth, widths, heads, ROI/frame counts) against the file.",
            report.path,
        )
    converted = {k: v.to(dtype=own[k].dtype) if v.is_floating_point() else v for k, v in state.items()}
    result = model.load_state_dict(converted, strict=False)
    report.loaded = sorted(state)
    report.left_initialised = sorted(result.missing_keys)
    return report


def _tensors_only(state: Mapping[str, Any], path: Path, where: str) -> dict[str, torch.Tensor]:
    bad = [str(k) for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"entry {where!r} holds non-tensor values: {_short_list(bad)}", path)
    return {str(k): v for k, v in state.items()}


def _short_list(items: "list[str]", limit: int = 6) -> str:
    items = list(items)
    head = ", ".join(items[:limit])
    return head + (f", ... (+{len(items) - limit} more)" if len(items) > limit else "")
