"""Helpers shared by the Hugging Face backbone families (``hf-text``, ``nucleotide-transformer``).

Everything here is offline by construction: model folders are resolved on the local disk (or
in an existing local Hugging Face cache) and every ``from_pretrained`` call is made with
``local_files_only=True``. Nothing ever reaches a model hub.

The module also holds the token bookkeeping both families need to *append* extra tokens
(the anchored round's ``H_a``) to a right-padded batch:

``pack_with_extras``
    Places the extra tokens directly after each row's last valid token, i.e. every row is laid
    out as ``[valid tokens, extra tokens, padding]``. A causal decoder therefore reads the whole
    note before ``H_a``, and its last valid position has seen both.
``unpack_hidden``
    Undoes the layout on the encoder output: the row's own tokens back at their original
    positions, the extra tokens as a separate ``(R, E, C)`` tensor.
"""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError
from ..resources import RESOURCE_SCHEME, resolve_path

#: Accepted ``dtype`` config values.
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


def parse_dtype(name: "str | torch.dtype | None") -> torch.dtype:
    """Turn a config ``dtype`` string (``"float32"``, ``"bfloat16"``, ``"float16"``) into a dtype.

    Raises
    ------
    ConfigError
        If the name is not one of :data:`DTYPES`.
    """
    if name is None:
        return torch.float32
    if isinstance(name, torch.dtype):
        return name
    key = str(name).strip().lower().replace("torch.", "")
    if key not in DTYPES:
        raise ConfigError(f"unknown dtype {name!r}; expected one of float32, bfloat16, float16")
    return DTYPES[key]


def dtype_name(dtype: torch.dtype) -> str:
    """Canonical config string of ``dtype`` (inverse of :func:`parse_dtype`)."""
    return {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}[dtype]


# ---------------------------------------------------------------------------------------------
# offline loading
# ---------------------------------------------------------------------------------------------


def resolve_local_model_folder(model_path: "str | Path", base_dir: "Path | None" = None, what: str = "model") -> Path:
    """Find the local folder of a Hugging Face model, never touching the network.

    Parameters
    ----------
    model_path
        A folder (absolute, or relative to ``base_dir``) holding ``config.json``; or a hub id
        (``owner/name``) that already has a complete copy in the local Hugging Face cache.
    base_dir
        Folder that a relative ``model_path`` refers to (a bundle folder); the current
        directory is tried after it.
    what
        Human-readable name of the model for error messages.

    Returns
    -------
    Path
        The resolved folder (it holds ``config.json``).

    Raises
    ------
    CheckpointError
        If there is no such local folder and no local cached copy of the hub id. The message
        names ``model_path`` and says that AnchorAD does not download models.
    """
    text = str(model_path).strip()
    if not text:
        raise CheckpointError(f"{what}: empty model_path")
    if text.startswith(RESOURCE_SCHEME):  # a model folder AnchorAD ships (e.g. the pretrained nt-demo)
        text = str(resolve_path(text))
    path = Path(text).expanduser()
    candidates = [path] if path.is_absolute() else ([base_dir / path] if base_dir is not None else []) + [path]
    for candidate in candidates:
        if candidate.is_dir():
            if not (candidate / "config.json").is_file():
                raise CheckpointError(
                    f"{what}: folder has no config.json; expected a Hugging Face model folder "
                    "(config.json, tokenizer files, *.safetensors)",
                    path=candidate,
                )
            return candidate.resolve()
        if candidate.exists():
            raise CheckpointError(f"{what}: expected a model folder, found a file", path=candidate)
    if _HUB_ID.match(text) and not path.is_absolute():
        cached = _local_hub_snapshot(text)
        if cached is not None:
            return cached
        raise CheckpointError(
            f"{what}: {text!r} is not a local folder and the local Hugging Face cache has no copy "
            "of it. AnchorAD never downloads models: download the model yourself (e.g. "
            "`huggingface-cli download " + text + " --local-dir /models/" + text.split("/")[-1] + "`) "
            "and set model_path to that folder"
        )
    raise CheckpointError(f"{what}: model folder not found: {text}" + (f" (also looked in {base_dir})" if base_dir else ""))


