"""The missing-modality rule, stated once for every output that names it.

The rule itself is implemented where it acts: a modality a subject lacks gets no anchor round
(:class:`~anchorad_core.inference.DiagnosisPipeline`), and its block of the modality-aware
Q-former is masked in every other round (:mod:`anchorad_core.fusion.qformer`). The prediction
JSON, the explanation JSON, the report and the plugin quote these sentences.
"""
from __future__ import annotations

__all__ = ["MISSING_MODALITY_RULE", "MISSING_MODALITY_SHORT"]

#: The rule in one sentence (lower case, no final full stop).
MISSING_MODALITY_RULE = (
    "a missing modality has no anchor round, and its auxiliary block is masked out of every other "
    "round's Q-former (never zero-filled tokens that attention can see)"
)

#: The rule for a table cell next to the missing modality.
MISSING_MODALITY_SHORT = "no anchor round, auxiliary block masked in every round"
