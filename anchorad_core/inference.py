"""``DiagnosisPipeline``: one subject in, a :class:`Diagnosis` out. Used by the CLI and the GUI.

The pipeline loads a bundle once. For a subject it computes each present modality's phase-1
features once (LoRA off), then runs every anchor round on them (LoRA on, ``H_a`` appended),
and aggregates the rounds. :meth:`DiagnosisPipeline.run` is a generator that yields a
:class:`~anchorad_core.progress.Step` (stage ``"diagnosis"``) before each step, so a caller can
show progress and stop between steps.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generator, Sequence

import numpy as np
import torch

from .bundle import Bundle, load_bundle
from .device import resolve_device, resolve_dtype
from .fusion.anchored_round import RoundOutput
from .fusion.qformer import AuxiliaryFeatures
from .missing_rule import MISSING_MODALITY_RULE
from .modality import Modality
from .progress import SILENT, Progress, Step, drive

#: The stage name of every step of a diagnosis (one progress line in a log).
DIAGNOSIS_STAGE = "diagnosis"


@dataclass
class RoundResult:
    """One anchor round's prediction for a subject."""

    anchor: Modality
    probabilities: dict[str, float]
    weight: float
    auxiliaries_used: list[str]
    auxiliaries_missing: list[str]
    output: RoundOutput | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "anchor": self.anchor.value,
            "probabilities": self.probabilities,
            "weight": self.weight,
            "auxiliaries_used": self.auxiliaries_used,
            "auxiliaries_missing": self.auxiliaries_missing,
        }


@dataclass
class Diagnosis:
    """The result for one subject: per-round and aggregated probabilities and what was missing."""

    subject_id: str
    labels: list[str]
    rounds: list[RoundResult]
    aggregate_probabilities: dict[str, float]
    rule: str
    modalities_used: list[str]
    modalities_missing: list[str]
    timings: dict[str, float] = field(default_factory=dict)
    #: Why the bundle aggregates with ``rule`` (e.g. its validation log-loss against the others).
    rule_reason: str = ""
    bundle: dict[str, Any] = field(default_factory=dict)
    features: dict[Modality, Any] = field(default_factory=dict, repr=False)

    @property
    def label(self) -> str:
        """The aggregated diagnosis."""
        probabilities = self.aggregate_probabilities
        return max(probabilities, key=lambda label: probabilities[label])

    @property
    def confidence(self) -> float:
        """Probability of the aggregated diagnosis."""
        return self.aggregate_probabilities[self.label]

    def to_dict(self) -> dict[str, Any]:
        """JSON form (the ``anchorad predict --json`` output)."""
        return {
            "subject_id": self.subject_id,
            "labels": self.labels,
            "rounds": [r.to_dict() for r in self.rounds],
            "aggregate": {
                "label": self.label,
                "probabilities": self.aggregate_probabilities,
                "confidence": self.confidence,
                "rule": self.rule,
                "rule_reason": self.rule_reason,
            },
            "modalities_used": self.modalities_used,
            "modalities_missing": self.modalities_missing,
            "missing_modality_rule": MISSING_MODALITY_RULE,
            "timings_s": self.timings,
            "bundle": self.bundle,
            "research_use_only": True,
        }


