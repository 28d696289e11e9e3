"""Phase-1 features computed once and cached: the auxiliary inputs of every anchored round."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..fusion.qformer import AuxiliaryFeatures
from ..modality import Modality
from ..progress import SILENT, Progress
from .inputs import CohortInputs


@dataclass
class FeatureCache:
    """Frozen phase-1 token and pooled features per modality and subject.

    ``tokens[m][subject_id]`` is ``(N_valid, C_m)`` (padding removed); ``pooled[m][subject_id]``
    is ``(P_m,)`` (the backbone's readout). Subjects missing a modality have no entry.
    """

    tokens: dict[Modality, dict[str, torch.Tensor]] = field(default_factory=dict)
    pooled: dict[Modality, dict[str, torch.Tensor]] = field(default_factory=dict)
    widths: dict[Modality, int] = field(default_factory=dict)
    pooled_widths: dict[Modality, int] = field(default_factory=dict)

    @classmethod
    @torch.no_grad()
    def compute(
        cls,
        model: "object",
        inputs: CohortInputs,
        modalities: "tuple[Modality, ...] | None" = None,
        batch_size: int = 8,
        progress: Progress = SILENT,
    ) -> "FeatureCache":
        """Run every phase-1 backbone once over the subjects that have its modality."""
        cache = cls()
        modalities = modalities or model.modalities  # type: ignore[attr-defined]
        model.eval()  # type: ignore[attr-defined]
        total = sum(int(inputs.present(m).sum()) for m in modalities)
        done = 0
        for modality in modalities:
            cache.tokens[modality], cache.pooled[modality] = {}, {}
            backbone = model.backbone(modality)  # type: ignore[attr-defined]
            cache.widths[modality] = backbone.width
            cache.pooled_widths[modality] = backbone.pooled_width
            index = np.flatnonzero(inputs.present(modality))
            for start in range(0, len(index), batch_size):
                chunk = index[start : start + batch_size]
                batch = backbone.collate([inputs.samples[modality][i] for i in chunk])
                out = model.encode(modality, batch)  # type: ignore[attr-defined]
                for row, i in enumerate(chunk):
                    sid = inputs.subject_ids[i]
                    cache.tokens[modality][sid] = out.tokens[row][out.mask[row]].detach().float().cpu()
                    cache.pooled[modality][sid] = out.pooled[row].detach().float().cpu()
                done += len(chunk)
                progress.update("phase-1 features", done, total)
        return cache

    def aux(self, modality: Modality, subject_ids: list[str]) -> AuxiliaryFeatures:
        """Padded auxiliary features of ``modality`` for ``subject_ids`` (missing ones masked)."""
        store = self.tokens.get(modality, {})
        width = self.widths[modality]
        rows = [store.get(s) for s in subject_ids]
        length = max([r.shape[0] for r in rows if r is not None], default=1)
        tokens = torch.zeros(len(rows), length, width)
        mask = torch.zeros(len(rows), length, dtype=torch.bool)
        for i, r in enumerate(rows):
            if r is not None:
                tokens[i, : r.shape[0]] = r
                mask[i, : r.shape[0]] = True
        present = torch.tensor([r is not None for r in rows], dtype=torch.bool)
        readout, _ = self.pooled_batch(modality, subject_ids)
        return AuxiliaryFeatures(tokens, mask, present, readout)

    def aux_for_anchor(self, anchor: Modality, subject_ids: list[str]) -> dict[Modality, AuxiliaryFeatures]:
        """Auxiliary features of every cached modality except ``anchor``."""
        return {m: self.aux(m, subject_ids) for m in self.tokens if m != anchor}

    def pooled_batch(self, modality: Modality, subject_ids: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, C)`` pooled features (zeros where missing) and ``(B,)`` presence."""
        store = self.pooled.get(modality, {})
        width = self.pooled_widths[modality]
        out = torch.zeros(len(subject_ids), width)
        present = torch.zeros(len(subject_ids), dtype=torch.bool)
        for i, s in enumerate(subject_ids):
            if s in store:
                out[i] = store[s]
                present[i] = True
        return out, present

    def nbytes(self) -> int:
        """Memory held by the cache."""
        return sum(t.numel() * t.element_size() for d in (*self.tokens.values(), *self.pooled.values()) for t in d.values())

