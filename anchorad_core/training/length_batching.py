"""Batches of similar length: sort samples by token count, cut under a token budget.

A batch is padded to its longest sample, so batching samples in cohort order pads every
short clinical note to the longest note of its batch (the demo notes run from ~40 to 128
tokens). :func:`length_batches` sorts the samples by token count (longest first), then cuts
a new batch whenever one more sample would take the padded batch (``samples x longest``)
over ``max_tokens`` or past ``max_samples``. Fixed-size inputs (an sMRI volume, an fMRI
series) all count the same, so their batches are the plain consecutive chunks.

Each sample's own output does not depend on which samples share its batch (padding is
masked), so callers write every batch's outputs back at the samples' original positions
and get the same values as one sample at a time (to float rounding): :func:`batched_by_length`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

if TYPE_CHECKING:
    from ..backbones.base import ModalityBackbone

#: Samples per batch when a caller sets no other limit.
DEFAULT_MAX_SAMPLES = 8


def token_count(batch: "dict[str, Any]") -> int:
    """Tokens of a one-sample collated batch: its ``attention_mask`` sum, ``1`` when it has none (fixed size)."""
    mask = batch.get("attention_mask")
    return int(mask.sum()) if mask is not None else 1


def sample_lengths(backbone: "ModalityBackbone", samples: Sequence[Any]) -> np.ndarray:
    """``(n,)`` token count of each sample as ``backbone`` collates it alone (``1`` for fixed-size inputs)."""
    return np.array([token_count(backbone.collate([s])) for s in samples], dtype=np.int64)


def length_batches(
    lengths: "Sequence[int] | np.ndarray",
    max_samples: int = DEFAULT_MAX_SAMPLES,
    max_tokens: "int | None" = None,
) -> list[np.ndarray]:
    """Positions into ``lengths`` grouped into batches of similar length, longest batch first.

    Parameters
    ----------
    lengths
        Token count of each sample.
    max_samples
        Most samples in a batch.
    max_tokens
        Most padded tokens in a batch (``samples x its longest``); default
        ``max_samples x the longest sample``, i.e. only ``max_samples`` binds. A sample longer
        than the budget gets a batch of its own.

    Returns
    -------
    list of numpy.ndarray
        Every position exactly once; within a batch, sorted by decreasing length (ties in
        original order).
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    if max_samples < 1:
        raise ValueError(f"max_samples must be at least 1, got {max_samples}")
    if not len(lengths):
        return []
    budget = int(max_tokens) if max_tokens is not None else max_samples * int(lengths.max())
    order = np.argsort(-lengths, kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    while start < len(order):
        longest = max(int(lengths[order[start]]), 1)
        size = max(1, min(max_samples, budget // longest, len(order) - start))
        batches.append(order[start : start + size])
        start += size
    return batches



def batched_by_length(
    backbone: "ModalityBackbone",
    samples: Sequence[Any],
    index: "Sequence[int] | np.ndarray",
    max_samples: int = DEFAULT_MAX_SAMPLES,
    max_tokens: "int | None" = None,
) -> Iterator[tuple[np.ndarray, "dict[str, Any]"]]:
    """Collated batches of ``samples[i] for i in index``, similar lengths together.

    Yields ``(positions, batch)``: the positions into ``samples`` of the batch's rows, in
    row order, and ``backbone.collate`` of those samples; write each row's output back at
    its position to restore the original order.
    """
    index = np.asarray(index, dtype=np.int64)
    lengths = sample_lengths(backbone, [samples[i] for i in index])
    for rows in length_batches(lengths, max_samples, max_tokens):
        positions = index[rows]
        yield positions, backbone.collate([samples[i] for i in positions])
