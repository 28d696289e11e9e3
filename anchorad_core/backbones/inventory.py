"""What every backbone preset is, and how much memory its weights take, without loading any.

:func:`backbone_inventory` lists every registered preset (:func:`registry.presets`) with its
modality, family, description, width, parameter count and weight memory at float32 and
bfloat16. The numbers come from building the architecture on PyTorch's ``meta`` device:
parameters get shapes but no storage, so even LLaMA-2 13B is sized in well under a second
and a few megabytes. Nothing is read from a model hub and no checkpoint is opened.

How a config is sized (one generic path for every family):

1. If the family class has a ``sizing_module(config, base_dir)`` classmethod and it returns a
   module, that module is measured. The Hugging Face families use it to size presets of
   published models whose ``model_path`` the user has not set yet (``llama-2-7b``,
   ``llama-2-13b``, ``nt-v1-500m-human-ref``) from the published dimensions the preset carries
   as ``reference_architecture``, and the Nucleotide Transformer uses it to skip its load-time
   probe (a forward pass, impossible without weights).
2. Otherwise the backbone itself is built with ``build_backbone(config, load_weights=False)``.

Either is first built under ``with torch.device("meta")`` (no tensor gets storage). Code that
needs real values while it builds (e.g. ``torch.linspace(...).tolist()`` for stochastic-depth
rates, sin-cos tables from numpy) cannot run there; it is built again with only the
*parameters* moved to ``meta`` as they are registered (the ``accelerate.init_empty_weights``
rule), so buffers and temporaries stay real but small. Rows say which way was used.

Files a config needs only for its *values* are not needed for sizing: a ``brainjepa`` preset
without ``gradient_path`` is sized with a placeholder gradient table of the published width
(30 gradients, as Brain-JEPA's ``gradient_mapping_450.csv``); the row says so.

Counts are of the backbone as AnchorAD uses it: the bare encoder without LM head, pooler or
contact head (so LLaMA-2 "7B" is 6.61e9 here, the LM head being the other 0.13e9). Weight
memory is parameters × 4 bytes (fp32) or × 2 bytes (bf16); activations, optimiser state and
LoRA adapters come on top.
"""
from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple

import torch
from torch import nn

from ..errors import AnchorADError
from . import registry

__all__ = [
    "BYTES_PER_PARAMETER",
    "backbone_inventory",
    "format_bytes",
    "format_count",
    "format_inventory",
    "MetaBuild",
    "meta_build",
    "parameters_on_meta",
    "size_backbone",
]

#: Bytes per parameter of the memory columns.
BYTES_PER_PARAMETER: dict[str, int] = {"fp32": 4, "bf16": 2}

#: Columns of :func:`format_inventory`: (header, row key).
_COLUMNS: tuple[tuple[str, str], ...] = (
    ("preset", "preset"),
    ("modality", "modality"),
    ("family", "family"),
    ("params", "parameters"),
    ("fp32", "fp32_bytes"),
    ("bf16", "bf16_bytes"),
    ("description", "description"),
)

#: Columns of the published Brain-JEPA gradient table (``gradient_mapping_450.csv``: 450 × 30).
BRAINJEPA_PUBLISHED_GRADIENTS = 30


