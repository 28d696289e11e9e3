"""Named configs of the DNA family: the CPU demo and the published Nucleotide Transformer v1 / v2 checkpoints."""
from __future__ import annotations

from typing import Any

from ..registry import register_preset


register_preset(
    "nt-demo",
    {
        "family": "nucleotide-transformer",
        "model_path": "resource:pretrained/nt-demo",
        "esm_config": None,
        "max_length": None,
        "max_chunks": 32,
        "dtype": "float32",
    },
    "small Nucleotide Transformer (ESM, NT v1 6-mer vocabulary, hidden 64, 2 layers), pretrained by "
    "masked 6-mer language modelling on an unlabeled synthetic cohort (`anchorad pretrain`; "
    "resources/pretrained/PROVENANCE.json); not the published NT",
)
#: Published architecture of NT v1 500M (``config.json`` of
#: ``InstaDeepAI/nucleotide-transformer-500m-human-ref``; ``-500m-1000g`` has the same). The preset
#: carries it as ``reference_architecture``, used **only** to size the preset when ``model_path``
#: is not set; a model is always built from the ``config.json`` of the user's folder.
NT_V1_500M_ESM_CONFIG: dict[str, Any] = {
    "vocab_size": 4105,
    "hidden_size": 1280,
    "num_hidden_layers": 24,
    "num_attention_heads": 20,
    "intermediate_size": 5120,
    "max_position_embeddings": 1002,
    "position_embedding_type": "absolute",
    "pad_token_id": 1,
    "mask_token_id": 2,
    "emb_layer_norm_before": False,
    "token_dropout": True,
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
    "layer_norm_eps": 1e-12,
    "tie_word_embeddings": False,
}

register_preset(
    "nt-v1-500m-human-ref",
    {
        "family": "nucleotide-transformer",
        "model_path": None,
        "max_length": None,
        "max_chunks": 32,
        "dtype": "float32",
        "reference_architecture": NT_V1_500M_ESM_CONFIG,
    },
    "Nucleotide Transformer v1 500M (human reference): set model_path to your local "
    "nucleotide-transformer-500m-human-ref folder (Hugging Face format; never downloaded); "
    "dtype bfloat16 on GPU. NT v2 folders also need allow_remote_code: true",
)