def _local_hub_snapshot(repo_id: str) -> "Path | None":
    """Path of an already-downloaded snapshot of ``repo_id`` in the HF cache, or ``None``."""
    try:
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # noqa: BLE001 - any failure means "no usable local copy"
        return None
    return folder if (folder / "config.json").is_file() else None


def offline_kwargs(trust_remote_code: bool = False) -> dict[str, Any]:
    """Keyword arguments every ``from_pretrained`` call here gets (offline, no remote code by default).

    Also silences transformers' per-load progress bar: AnchorAD reports its own progress.
    """
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    return {"local_files_only": True, "trust_remote_code": bool(trust_remote_code)}


def load_hf_config(
    folder: Path, trust_remote_code: bool = False, what: str = "model", gguf_file: "str | None" = None
) -> Any:
    """``AutoConfig.from_pretrained`` on a local folder, errors turned into :class:`CheckpointError`.

    With ``gguf_file`` the config is read from that GGUF file's metadata (no ``config.json``).
    """
    from transformers import AutoConfig

    if gguf_file is not None:
        _check_gguf_reader(folder / gguf_file, what)
        try:
            return AutoConfig.from_pretrained(str(folder), gguf_file=str(gguf_file), **offline_kwargs(False))
        except Exception as exc:  # noqa: BLE001
            raise CheckpointError(f"{what}: cannot read the GGUF file's config: {exc}", path=folder / gguf_file) from exc
    raw = _read_json(folder / "config.json", what)
    if raw.get("auto_map") and not trust_remote_code:
        raise CheckpointError(
            f"{what}: this model folder ships its own Python code (config.json has auto_map); "
            "AnchorAD does not run it unless the backbone config sets allow_remote_code: true "
            "(review the folder's *.py files first)",
            path=folder,
        )
    try:
        return AutoConfig.from_pretrained(str(folder), **offline_kwargs(trust_remote_code))
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"{what}: cannot read the model config: {exc}", path=folder) from exc


def _check_gguf_reader(path: Path, what: str) -> None:
    """Raise a one-line :class:`CheckpointError` when the ``gguf`` package (transformers' GGUF reader) is missing."""
    import importlib.util

    if importlib.util.find_spec("gguf") is None:
        raise CheckpointError(f"{what}: reading a GGUF file needs the gguf package: pip install gguf", path=path)