class DiagnosisPipeline:
    """Load a bundle once and diagnose subjects with it.

    Parameters
    ----------
    bundle
        A bundle folder or a loaded :class:`~anchorad_core.bundle.Bundle`.
    device
        ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
    dtype
        ``float32``, ``bfloat16`` or ``float16`` (weights and activations).
    """

    def __init__(self, bundle: "str | Path | Bundle", device: str = "auto", dtype: str = "float32") -> None:
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        self.model = self.bundle.model.to(device=self.device, dtype=self.dtype).float32_heads()
        self.model.eval()

    @property
    def labels(self) -> list[str]:
        """Class labels of the bundle."""
        return self.bundle.labels

    @property
    def preprocess_config(self) -> Any:
        """The preprocessing the bundle was trained with."""
        from .data import PreprocessConfig

        return PreprocessConfig.from_dict(self.bundle.config.preprocess)

    def load_subject(self, folder: "str | Path", overrides: "dict[str, Any] | None" = None) -> Any:
        """Read and preprocess a subject folder the way the bundle expects."""
        from .data import load_subject

        return load_subject(folder, self.preprocess_config, overrides=overrides)

    def diagnose(self, subject: Any, progress: Progress = SILENT, return_outputs: bool = False) -> Diagnosis:
        """Run all stages; ``progress`` is told about each and may cancel between them."""
        return drive(self.run(subject, return_outputs=return_outputs), progress)

    @torch.no_grad()
    def run(self, subject: Any, return_outputs: bool = False) -> Generator[Step, None, Diagnosis]:
        """Generator form of :meth:`diagnose`: yields a :class:`~anchorad_core.progress.Step` before each step."""
        model = self.model
        present = [m for m in model.modalities if getattr(subject, m.value, None) is not None]
        missing = [m for m in model.modalities if m not in present]
        anchors = [m for m in model.anchors() if m in present]
        total = len(present) + len(anchors) + 1
        timings: dict[str, float] = {}
        features: dict[Modality, AuxiliaryFeatures] = {}
        batches: dict[Modality, dict[str, torch.Tensor]] = {}
        step = 0
        for m in present:
            yield Step(DIAGNOSIS_STAGE, step, total, f"{m.title} features")
            start = time.perf_counter()
            batches[m] = self._cast(model.backbone(m).collate([getattr(subject, m.value)]))
            out = model.encode(m, batches[m])
            features[m] = AuxiliaryFeatures.of(out)
            timings[f"features.{m.value}"] = time.perf_counter() - start
            step += 1
        outputs: dict[Modality, RoundOutput] = {}
        for m in anchors:
            yield Step(DIAGNOSIS_STAGE, step, total, f"anchor round {m.title}")
            start = time.perf_counter()
            outputs[m] = model.anchored(m, batches[m], features, return_attention=return_outputs)
            timings[f"round.{m.value}"] = time.perf_counter() - start
            step += 1
        yield Step(DIAGNOSIS_STAGE, step, total, "aggregate")
        all_anchors = model.anchors()
        probs = torch.full((len(all_anchors), 1, len(model.labels)), 1.0 / len(model.labels))
        mask = torch.zeros(len(all_anchors), 1, dtype=torch.bool)
        for r, m in enumerate(all_anchors):
            if m in outputs:
                probs[r, 0] = torch.softmax(outputs[m].logits.float(), -1)[0].cpu()
                mask[r, 0] = True
        aggregated = model.aggregate(probs, mask)[0]
        weights = model.aggregation_weights(probs, mask)[:, 0]
        rounds = [
            RoundResult(
                anchor=m,
                probabilities=_named(probs[r, 0], model.labels),
                weight=float(weights[r]),
                auxiliaries_used=[a.value for a in present if a != m],
                auxiliaries_missing=[a.value for a in missing],
                output=outputs[m] if return_outputs else None,
            )
            for r, m in enumerate(all_anchors) if m in outputs
        ]
        return Diagnosis(
            subject_id=getattr(subject, "subject_id", "subject"),
            labels=list(model.labels),
            rounds=rounds,
            aggregate_probabilities=_named(aggregated, model.labels),
            rule=model.aggregation_rule,
            rule_reason=str(model.aggregation_selection.get("why", "")),
            modalities_used=[m.value for m in present],
            modalities_missing=[m.value for m in missing],
            timings=timings,
            bundle={"path": str(self.bundle.path), "hash": self.bundle.hash,
                    "format_version": self.bundle.manifest.get("format_version"),
                    "provenance": self.bundle.provenance},
            features={m: batches[m] for m in present} if return_outputs else {},
        )

    def _cast(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {
            k: (v.to(self.device, self.dtype) if isinstance(v, torch.Tensor) and v.is_floating_point()
                else v.to(self.device) if isinstance(v, torch.Tensor) else v)
            for k, v in batch.items()
        }


def _named(values: torch.Tensor, labels: Sequence[str]) -> dict[str, float]:
    return {label: float(v) for label, v in zip(labels, np.asarray(values, dtype=float))}
