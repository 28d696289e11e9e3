"""The Nucleotide Transformer as the DNA backbone (family ``"nucleotide-transformer"``).

``config`` (the demo's inline ESM config), ``kmer_tokenizer`` (NT v1's 6-mer vocabulary),
``modeling`` (:class:`NucleotideTransformerBackbone`, registered on import), ``conversion``
(loading a published NT folder) and ``presets`` (``nt-demo``, ``nt-v1-*``, ``nt-v2-*`` and the
reference architecture they are checked against).
"""
from __future__ import annotations

from .config import NT_DEMO_ESM_CONFIG
from .conversion import load_esm_encoder
from .modeling import NucleotideTransformerBackbone
from .modeling import _position_limit  # noqa: F401  (the position rule, read by anchorad_core.planning)
from .presets import NT_V1_500M_ESM_CONFIG

__all__ = ["NT_DEMO_ESM_CONFIG", "NT_V1_500M_ESM_CONFIG", "NucleotideTransformerBackbone", "load_esm_encoder"]