# ---------------------------------------------------------------------------------------------
# building without weights
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Move every parameter to the ``meta`` device as soon as a module registers it.

    Buffers and temporary tensors stay on the CPU, so construction code that computes with
    real values (sin-cos tables, ``linspace(...).tolist()``) still runs; the parameters (the
    weights) never keep storage. This is the rule of ``accelerate.init_empty_weights`` with
    ``include_buffers=False``, without the dependency. It patches ``nn.Module`` for the
    duration of the block, so do not build other models in other threads meanwhile.
    """
    original = nn.Module.register_parameter

    # ``self`` as the first name keeps the signature that of the method it replaces.
    def register(self: nn.Module, name: str, param: "nn.Parameter | None") -> None:
        original(self, name, param)
        if param is not None and not param.is_meta:
            kwargs = {**param.__dict__, "requires_grad": param.requires_grad}
            self._parameters[name] = type(param)(param.to("meta"), **kwargs)

    # Patching a method on the class is the point of this context manager (mypy flags any
    # assignment to a method as method-assign).
    nn.Module.register_parameter = register  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter = original  # type: ignore[method-assign]


class MetaBuild(NamedTuple):
    """What :func:`meta_build` returns."""

    #: The backbone (or the bare model a family's ``sizing_module`` gave), parameters on ``meta``.
    module: nn.Module
    #: ``"meta"`` (built entirely on the meta device) or ``"meta-parameters"`` (parameters on
    #: meta, buffers real; see the module docstring).
    how: str
    #: How a file or a ``model_path`` that is not set was stood in for (``""`` if nothing was).
    note: str


def meta_build(spec: "str | dict[str, Any]", base_dir: "Path | None" = None) -> MetaBuild:
    """Build the module whose parameters are a backbone config's weights, without their storage.

    Parameters
    ----------
    spec
        Preset name or backbone config (``{"preset": ..., **overrides}`` accepted).
    base_dir
        Folder relative paths in the config refer to.

    Returns
    -------
    MetaBuild
        ``(module, how, note)``; every parameter of ``module`` is on the ``meta`` device.

    Raises
    ------
    AnchorADError
        (``ConfigError``, ``CheckpointError``...) when the config cannot be built, e.g. a
        ``model_path`` that is not set and no reference architecture.
    """
    config = registry.resolve_config(spec)
    cls = registry.families()[config["family"]]
    config, note, cleanup = _stand_in_for_missing_files(config)
    try:
        build = _builder(cls, config, base_dir)
        with torch.random.fork_rng(devices=[]):  # sizing never moves the caller's random stream
            return _build_on_meta(build, note)
    finally:
        cleanup()


def _build_on_meta(build: Callable[[], nn.Module], note: str) -> MetaBuild:
    """Strictly on the meta device first, parameters-only when construction needs real values."""
    try:
        with torch.device("meta"):
            return MetaBuild(build(), "meta", note)
    except AnchorADError:
        raise
    except (NotImplementedError, RuntimeError, TypeError, ValueError):
        pass  # construction code needs real values; keep only the parameters off storage
    with parameters_on_meta():
        module = build()
    return MetaBuild(module, "meta-parameters", note)


def _builder(cls: type, config: dict[str, Any], base_dir: "Path | None") -> Callable[[], nn.Module]:
    """The zero-argument function that builds ``config`` (family hook first, see module docstring)."""
    hook = getattr(cls, "sizing_module", None)

    def build() -> nn.Module:
        if hook is not None:
            module = hook(dict(config), base_dir)
            if module is not None:
                return module
        return registry.build_backbone(config, base_dir=base_dir, load_weights=False)

    return build


# ---------------------------------------------------------------------------------------------
# sizing
# ---------------------------------------------------------------------------------------------


def size_backbone(spec: "str | dict[str, Any]", base_dir: "Path | None" = None) -> dict[str, Any]:
    """Parameter count, weight memory and width of one backbone config (no weights allocated).

    Returns
    -------
    dict
        ``family``, ``modality``, ``parameters`` (unique parameters), ``buffers`` (elements of
        persistent buffers, e.g. BatchNorm statistics or a fixed positional table, also stored
        in checkpoints), ``fp32_bytes``, ``bf16_bytes`` (parameters × 4 / × 2), ``width``
        (token width C, ``None`` if unknown), ``dtype`` (the config's compute dtype, if it has
        one), ``built`` (``"meta"`` / ``"meta-parameters"``) and ``note`` (how a missing file
        was stood in for, or ``""``).
    """
    config = registry.resolve_config(spec)
    cls = registry.families()[config["family"]]
    module, how, note = meta_build(config, base_dir)
    real = [name for name, p in module.named_parameters() if not p.is_meta]
    if real:  # a family that materialised weights despite the meta build
        raise RuntimeError(f"{config['family']}: parameters were allocated while sizing: {real[:5]}")
    parameters = sum(p.numel() for p in module.parameters())
    return {
        "family": config["family"],
        "modality": cls.modality.value,
        "parameters": int(parameters),
        "buffers": int(_persistent_buffer_numel(module)),
        "fp32_bytes": int(parameters) * BYTES_PER_PARAMETER["fp32"],
        "bf16_bytes": int(parameters) * BYTES_PER_PARAMETER["bf16"],
        "width": _width(module),
        "dtype": config.get("dtype"),
        "built": how,
        "note": note,
    }


def backbone_inventory(names: "Iterable[str] | None" = None, base_dir: "Path | None" = None) -> list[dict[str, Any]]:
    """One JSON-ready row per registered preset (or per name in ``names``), in registry order.

    Each row has ``preset``, ``description`` and the keys of :func:`size_backbone`. A preset
    that cannot be sized keeps its row: ``parameters``, the byte counts and ``width`` are
    ``None`` and ``error`` says why (every other row has ``error`` ``None``).
    """
    presets = registry.presets()
    wanted = list(presets) if names is None else list(names)
    rows = []
    for name in wanted:
        if name not in presets:
            raise KeyError(f"unknown backbone preset {name!r}; known: {', '.join(sorted(presets))}")
        entry = presets[name]
        family = entry["config"].get("family")
        cls = registry.families().get(family)
        row: dict[str, Any] = {
            "preset": name,
            "modality": cls.modality.value if cls is not None else None,
            "family": family,
            "description": entry.get("description", ""),
        }
        try:
            row.update(size_backbone(name, base_dir))
            row["error"] = None
        except Exception as exc:  # noqa: BLE001 - one broken preset must not hide the others
            row.update(
                {
                    "parameters": None, "buffers": None, "fp32_bytes": None, "bf16_bytes": None,
                    "width": None, "dtype": entry["config"].get("dtype"), "built": None, "note": "",
                    "error": f"{type(exc).__name__}: {exc}",
                }
            )
        rows.append(row)
    return rows


def _stand_in_for_missing_files(config: dict[str, Any]) -> "tuple[dict[str, Any], str, Callable[[], None]]":
    """Replace files a config needs only for their values by placeholders of the published shape."""
    if config.get("family") == "brainjepa" and config.get("gradient_path") is None:
        tmp = tempfile.TemporaryDirectory(prefix="anchorad-sizing-")
        path = Path(tmp.name) / "gradients.csv"
        n_rois = int(config.get("n_rois", 450))
        row = ",".join(["0"] * BRAINJEPA_PUBLISHED_GRADIENTS)
        path.write_text("\n".join([row] * n_rois) + "\n", encoding="utf-8")
        config = {**config, "gradient_path": str(path)}
        note = (
            f"gradient_path not set: sized with the published {BRAINJEPA_PUBLISHED_GRADIENTS}-column "
            "gradient table"
        )
        return config, note, tmp.cleanup
    note = ""
    if config.get("model_path") is None and config.get("reference_architecture") and not config.get("esm_config"):
        note = "model_path not set: sized from the published architecture"
    return config, note, lambda: None


def _persistent_buffer_numel(module: nn.Module) -> int:
    """Elements of the buffers that go into the state dict (each shared buffer counted once)."""
    seen: set[int] = set()
    total = 0
    for sub in module.modules():
        for name, buf in sub._buffers.items():
            if buf is None or name in sub._non_persistent_buffers_set or id(buf) in seen:
                continue
            seen.add(id(buf))
            total += buf.numel()
    return total


def _width(module: nn.Module) -> "int | None":
    """Token width of a built backbone, or ``hidden_size`` of a bare HF model."""
    try:
        width = getattr(module, "width", None)
        if isinstance(width, int):
            return width
    except Exception:  # noqa: BLE001 - a width property that needs real weights
        pass
    hidden = getattr(getattr(module, "config", None), "hidden_size", None)
    return int(hidden) if isinstance(hidden, int) else None


# ---------------------------------------------------------------------------------------------
# text
# ---------------------------------------------------------------------------------------------


def format_count(n: "int | None") -> str:
    """``6607343616`` → ``"6.61 B"``; ``22565376`` → ``"22.6 M"``; ``None`` → ``"?"``."""
    if n is None:
        return "?"
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            value = n / scale
            return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return str(n)


def format_bytes(n: "int | None") -> str:
    """Bytes in binary units: ``13214687232`` → ``"12.3 GiB"``; ``None`` → ``"?"``."""
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            if unit == "B":
                return f"{int(value)} B"
            return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_inventory(rows: "list[dict[str, Any]]", max_description: "int | None" = 72) -> str:
    """Aligned text table of :func:`backbone_inventory` rows.

    Columns: preset | modality | family | params | fp32 | bf16 | description. Counts are
    decimal (``6.61 B`` parameters), memory binary (``24.6 GiB``). Descriptions are cut to
    ``max_description`` characters (``None``: never cut); rows that could not be sized show
    ``?`` and their error after the description.
    """
    table = [[header for header, _ in _COLUMNS]]
    for row in rows:
        description = " ".join(str(row.get("description") or "").split())
        if max_description is not None and len(description) > max_description:
            description = description[: max_description - 1].rstrip() + "…"
        if row.get("error"):
            description = f"{description} [not sized: {row['error']}]".strip()
        table.append(
            [
                str(row.get("preset", "")),
                str(row.get("modality") or "?"),
                str(row.get("family") or "?"),
                format_count(row.get("parameters")),
                format_bytes(row.get("fp32_bytes")),
                format_bytes(row.get("bf16_bytes")),
                description,
            ]
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(_COLUMNS))]
    right = {3, 4, 5}  # numbers right-aligned

    def line(cells: list[str]) -> str:
        parts = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return " | ".join(parts).rstrip()

    rule = "-+-".join("-" * w for w in widths)
    return "\n".join([line(table[0]), rule] + [line(r) for r in table[1:]])
