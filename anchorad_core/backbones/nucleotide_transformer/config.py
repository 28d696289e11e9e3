"""Configuration of the DNA family (``"nucleotide-transformer"``): the inline ESM config of the CPU demo."""
from __future__ import annotations

from typing import Any


#: Inline ESM config of the ``nt-demo`` preset (NT v1 layout, small enough for CPU training).
NT_DEMO_ESM_CONFIG: dict[str, Any] = {
    "vocab_size": 4105,
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 256,
    "max_position_embeddings": 258,
    "position_embedding_type": "absolute",
    "pad_token_id": 1,
    "mask_token_id": 2,
    "emb_layer_norm_before": False,
    "token_dropout": True,
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
    "layer_norm_eps": 1e-12,
    "initializer_range": 0.02,
    "tie_word_embeddings": False,
}
