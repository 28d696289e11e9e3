"""Choosing the compute device and dtype."""
from __future__ import annotations

import torch

from .errors import ConfigError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def available_devices() -> list[str]:
    """Devices usable on this machine: ``auto``, ``cpu``, every ``cuda:N`` and ``mps``."""
    devices = ["auto", "cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def resolve_device(name: str = "auto") -> torch.device:
    """Turn ``auto`` / ``cpu`` / ``cuda`` / ``cuda:N`` / ``mps`` into a device that exists here."""
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda:0")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available on this machine")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("device 'mps' requested but Apple MPS is not available on this machine")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r} does not exist (this machine has {torch.cuda.device_count()} GPUs)")
    return device


def resolve_dtype(name: str = "float32") -> torch.dtype:
    """``float32`` / ``bfloat16`` / ``float16`` as a torch dtype."""
    try:
        return DTYPES[name]
    except KeyError:
        raise ConfigError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPES)}") from None


_DTYPE_SUPPORT: dict[tuple[str, str], bool] = {}


def dtype_supported(device: "str | torch.device", dtype: str) -> bool:
    """Whether ``device`` runs the operations of a diagnosis in ``dtype`` (a tiny probe, cached).

    The probe runs a linear layer, layer norm, softmax attention and GELU - the operations of
    the Q-former and the backbones - and checks the result is finite.
    """
    name = str(resolve_device(str(device)))
    key = (name, dtype)
    if key not in _DTYPE_SUPPORT:
        try:
            dt = resolve_dtype(dtype)
            dev = torch.device(name)
            # the probe's random weights must not move anyone's random stream
            with torch.random.fork_rng(devices=[dev.index or 0] if dev.type == "cuda" else []):
                x = torch.randn(2, 8, 16, device=dev).to(dt)
                linear = torch.nn.Linear(16, 16).to(dev, dt)
                norm = torch.nn.LayerNorm(16).to(dev, dt)
                attention = torch.nn.MultiheadAttention(16, 2, batch_first=True).to(dev, dt)
                with torch.no_grad():
                    h = norm(linear(x))
                    h, w = attention(h, h, h, need_weights=True)
                    out = torch.nn.functional.gelu(h).float()
            _DTYPE_SUPPORT[key] = bool(torch.isfinite(out).all()) and bool(torch.isfinite(w.float()).all())
        except (RuntimeError, TypeError, NotImplementedError, ConfigError):
            _DTYPE_SUPPORT[key] = False
    return _DTYPE_SUPPORT[key]
