"""Explanations of a finished diagnosis, per anchor round, from the core's :mod:`anchorad_core.explain`.

* Q-former cross-attention: :func:`anchorad_core.explain.subject.explain_subject` with
  ``attributions=False`` reads it from the round outputs the diagnosis already holds
  (``return_outputs=True``): a fraction of a second for every round at once. The result, a
  :class:`~anchorad_core.explain.subject.SubjectExplanation`, is what the panels share and what
  the report is written from.
* Captum Integrated Gradients (:func:`anchorad_core.explain.attributions.round_attributions`,
  the function ``explain_subject`` runs per round) costs about ``n_steps`` forward/backward
  passes of a round, so the Inspect panel computes it on demand, one round at a time, into the
  same ``SubjectExplanation``.

No Qt here: the Inspect panel runs these in workers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generator

__all__ = ["attention_job", "attribution_job", "MapChoice", "map_choices", "is_explanation"]


def is_explanation(value: Any) -> bool:
    """Whether ``value`` is a core ``SubjectExplanation``."""
    from anchorad_core.explain.subject import SubjectExplanation

    return isinstance(value, SubjectExplanation)


@dataclass(frozen=True)
class MapChoice:
    """One entry of the Inspect panel's map list."""

    kind: str  # "attention" or "attribution"
    block: str  # auxiliary modality value, "cross", or "" for attributions
    label: str


def map_choices(anchor: str, auxiliaries: list[str]) -> list[MapChoice]:
    """Maps available for an anchor round: one attention block per present auxiliary, cross, IG."""
    from anchorad_core.modality import Modality

    out = [
        MapChoice("attention", a, f"Q-former attention: {Modality.parse(a).title} queries")
        for a in auxiliaries
    ]
    if auxiliaries:
        out.append(MapChoice("attention", "cross", "Q-former attention: cross-modal queries"))
    out.append(MapChoice("attribution", "", "Captum attribution (Integrated Gradients, all inputs)"))
    return out


def _step(name: str, done: int, total: int) -> Any:
    from ._workers import Step

    return Step(name, done, total)


def attention_job(result: Any) -> Generator[Any, None, Any]:
    """Q-former attention of every anchor round of ``result`` (a ``DiagnosisState``) -> ``SubjectExplanation``."""
    from anchorad_core.explain.subject import explain_subject

    yield _step("Q-former attention of every round", 0, 1)
    _, explanation = explain_subject(result.pipeline, result.subject, attributions=False, diagnosis=result.diagnosis)
    return explanation


def attribution_job(result: Any, explanation: Any, anchor: str, n_steps: int = 16) -> Generator[Any, None, Any]:
    """Captum Integrated Gradients of one anchor round, towards the explanation's target class."""
    import torch

    from anchorad_core.explain.attributions import round_attributions
    from anchorad_core.modality import Modality

    d = result.diagnosis
    labels = list(d.labels)
    yield _step(f"Integrated Gradients of the {Modality.parse(anchor).title} round ({n_steps} steps)", 0, 1)
    torch.manual_seed(0)
    return round_attributions(
        result.pipeline.model, Modality.parse(anchor), result.subject, d.features,
        target=labels.index(explanation.target), labels=labels, n_steps=int(n_steps),
        internal_batch_size=max(1, min(int(n_steps), 4)),
    )
