"""The clinical-text backbone: any local Hugging Face encoder or causal decoder (family ``"hf-text"``).

``config`` (the default model, kinds, poolings; finding a model folder and telling a decoder
from an encoder), ``modeling`` (:class:`HFTextBackbone`, registered on import, and the number
readout), ``conversion`` (loading a published model folder) with ``gguf_loading`` (a GGUF
file, e.g. SmolLM2's) and ``presets`` (``minilm-l6``, ``llama-2-*``, ``smollm2-135m`` and
the reference architectures they are checked against).
"""
from __future__ import annotations

from .config import (
    DECODER_MODEL_TYPES,
    DEFAULT_TEXT_MODEL,
    KINDS,
    POOLINGS,
    default_text_model_path,
    detect_kind,
    resolve_text_model_folder,
)
from .conversion import load_text_model
from .modeling import HFTextBackbone, number_token_weights
from .presets import LLAMA2_ARCHITECTURES, SMOLLM2_135M_ARCHITECTURE

__all__ = [
    "DECODER_MODEL_TYPES", "DEFAULT_TEXT_MODEL", "KINDS", "POOLINGS", "default_text_model_path", "detect_kind",
    "resolve_text_model_folder", "load_text_model", "HFTextBackbone", "number_token_weights",
    "LLAMA2_ARCHITECTURES", "SMOLLM2_135M_ARCHITECTURE",
]
