"""Preprocessed inputs of many subjects, arranged by modality for batching."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..modality import ALL_MODALITIES, Modality


@dataclass
class CohortInputs:
    """Preprocessed per-modality samples of a list of subjects.

    Attributes
    ----------
    subject_ids
        One id per subject.
    labels
        ``(n,)`` int class index per subject (``-1`` when unknown, e.g. at prediction time).
    samples
        ``samples[m][i]`` is subject ``i``'s preprocessed input of modality ``m`` or ``None``.
    groups
        Participant of each sample (one visit of a longitudinal cohort is one sample);
        ``None`` = every sample is its own participant. Splits never separate a group
        (:mod:`.splits`).
    """

    subject_ids: list[str]
    labels: np.ndarray
    samples: dict[Modality, list[Any]]
    groups: list[str] | None = None

    def __len__(self) -> int:
        return len(self.subject_ids)

    @property
    def group_ids(self) -> list[str]:
        """Participant of each sample (the sample id itself when no groups were given)."""
        return list(self.groups) if self.groups is not None else list(self.subject_ids)

    @classmethod
    def from_subjects(cls, subjects: Sequence[Any], labels: "Sequence[int] | np.ndarray | None" = None,
                      groups: "Sequence[str] | None" = None) -> "CohortInputs":
        """Gather ``subject.<modality>`` (``smri``, ``fmri``, ``clinical``, ``genetics``) of loaded subjects."""
        ids = [s.subject_id for s in subjects]
        y = np.asarray(labels if labels is not None else [-1] * len(subjects), dtype=np.int64)
        samples = {m: [getattr(s, m.value, None) for s in subjects] for m in ALL_MODALITIES}
        return cls(ids, y, samples, list(groups) if groups is not None else None)

    def present(self, modality: Modality) -> np.ndarray:
        """``(n,)`` bool: which subjects have ``modality``."""
        return np.array([x is not None for x in self.samples.get(modality, [None] * len(self))], dtype=bool)

    def subset(self, index: "Sequence[int] | np.ndarray") -> "CohortInputs":
        """The subjects at ``index`` (in that order)."""
        index = [int(i) for i in index]
        return CohortInputs(
            [self.subject_ids[i] for i in index],
            self.labels[index] if len(index) else self.labels[:0],
            {m: [v[i] for i in index] for m, v in self.samples.items()},
            [self.groups[i] for i in index] if self.groups is not None else None,
        )

    def with_modality(self, modality: Modality) -> "CohortInputs":
        """Only the subjects that have ``modality``."""
        return self.subset(np.flatnonzero(self.present(modality)))

    def restricted(self, modalities: "Sequence[Modality]") -> "CohortInputs":
        """A copy in which every modality outside ``modalities`` is missing."""
        keep = set(modalities)
        return CohortInputs(
            list(self.subject_ids), self.labels.copy(),
            {m: (list(v) if m in keep else [None] * len(v)) for m, v in self.samples.items()},
            list(self.groups) if self.groups is not None else None,
        )

    @classmethod
    def concat(cls, *parts: "CohortInputs | None") -> "CohortInputs":
        """The subjects of ``parts`` in order, each subject once (``None`` parts are skipped)."""
        present = [p for p in parts if p is not None]
        ids: list[str] = []
        labels: list[int] = []
        groups: list[str] = []
        samples: dict[Modality, list[Any]] = {m: [] for m in present[0].samples}
        seen: set[str] = set()
        for part in present:
            part_groups = part.group_ids
            for i, sid in enumerate(part.subject_ids):
                if sid in seen:
                    continue
                seen.add(sid)
                ids.append(sid)
                labels.append(int(part.labels[i]))
                groups.append(part_groups[i])
                for m in samples:
                    samples[m].append(part.samples[m][i])
        grouped = any(p.groups is not None for p in present)
        return cls(ids, np.asarray(labels, dtype=np.int64), samples, groups if grouped else None)

