"""Phase-1 features computed once and cached: the auxiliary inputs of every anchored round.

Tokens are kept in float16 (:mod:`.token_store` says why), half the bytes of float32, and
read back per batch in float32. The pooled readouts stay float32: they are a small part of
the cache and the uni-modal and output-fusion baselines read them, so those baselines see
exactly the phase-1 model's features. When the tokens exceed a RAM budget
(``TrainConfig.feature_cache_ram_mb``) they move to memory-mapped files in a temporary
folder, removed when the cache is closed or garbage-collected; batches read from them are
identical to batches read from RAM.
"""
from __future__ import annotations

import shutil
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..fusion.qformer import AuxiliaryFeatures
from ..modality import Modality
from ..progress import SILENT, Progress
from .config import DEFAULT_CACHE_RAM_MB
from .length_batching import batched_by_length
from .inputs import CohortInputs
from .token_store import TokenStore


if TYPE_CHECKING:  # the model imports nothing from training; the annotation only
    from ..model import AnchorADModel


@dataclass
class FeatureCache:
    """Frozen phase-1 token and pooled features per modality and subject.

    ``tokens[m]`` holds ``(N_valid, C_m)`` rows per subject id (padding removed, float16);
    ``pooled[m][subject_id]`` is ``(P_m,)`` float32 (the backbone's readout). Subjects missing
    a modality have no entry.

    Attributes
    ----------
    ram_budget_mb
        Token bytes (MB) kept in RAM before every modality's tokens spill to a memory-mapped
        file; ``None``: no limit.
    token_dtype
        ``"float16"`` (default) or ``"float32"`` (a full-precision reference).
    """

    tokens: dict[Modality, TokenStore] = field(default_factory=dict)
    pooled: dict[Modality, dict[str, torch.Tensor]] = field(default_factory=dict)
    widths: dict[Modality, int] = field(default_factory=dict)
    pooled_widths: dict[Modality, int] = field(default_factory=dict)
    ram_budget_mb: "float | None" = DEFAULT_CACHE_RAM_MB
    token_dtype: str = "float16"

    def __post_init__(self) -> None:
        self._spill_dir: "Path | None" = None
        self._cleanup: "weakref.finalize | None" = None

    @classmethod
    @torch.no_grad()
    def compute(
        cls,
        model: "AnchorADModel",
        inputs: CohortInputs,
        modalities: "tuple[Modality, ...] | None" = None,
        batch_size: int = 8,
        progress: Progress = SILENT,
        ram_budget_mb: "float | None" = DEFAULT_CACHE_RAM_MB,
        token_dtype: str = "float16",
    ) -> "FeatureCache":
        """Run every phase-1 backbone once over the subjects that have its modality."""
        cache = cls(ram_budget_mb=ram_budget_mb, token_dtype=token_dtype)
        modalities = modalities or model.modalities
        model.eval()
        total = sum(int(inputs.present(m).sum()) for m in modalities)
        done = 0
        for modality in modalities:
            backbone = model.backbone(modality)
            cache.add_modality(modality, backbone.width, backbone.pooled_width)
            index = np.flatnonzero(inputs.present(modality))
            for chunk, batch in batched_by_length(backbone, inputs.samples[modality], index, batch_size):
                out = model.encode(modality, batch)
                for row, i in enumerate(chunk):
                    cache.put(modality, inputs.subject_ids[i], out.tokens[row][out.mask[row]], out.pooled[row])
                done += len(chunk)
                progress.update("phase-1 features", done, total)
        return cache

    # ------------------------------------------------------------------ writing
    def add_modality(self, modality: Modality, width: int, pooled_width: int) -> None:
        """Start an (empty) store for ``modality``."""
        self.tokens[modality] = TokenStore(width, self.token_dtype)
        self.pooled[modality] = {}
        self.widths[modality] = int(width)
        self.pooled_widths[modality] = int(pooled_width)
        if self._spill_dir is not None:
            self.tokens[modality].spill(self._spill_file(modality))

    def put(self, modality: Modality, subject_id: str, tokens: torch.Tensor, pooled: torch.Tensor) -> None:
        """Store (or replace) one subject's valid tokens ``(N, C)`` and pooled feature ``(P,)``."""
        self.tokens[modality].put(subject_id, tokens.detach().float().cpu().numpy())
        self.pooled[modality][subject_id] = pooled.detach().float().cpu()
        if self.ram_budget_mb is not None and self._spill_dir is None and self.ram_bytes() > self.ram_budget_mb * 2**20:
            self.spill()

    def update(self, other: "FeatureCache", modality: Modality) -> None:
        """Replace ``modality``'s features of the subjects ``other`` has (cross-fitting)."""
        store = other.tokens[modality]
        for subject_id in store:
            rows = store.get(subject_id)
            self.tokens[modality].put(subject_id, np.asarray(rows))
            self.pooled[modality][subject_id] = other.pooled[modality][subject_id].clone()
        if self.ram_budget_mb is not None and self._spill_dir is None and self.ram_bytes() > self.ram_budget_mb * 2**20:
            self.spill()

    def spill(self) -> None:
        """Move every modality's tokens to memory-mapped files in a new temporary folder."""
        if self._spill_dir is None:
            self._spill_dir = Path(tempfile.mkdtemp(prefix="anchorad-features-"))
            self._cleanup = weakref.finalize(self, shutil.rmtree, str(self._spill_dir), True)
        for modality, store in self.tokens.items():
            store.spill(self._spill_file(modality))

    def _spill_file(self, modality: Modality) -> Path:
        assert self._spill_dir is not None
        return self._spill_dir / f"{modality.value}-tokens.{self.token_dtype}"

    def close(self) -> None:
        """Remove the memory-mapped files (the cache is unusable for spilled tokens afterwards)."""
        if self._cleanup is not None:
            self._cleanup()

    # ------------------------------------------------------------------ reading
    def aux(self, modality: Modality, subject_ids: list[str]) -> AuxiliaryFeatures:
        """Padded float32 auxiliary features of ``modality`` for ``subject_ids`` (missing ones masked)."""
        store = self.tokens.get(modality)
        width = self.widths[modality]
        rows = [store.get(s) if store is not None else None for s in subject_ids]
        length = max([r.shape[0] for r in rows if r is not None], default=1)
        tokens = torch.zeros(len(rows), length, width)
        mask = torch.zeros(len(rows), length, dtype=torch.bool)
        for i, r in enumerate(rows):
            if r is not None:
                tokens[i, : r.shape[0]] = torch.from_numpy(np.array(r))  # upcast to float32 here
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

    # ------------------------------------------------------------------ size
    @property
    def spilled(self) -> bool:
        """Whether the tokens live in memory-mapped files."""
        return self._spill_dir is not None

    def pooled_bytes(self) -> int:
        """Bytes of the float32 pooled features."""
        return sum(t.numel() * t.element_size() for d in self.pooled.values() for t in d.values())

    def ram_bytes(self) -> int:
        """Bytes held in RAM (tokens not spilled, and the pooled features)."""
        return sum(s.ram_bytes() for s in self.tokens.values()) + self.pooled_bytes()

    def disk_bytes(self) -> int:
        """Bytes of the memory-mapped token files."""
        return sum(s.disk_bytes() for s in self.tokens.values())

    def nbytes(self) -> int:
        """Bytes the cache holds, in RAM and on disk."""
        return self.ram_bytes() + self.disk_bytes()

    def float32_nbytes(self) -> int:
        """Bytes the same features take in a float32 cache (every token and pooled value at 4 bytes)."""
        return sum(s.rows() * s.width * 4 for s in self.tokens.values()) + self.pooled_bytes()
