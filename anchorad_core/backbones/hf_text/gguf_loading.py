"""A language model read from a GGUF file, parsed and dequantised once per process.

transformers reads a GGUF file (config, tokenizer and weights, dequantised to the requested
dtype) with the ``gguf`` package; for SmolLM2-135M this takes about 15 s of CPU time on two
cores, most of it parsing the file's metadata three times (config, tokenizer, weights).
Cross-validation builds a fresh backbone per fold and loading a bundle builds it again, so
the parsed config, tokenizer and weights are kept in memory, keyed by the file's path, size,
modification time and the dtype. The first build gets the loaded model itself and the cache
keeps a copy of its weights; every later build gets its own copies: the model is built with
empty parameters (``accelerate.init_empty_weights``) and the kept weights are assigned to it,
cloned, so training one backbone never changes another.
"""
from __future__ import annotations

import copy
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch

from ...errors import CheckpointError
from ..hf_common import check_loading_info, load_hf_config, load_hf_tokenizer, offline_kwargs, strip_unused_heads

if TYPE_CHECKING:
    from transformers import PreTrainedModel

__all__ = ["GGUFModel", "load_gguf_model", "clear_gguf_cache"]


class GGUFModel(NamedTuple):
    """What :func:`load_gguf_model` returns: fresh objects, owned by the caller."""

    hf_config: Any
    tokenizer: Any
    model: "PreTrainedModel"


class _Parsed(NamedTuple):
    hf_config: Any
    tokenizer: Any
    state: "dict[str, torch.Tensor] | None"


_CACHE: dict[tuple, _Parsed] = {}
_LOCK = threading.Lock()


def clear_gguf_cache() -> None:
    """Forget every parsed GGUF file (frees their weights)."""
    with _LOCK:
        _CACHE.clear()


def load_gguf_model(
    folder: Path, gguf_file: str, dtype: torch.dtype, load_weights: bool = True, what: str = "clinical-text model"
) -> GGUFModel:
    """The bare ``AutoModel``, its config and tokenizer from ``folder / gguf_file``.

    Parameters
    ----------
    folder, gguf_file
        The model folder and the GGUF file's name in it.
    dtype
        Dtype the weights are dequantised to.
    load_weights
        ``False``: the architecture only (random weights), from the file's config.
    what
        The model, for error messages.

    Raises
    ------
    CheckpointError
        If the file cannot be read or its weights do not fit the architecture it declares.
    """
    path = Path(folder) / gguf_file
    try:
        stat = path.stat()
    except OSError as exc:
        raise CheckpointError(f"{what}: cannot read the GGUF file ({exc.strerror})", path=path) from None
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, dtype)
    loaded = None
    with _LOCK:
        parsed = _CACHE.get(key)
        if parsed is None or (load_weights and parsed.state is None):
            parsed, loaded = _parse(folder, gguf_file, dtype, load_weights, what, parsed)
            _CACHE[key] = parsed
    hf_config = copy.deepcopy(parsed.hf_config)
    tokenizer = copy.deepcopy(parsed.tokenizer)
    if loaded is not None:
        model = loaded
    elif load_weights:
        assert parsed.state is not None
        model = _model_with_weights(hf_config, parsed.state)
    else:
        from transformers import AutoModel

        model = AutoModel.from_config(hf_config).to(dtype)
        strip_unused_heads(model)
    model.eval()
    return GGUFModel(hf_config, tokenizer, model)


def _parse(
    folder: Path, gguf_file: str, dtype: torch.dtype, load_weights: bool, what: str, known: "_Parsed | None"
) -> "tuple[_Parsed, PreTrainedModel | None]":
    """Read the config and tokenizer (unless ``known``) and, with ``load_weights``, the model
    (returned beside the parsed parts, which keep a copy of its weights)."""
    from transformers import AutoModel

    if known is None:
        hf_config = load_hf_config(folder, what=what, gguf_file=gguf_file)
        tokenizer = load_hf_tokenizer(folder, what=what, gguf_file=gguf_file)
    else:
        hf_config, tokenizer = known.hf_config, known.tokenizer
    if not load_weights:
        return _Parsed(hf_config, tokenizer, None), None
    try:
        model, info = AutoModel.from_pretrained(
            str(folder), gguf_file=gguf_file, config=copy.deepcopy(hf_config), dtype=dtype,
            output_loading_info=True, **offline_kwargs(False))
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"{what}: cannot load the GGUF weights: {exc}", path=folder / gguf_file) from exc
    check_loading_info(info, folder / gguf_file, [r"position_ids$", r"rotary_emb"], what)
    strip_unused_heads(model)
    state = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    return _Parsed(hf_config, tokenizer, state), model


def _model_with_weights(hf_config: Any, state: dict[str, torch.Tensor]) -> "PreTrainedModel":
    """A bare model of ``hf_config`` holding clones of ``state`` (built without allocating weights)."""
    from accelerate import init_empty_weights
    from transformers import AutoModel

    with init_empty_weights(include_buffers=False):
        model = AutoModel.from_config(hf_config)
    strip_unused_heads(model)
    model.load_state_dict({k: v.clone() for k, v in state.items()}, strict=True, assign=True)
    return model