def load_hf_tokenizer(folder: Path, trust_remote_code: bool = False, what: str = "model", **kwargs: Any) -> Any:
    """``AutoTokenizer.from_pretrained`` on a local folder, errors turned into :class:`CheckpointError`."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder), **offline_kwargs(trust_remote_code), **kwargs)
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"{what}: cannot load the tokenizer: {exc}", path=folder) from exc


def check_loading_info(info: dict[str, Any], folder: Path, allowed_missing: Iterable[str], what: str) -> None:
    """Raise when ``from_pretrained(..., output_loading_info=True)`` left weights uninitialised.

    ``allowed_missing`` holds regular expressions of parameter names that may be missing
    (e.g. an unused pooler). Anything else missing means the folder does not hold the
    architecture it claims, and a silently random backbone would be the result.
    """
    patterns = [re.compile(p) for p in allowed_missing]
    missing = [k for k in info.get("missing_keys", []) if not any(p.search(k) for p in patterns)]
    if missing:
        shown = ", ".join(sorted(missing)[:8]) + (" ..." if len(missing) > 8 else "")
        raise CheckpointError(
            f"{what}: the checkpoint does not fit the architecture; {len(missing)} weights are "
            f"missing ({shown})",
            path=folder,
        )
    mismatched = info.get("mismatched_keys") or []
    if mismatched:
        raise CheckpointError(f"{what}: weights with the wrong shape in the checkpoint: {list(mismatched)[:8]}", path=folder)


def _read_json(path: Path, what: str) -> dict[str, Any]:
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{what}: cannot read config.json: {exc}", path=path) from exc


def save_config_and_tokenizer(hf_config: Any, tokenizer: Any, directory: Path, source_folder: "Path | None" = None) -> None:
    """Write a model's HF config and tokenizer files (no weights) into ``directory``.

    When ``source_folder`` is given, its ``*.py`` files are copied too, so that a model that
    needs ``trust_remote_code`` can be rebuilt from the written folder.
    """
    directory.mkdir(parents=True, exist_ok=True)
    hf_config.save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    if source_folder is not None:
        for py in Path(source_folder).glob("*.py"):
            shutil.copy2(py, directory / py.name)


def strip_unused_heads(model: nn.Module) -> None:
    """Drop sub-modules a backbone never calls (BERT/ESM pooler, ESM contact head).

    Unused parameters would receive no gradient, which breaks DDP without
    ``find_unused_parameters`` and wastes memory. The same stripping runs whether weights are
    loaded or not, so bundle state dicts always match.
    """
    for name in ("pooler", "contact_head"):
        if getattr(model, name, None) is not None and isinstance(getattr(model, name), nn.Module):
            setattr(model, name, None)


# ---------------------------------------------------------------------------------------------
# appended tokens
# ---------------------------------------------------------------------------------------------


@dataclass
class PackedSequence:
    """A right-padded batch with extra tokens placed after each row's valid tokens.

    Attributes
    ----------
    embeds
        ``(R, L + E, C)`` the packed input vectors.
    mask
        ``(R, L + E)`` bool, ``True`` for valid tokens and unmasked extras.
    token_pos
        ``(R, L)`` position of each original token in the packed sequence.
    extra_pos
        ``(R, E)`` position of each extra token in the packed sequence (``None`` without extras).
    """

    embeds: torch.Tensor
    mask: torch.Tensor
    token_pos: torch.Tensor
    extra_pos: "torch.Tensor | None"


def check_right_padded(mask: torch.Tensor) -> torch.Tensor:
    """Return the valid lengths of a ``(R, L)`` mask, checking valid tokens form a prefix.

    Raises
    ------
    ValueError
        If some row has a valid token after a padding token (left padding or holes).
    """
    mask = mask.bool()
    lengths = mask.sum(dim=1)
    positions = torch.arange(mask.shape[1], device=mask.device)
    if not torch.equal(mask, positions.unsqueeze(0) < lengths.unsqueeze(1)):
        raise ValueError("attention mask is not right-padded (valid tokens must form a prefix of each row)")
    return lengths


def pack_with_extras(
    embeds: torch.Tensor,
    mask: torch.Tensor,
    extras: "torch.Tensor | None" = None,
    extra_mask: "torch.Tensor | None" = None,
    prefix: bool = False,
) -> PackedSequence:
    """Lay out every row as ``[valid tokens, extra tokens, padding]`` (``prefix``: ``[extras, valid, padding]``).

    Parameters
    ----------
    embeds
        ``(R, L, C)`` right-padded token vectors.
    mask
        ``(R, L)`` attention mask (valid tokens a prefix of each row).
    extras
        ``(R, E, C)`` tokens to append, or ``None``.
    extra_mask
        ``(R, E)`` bool, ``True`` for real extra tokens (default: all real). Masked extras keep
        their slot but are marked invalid, so they are never attended to and never pooled.

    Returns
    -------
    PackedSequence
        With ``E = 0`` (no extras) the input is returned unchanged.
    """
    mask = mask.bool()
    rows, length = mask.shape
    device = embeds.device
    arange_l = torch.arange(length, device=device).unsqueeze(0).expand(rows, -1)
    if extras is None or extras.shape[1] == 0:
        return PackedSequence(embeds, mask, arange_l, None)
    n_extra = extras.shape[1]
    if extras.shape[0] != rows or extras.shape[2] != embeds.shape[2]:
        raise ValueError(
            f"extra tokens have shape {tuple(extras.shape)}; expected ({rows}, E, {embeds.shape[2]})"
        )
    if extra_mask is None:
        extra_mask = torch.ones(rows, n_extra, dtype=torch.bool, device=device)
    extra_mask = extra_mask.to(device=device).bool()
    lengths = check_right_padded(mask).unsqueeze(1)  # (R, 1)
    if prefix:  # causal decoders: H_a first, so that every note token can attend to it
        packed = torch.cat([extras.to(embeds.dtype), embeds], dim=1)
        packed_mask = torch.cat([extra_mask, mask], dim=1)
        token_pos = arange_l + n_extra
        extra_pos = torch.arange(n_extra, device=device).unsqueeze(0).expand(rows, -1)
        return PackedSequence(packed, packed_mask, token_pos, extra_pos)
    pos = torch.arange(length + n_extra, device=device).unsqueeze(0)  # (1, L+E)
    source = torch.where(
        pos < lengths, pos, torch.where(pos < lengths + n_extra, length + (pos - lengths), pos - n_extra)
    )  # index into cat([tokens, extras])
    both = torch.cat([embeds, extras.to(embeds.dtype)], dim=1)
    packed = torch.gather(both, 1, source.unsqueeze(-1).expand(-1, -1, embeds.shape[2]))
    packed_mask = torch.gather(torch.cat([mask, extra_mask], dim=1), 1, source)
    token_pos = torch.where(arange_l < lengths, arange_l, arange_l + n_extra)
    extra_pos = lengths + torch.arange(n_extra, device=device).unsqueeze(0)
    return PackedSequence(packed, packed_mask, token_pos, extra_pos)


def extra_key_flags(packed: PackedSequence) -> "torch.Tensor | None":
    """``(R, L + E)`` bool: which packed positions hold appended tokens (``None`` without them)."""
    if packed.extra_pos is None:
        return None
    flags = torch.zeros(packed.mask.shape, dtype=torch.bool, device=packed.mask.device)
    return flags.scatter(1, packed.extra_pos, True)


def unpack_hidden(hidden: torch.Tensor, packed: PackedSequence) -> "tuple[torch.Tensor, torch.Tensor | None]":
    """Split encoder output of a packed batch into ``(tokens (R, L, C), extras (R, E, C) | None)``."""
    width = hidden.shape[-1]
    tokens = torch.gather(hidden, 1, packed.token_pos.unsqueeze(-1).expand(-1, -1, width))
    if packed.extra_pos is None:
        return tokens, None
    extra = torch.gather(hidden, 1, packed.extra_pos.unsqueeze(-1).expand(-1, -1, width))
    return tokens, extra


def position_ids_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """Position ids ``0, 1, ...`` counting only valid tokens (padding repeats its neighbour's id)."""
    return (mask.long().cumsum(dim=1) - 1).clamp(min=0)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` ``(R, N, C)`` over the ``True`` entries of ``mask`` ``(R, N)`` (0 for empty rows), in
    float32 whatever ``x``'s dtype, like every readout (the heads read float32; half-precision
    tokens keep their own rounding error)."""
    x = x.float()
    weights = mask.to(x.dtype).unsqueeze(-1)
    return (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def last_valid(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """State at the last ``True`` position of each row of ``mask`` (row 0 position for empty rows)."""
    positions = torch.arange(mask.shape[1], device=mask.device).unsqueeze(0)
    index = torch.where(mask.bool(), positions, torch.zeros_like(positions)).amax(dim=1)
    return x[torch.arange(x.shape[0], device=x.device), index]


def check_extra_inputs(
    extra_tokens: "torch.Tensor | None", extra_mask: "torch.Tensor | None", batch_size: int, width: int
) -> None:
    """Validate the shapes of appended tokens and their mask against the batch."""
    if extra_tokens is None:
        if extra_mask is not None:
            raise ValueError("extra_mask given without extra_tokens")
        return
    if extra_tokens.dim() != 3 or extra_tokens.shape[0] != batch_size or extra_tokens.shape[2] != width:
        raise ValueError(
            f"extra_tokens must have shape ({batch_size}, E, {width}); got {tuple(extra_tokens.shape)}"
        )
    if extra_mask is not None and tuple(extra_mask.shape) != tuple(extra_tokens.shape[:2]):
        raise ValueError(
            f"extra_mask must have shape {tuple(extra_tokens.shape[:2])}; got {tuple(extra_mask.shape)}"
        )


# ---------------------------------------------------------------------------------------------
# LoRA targets
# ---------------------------------------------------------------------------------------------

#: peft regular expressions (matched with ``re.fullmatch`` against full module names) that
#: select only the attention projections, per model family.
_LLAMA_STYLE = r"(.*\.)?self_attn\.(q_proj|k_proj|v_proj|o_proj)"
_BERT_STYLE = r"(.*\.)?attention\.(self\.(query|key|value)|output\.dense)"
ATTENTION_LORA_REGEX: dict[str, str] = {
    **dict.fromkeys(
        [
            "llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "gemma", "gemma2",
            "gemma3", "gemma3_text", "starcoder2", "olmo", "olmo2", "cohere", "granite", "stablelm",
            "internlm2", "deepseek_v2", "smollm3",
        ],
        _LLAMA_STYLE,
    ),
    **dict.fromkeys(["opt", "biogpt", "bart", "mbart"], r"(.*\.)?self_attn\.(q_proj|k_proj|v_proj|out_proj)"),
    "phi3": r"(.*\.)?self_attn\.(qkv_proj|o_proj)",
    "phi": r"(.*\.)?self_attn\.(q_proj|k_proj|v_proj|dense)",
    **dict.fromkeys(
        ["bert", "roberta", "xlm-roberta", "camembert", "electra", "esm", "ernie", "mpnet_bert", "nomic_bert"],
        _BERT_STYLE,
    ),
    "distilbert": r"(.*\.)?attention\.(q_lin|k_lin|v_lin|out_lin)",
    "mpnet": r"(.*\.)?attention\.(attn\.(q|k|v|o))",
    "deberta": r"(.*\.)?attention\.(self\.(in_proj|query_proj|key_proj|value_proj)|output\.dense)",
    "deberta-v2": r"(.*\.)?attention\.(self\.(query_proj|key_proj|value_proj)|output\.dense)",
    "gpt2": r"(.*\.)?attn\.(c_attn|c_proj)",
    "gpt_neox": r"(.*\.)?attention\.(query_key_value|dense)",
    "falcon": r"(.*\.)?self_attention\.(query_key_value|dense)",
    "bloom": r"(.*\.)?self_attention\.(query_key_value|dense)",
    "modernbert": r"(.*\.)?attn\.(Wqkv|Wo)",
}


def attention_lora_regex(model: nn.Module, model_type: "str | None") -> str:
    """peft ``target_modules`` regex selecting the attention projections of ``model``.

    Known families use :data:`ATTENTION_LORA_REGEX`; for others the regex lists every
    ``nn.Linear`` whose parent module name contains ``attn`` or ``attention`` (the projections
    of the self-attention blocks, never the feed-forward layers). The regex also matches when
    the backbone is nested inside a bigger module (any name prefix).

    Raises
    ------
    ConfigError
        If no attention projection can be found (LoRA would silently adapt nothing).
    """
    pattern = ATTENTION_LORA_REGEX.get(str(model_type or ""))
    names = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if pattern is not None and any(re.fullmatch(pattern, n) for n in names):
        return pattern
    leaves = sorted(
        {
            ".".join(n.split(".")[-2:])
            for n in names
            if any(tag in part.lower() for part in n.split(".")[:-1] for tag in ("attn", "attention"))
        }
    )
    if not leaves:
        raise ConfigError(f"cannot find attention projections for LoRA in a {model_type!r} model")
    return r"(.*\.)?(" + "|".join(re.escape(leaf) for leaf in leaves) + ")"


def checked_config(config: dict[str, Any], known: set[str], family: str) -> dict[str, Any]:
    """A copy of a backbone config without ``family`` and the sizing-only
    ``reference_architecture``, refusing keys outside ``known`` with a :class:`ConfigError`."""
    from ..errors import ConfigError

    config = dict(config)
    config.pop("family", None)
    config.pop("reference_architecture", None)  # presets of published models: sizing only
    unknown = set(config) - known
    if unknown:
        raise ConfigError(f"{family}: unknown config keys {sorted(unknown)}; known: {sorted(known)}")
    return config
