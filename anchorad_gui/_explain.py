"""What the Inspect panel offers for an anchor round: its maps (attention blocks, cross-modal, attribution).

The explanations themselves are the core session's (:meth:`anchorad_core.session.Session.explain_attention`,
:meth:`~anchorad_core.session.Session.explain_round`); this module only names the choices.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from anchorad_core import Modality, SubjectExplanation

__all__ = ["MapChoice", "map_choices", "is_explanation"]


def is_explanation(value: Any) -> bool:
    """Whether ``value`` is a core ``SubjectExplanation``."""
    return isinstance(value, SubjectExplanation)


@dataclass(frozen=True)
class MapChoice:
    """One entry of the Inspect panel's map list."""

    kind: str  # "attention" or "attribution"
    block: str  # auxiliary modality value, "cross", or "" for attributions
    label: str


def map_choices(anchor: str, auxiliaries: list[str]) -> list[MapChoice]:
    """Maps available for an anchor round: one attention block per present auxiliary, cross, IG."""
    out = [
        MapChoice("attention", a, f"Q-former attention: {Modality.parse(a).title} queries")
        for a in auxiliaries
    ]
    if auxiliaries:
        out.append(MapChoice("attention", "cross", "Q-former attention: cross-modal queries"))
    out.append(MapChoice("attribution", "", "Captum attribution (Integrated Gradients, all inputs)"))
    return out
