"""The ragged per-subject token rows of one modality, in half precision, in RAM or memory-mapped.

Each subject has ``(N_i, C)`` rows (its valid phase-1 tokens, padding removed). They are
stored in ``float16``: phase-1 tokens are normalised activations of moderate magnitude, where
float16's 10-bit mantissa rounds 8x finer than bfloat16's 7 bits (relative error at most
2⁻¹¹ ≈ 4.9e-4 instead of 3.9e-3), and numpy (hence ``np.memmap``) has float16 but no
bfloat16. Its range (±65504) is the price: a subject whose rows exceed it keeps them in
float32 in RAM (never an overflow to ``inf``).

:meth:`spill` moves the rows to one flat file read back through ``np.memmap``; rows put
afterwards are appended to it. Replacing a subject's rows on disk appends the new ones and
leaves the old ones unused in the file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

#: Largest magnitude float16 holds.
FLOAT16_MAX = float(np.finfo(np.float16).max)


class TokenStore:
    """Token rows ``(N_i, width)`` per subject id.

    Parameters
    ----------
    width
        Token width ``C``.
    dtype
        Storage dtype: ``float16`` (default) or ``float32`` (a reference, e.g. for tests and
        the benchmark's comparison).
    """

    def __init__(self, width: int, dtype: "str | np.dtype" = "float16") -> None:
        self.width = int(width)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.dtype(np.float16), np.dtype(np.float32)):
            raise ValueError(f"token store dtype must be float16 or float32, got {self.dtype}")
        self._ram: dict[str, np.ndarray] = {}
        self._disk: dict[str, tuple[int, int]] = {}  # subject -> (first row, rows) in the file
        self._file: "Path | None" = None
        self._file_rows = 0
        self._map: "np.memmap | None" = None

    # ------------------------------------------------------------------ writing
    def put(self, subject_id: str, rows: np.ndarray) -> None:
        """Store (or replace) the rows of ``subject_id``; ``rows`` is ``(N, width)`` (any float dtype)."""
        rows = np.asarray(rows)
        if rows.ndim != 2 or rows.shape[1] != self.width:
            raise ValueError(f"token rows must be (N, {self.width}), got {rows.shape}")
        fits = self.dtype == np.float32 or not rows.size or float(np.abs(rows).max()) <= FLOAT16_MAX
        self._disk.pop(subject_id, None)
        self._ram.pop(subject_id, None)
        if not fits:  # beyond float16's range: float32, in RAM
            self._ram[subject_id] = rows.astype(np.float32)
        elif self._file is None:
            self._ram[subject_id] = rows.astype(self.dtype)
        else:
            self._append(subject_id, rows.astype(self.dtype))

    def spill(self, path: Path) -> None:
        """Move every row held in ``self.dtype`` to the file ``path`` (created) and append there from now on."""
        if self._file is not None:
            return
        self._file = Path(path)
        self._file.write_bytes(b"")
        for subject_id in [s for s, r in self._ram.items() if r.dtype == self.dtype]:
            self._append(subject_id, self._ram.pop(subject_id))

    def _append(self, subject_id: str, rows: np.ndarray) -> None:
        assert self._file is not None
        with open(self._file, "ab") as handle:
            handle.write(np.ascontiguousarray(rows).tobytes())
        self._disk[subject_id] = (self._file_rows, rows.shape[0])
        self._file_rows += rows.shape[0]
        self._map = None

    # ------------------------------------------------------------------ reading
    def get(self, subject_id: str) -> "np.ndarray | None":
        """The rows of ``subject_id`` in their storage dtype (a read-only view when on disk), or ``None``."""
        if subject_id in self._ram:
            return self._ram[subject_id]
        where = self._disk.get(subject_id)
        if where is None:
            return None
        start, n = where
        return self._mapped()[start : start + n]

    def _mapped(self) -> np.memmap:
        assert self._file is not None, "rows on disk imply a spill file"
        if self._map is None or self._map.shape[0] != self._file_rows:
            self._map = np.memmap(self._file, dtype=self.dtype, mode="r", shape=(self._file_rows, self.width))
        return self._map

    def __contains__(self, subject_id: object) -> bool:
        return subject_id in self._ram or subject_id in self._disk

    def __iter__(self) -> Iterator[str]:
        yield from self._ram
        yield from self._disk

    def __len__(self) -> int:
        return len(self._ram) + len(self._disk)

    # ------------------------------------------------------------------ size
    @property
    def spilled(self) -> bool:
        """Whether rows go to the memory-mapped file."""
        return self._file is not None

    def ram_bytes(self) -> int:
        """Bytes of the rows held in RAM."""
        return sum(r.nbytes for r in self._ram.values())

    def disk_bytes(self) -> int:
        """Bytes of the file (unused rows of replaced subjects included)."""
        return self._file_rows * self.width * self.dtype.itemsize

    def rows(self) -> int:
        """Token rows of the subjects stored now."""
        return sum(r.shape[0] for r in self._ram.values()) + sum(n for _, n in self._disk.values())
