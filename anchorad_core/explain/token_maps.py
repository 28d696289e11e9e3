"""Per-token scores mapped back to what a researcher reads: words of a note, bases of a sequence.

Attribution methods (Captum, attention rollout, the Q-former's cross-attention) give one score
per *token* of a backbone. Tokens are an artefact of the tokenizer: a clinical note's
"hippocampal" may be ``hip ##po ##camp ##al``, a DNA string is cut into non-overlapping 6-mers
with single-base tokens around every ``N`` and at the tail. These pure functions (numpy in,
numpy out; torch tensors are accepted and converted) redistribute the token scores onto the
input, **conserving their sum**:

* :func:`text_scores_to_words` — one :class:`WordScore` per whitespace-separated word of the
  note, aligned 1:1 with ``note.split()``, from the ``token_offsets`` that
  :meth:`anchorad_core.backbones.hf_text.HFTextBackbone.collate` returns.
* :func:`dna_scores_to_bases` — one per-base score track per DNA string of a subject, from the
  ``sequence_index`` / ``base_offsets`` (/ ``token_mask``) that
  :meth:`anchorad_core.backbones.nucleotide_transformer.NucleotideTransformerBackbone.collate`
  returns (:func:`dna_token_layout` takes one subject's layout out of a batch).
* :func:`kmer_table` — the same tokens as a table (sequence, start, end, k-mer, score).

Token scores are expected in the backbone's token order (``BackboneOutput.tokens``), which for
both families is the order of those layout fields.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = [
    "DnaTokenLayout",
    "KmerScore",
    "WordScore",
    "batch_text_scores_to_words",
    "dna_scores_to_bases",
    "dna_token_layout",
    "kmer_table",
    "text_scores_to_words",
    "word_spans",
]


def _as_numpy(x: Any, dtype: Any = None) -> np.ndarray:
    """``np.asarray`` that also takes torch tensors (detached, moved to the CPU) without importing torch."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu()
        if dtype is None and str(getattr(x, "dtype", "")) == "torch.bfloat16":
            x = x.float()
        x = x.numpy()
    return np.asarray(x, dtype=dtype)


# ---------------------------------------------------------------------------------------------
# clinical text
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WordScore:
    """One whitespace-separated word of a note and the score of the tokens that cover it.

    Attributes
    ----------
    word
        The word exactly as in the note (``note[start:end]``; punctuation attached to a word
        belongs to it, as in ``note.split()``).
    start, end
        Character span in the note.
    score
        Sum of the scores of the tokens overlapping the word (a token overlapping several
        words is shared by the characters it covers in each).
    n_tokens
        Number of tokens that contributed; ``0`` for a word past the tokenizer's truncation.
    """

    word: str
    start: int
    end: int
    score: float
    n_tokens: int = 0


def word_spans(note: str) -> list[tuple[int, int]]:
    """Character spans of the words of ``note.split()`` (whitespace as ``str.isspace`` defines it)."""
    spans = []
    start = None
    for i, char in enumerate(note):
        if char.isspace():
            if start is not None:
                spans.append((start, i))
                start = None
        elif start is None:
            start = i
    if start is not None:
        spans.append((start, len(note)))
    return spans


def text_scores_to_words(note: str, token_offsets: Any, token_scores: Any) -> list[WordScore]:
    """Sum per-token scores of one note onto its whitespace-separated words.

    Parameters
    ----------
    note
        The note string that was tokenized.
    token_offsets
        ``(L, 2)`` character span of every token in ``note`` (one row of the ``token_offsets``
        of ``HFTextBackbone.collate``, i.e. the fast tokenizer's ``offset_mapping``).
        Special and padding tokens have ``(0, 0)`` and are ignored.
    token_scores
        ``(L,)`` one score per token, same order.

    Returns
    -------
    list of WordScore
        One per word, in order; ``[w.word for w in result] == note.split()``.

    Notes
    -----
    * A token adds its score to the word(s) its span overlaps. Tokens overlap one word in
      practice; if one spans several, its score is split by the number of characters it covers
      in each.
    * A non-empty token that overlaps no word (a whitespace-only token, e.g. LLaMA's ``▁`` or a
      newline byte token) goes to the next word, or to the last word if none follows.
    * So the total is conserved: ``sum(w.score) == sum(score of every token whose offsets are
      not (0, 0))``, as long as the note has at least one word.

    Raises
    ------
    ValueError
        If the shapes disagree or an offset lies outside the note.
    """
    offsets = _as_numpy(token_offsets, dtype=np.int64)
    scores = _as_numpy(token_scores, dtype=np.float64)
    if offsets.ndim != 2 or offsets.shape[1] != 2:
        raise ValueError(f"token_offsets must have shape (L, 2), got {offsets.shape}")
    if scores.shape != (offsets.shape[0],):
        raise ValueError(f"token_scores must have shape ({offsets.shape[0]},), got {scores.shape}")
    spans = word_spans(note)
    totals = np.zeros(len(spans), dtype=np.float64)
    counts = np.zeros(len(spans), dtype=np.int64)
    if not spans:
        return []
    starts = np.array([s for s, _ in spans])
    ends = np.array([e for _, e in spans])
    for (begin, end), score in zip(offsets.tolist(), scores.tolist()):
        if begin == 0 and end == 0:
            continue  # special or padding token
        if not 0 <= begin <= end <= len(note):
            raise ValueError(f"token offset ({begin}, {end}) lies outside the note ({len(note)} characters)")
        if begin == end:
            continue  # an empty real token carries no text
        overlap = np.minimum(ends, end) - np.maximum(starts, begin)
        hit = np.nonzero(overlap > 0)[0]
        if hit.size == 0:
            following = np.nonzero(starts >= end)[0]
            hit = following[:1] if following.size else np.array([len(spans) - 1])
            weights = np.ones(1)
        else:
            weights = overlap[hit] / overlap[hit].sum()
        totals[hit] += score * weights
        counts[hit] += 1
    return [
        WordScore(note[s:e], int(s), int(e), float(totals[i]), int(counts[i])) for i, (s, e) in enumerate(spans)
    ]


def batch_text_scores_to_words(notes: Sequence[str], token_offsets: Any, token_scores: Any) -> list[list[WordScore]]:
    """:func:`text_scores_to_words` for every note of a batch (``(B, L, 2)`` offsets, ``(B, L)`` scores)."""
    offsets = _as_numpy(token_offsets, dtype=np.int64)
    scores = _as_numpy(token_scores, dtype=np.float64)
    if offsets.ndim != 3 or scores.shape != offsets.shape[:2] or len(notes) != offsets.shape[0]:
        raise ValueError(
            f"expected {len(notes)} notes, offsets (B, L, 2) and scores (B, L); got {offsets.shape}, {scores.shape}"
        )
    return [text_scores_to_words(note, offsets[b], scores[b]) for b, note in enumerate(notes)]


# ---------------------------------------------------------------------------------------------
# genetics
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DnaTokenLayout:
    """Where one subject's output tokens lie in its DNA strings.

    Attributes
    ----------
    sequence_index
        ``(N,)`` which string each token comes from; ``-1`` for special and padding tokens.
    base_offsets
        ``(N, 2)`` first base and one past the last base of each token in its string.
    """

    sequence_index: np.ndarray
    base_offsets: np.ndarray


def dna_token_layout(batch: Mapping[str, Any], subject: int = 0) -> DnaTokenLayout:
    """Take subject ``subject``'s token layout out of a ``NucleotideTransformerBackbone.collate`` batch.

    Tokens outside ``token_mask`` (when the batch has one) are marked ``-1``.
    """
    sequence_index = _as_numpy(batch["sequence_index"], dtype=np.int64)[subject].copy()
    base_offsets = _as_numpy(batch["base_offsets"], dtype=np.int64)[subject]
    if "token_mask" in batch:
        sequence_index[~_as_numpy(batch["token_mask"], dtype=bool)[subject]] = -1
    return DnaTokenLayout(sequence_index, base_offsets)


def _dna_tokens(layout: Any, token_scores: Any, n_sequences: int) -> "tuple[np.ndarray, np.ndarray, np.ndarray]":
    """Validated ``(sequence, offsets, scores)`` of the tokens that cover bases."""
    if isinstance(layout, DnaTokenLayout):
        seq, offsets = layout.sequence_index, layout.base_offsets
    elif isinstance(layout, Mapping):
        seq, offsets = layout["sequence_index"], layout["base_offsets"]
        if "token_mask" in layout:
            seq = np.where(_as_numpy(layout["token_mask"], dtype=bool), _as_numpy(seq, dtype=np.int64), -1)
    else:
        raise TypeError(
            "layout must be a DnaTokenLayout (see dna_token_layout) or a mapping with one subject's "
            f"'sequence_index' and 'base_offsets'; got {type(layout).__name__}"
        )
    seq = _as_numpy(seq, dtype=np.int64)
    offsets = _as_numpy(offsets, dtype=np.int64)
    scores = _as_numpy(token_scores, dtype=np.float64)
    if seq.ndim != 1 or offsets.shape != (seq.shape[0], 2):
        raise ValueError(f"expected sequence_index (N,) and base_offsets (N, 2); got {seq.shape}, {offsets.shape}")
    if scores.ndim != 1 or scores.shape[0] < seq.shape[0]:
        raise ValueError(f"token_scores must have shape ({seq.shape[0]},), got {scores.shape}")
    scores = scores[: seq.shape[0]]  # scores may be padded past the layout; the layout decides
    keep = seq >= 0
    if np.any(seq[keep] >= n_sequences):
        raise ValueError(f"tokens refer to sequence {int(seq[keep].max())}, but only {n_sequences} were given")
    return seq[keep], offsets[keep], scores[keep]


def dna_scores_to_bases(sequence_lengths: Sequence[int], layout: Any, token_scores: Any) -> list[np.ndarray]:
    """Spread per-token scores of one subject evenly over the bases each token covers.

    Parameters
    ----------
    sequence_lengths
        Length (bases) of each of the subject's DNA strings, in sample order.
    layout
        The subject's token layout: a :class:`DnaTokenLayout` (:func:`dna_token_layout` takes
        it out of a collated batch) or a mapping with that subject's ``sequence_index``
        (``-1``: special/padding, ignored), ``base_offsets`` (``[start, end)`` bases of each
        token) and optionally ``token_mask``.
    token_scores
        ``(N,)`` one score per token, same order (the backbone's token order).

    Returns
    -------
    list of numpy.ndarray
        One float64 track per string, ``len(track) == sequence_lengths[i]``; a 6-mer adds
        ``score / 6`` to each of its bases, a single-base token (``N``, leftovers) its whole
        score. Each track sums to the total score of its string's tokens.

    Raises
    ------
    ValueError
        If shapes disagree, a token refers to an unknown string or lies outside it, or two
        tokens cover the same base.
    """
    lengths = [int(n) for n in sequence_lengths]
    seq, offsets, scores = _dna_tokens(layout, token_scores, len(lengths))
    tracks = [np.zeros(n, dtype=np.float64) for n in lengths]
    covered = [np.zeros(n, dtype=np.int64) for n in lengths]
    for s, (start, end), score in zip(seq.tolist(), offsets.tolist(), scores.tolist()):
        if not 0 <= start < end <= lengths[s]:
            raise ValueError(f"token bases [{start}, {end}) lie outside sequence {s} ({lengths[s]} bases)")
        tracks[s][start:end] += score / (end - start)
        covered[s][start:end] += 1
    for s, cover in enumerate(covered):
        if np.any(cover > 1):
            raise ValueError(f"sequence {s}: some bases are covered by more than one token")
    return tracks


@dataclass(frozen=True)
class KmerScore:
    """One token of a DNA string and its score.

    Attributes
    ----------
    sequence
        Index of the string in the subject's sample.
    start, end
        ``[start, end)`` bases of the token.
    kmer
        The bases (upper case; a 6-mer, or a single base).
    score
        The token's score.
    """

    sequence: int
    start: int
    end: int
    kmer: str
    score: float


def kmer_table(
    sequences: Sequence[str],
    layout: Any,
    token_scores: Any,
    *,
    sort: bool = False,
    top: "int | None" = None,
) -> list[KmerScore]:
    """The subject's DNA tokens with their scores, one :class:`KmerScore` per token.

    Parameters
    ----------
    sequences
        The subject's DNA strings (as given to ``collate``; case is ignored).
    layout, token_scores
        As in :func:`dna_scores_to_bases`.
    sort
        Order by decreasing ``|score|`` instead of token order.
    top
        Keep only the first ``top`` rows (after sorting).
    """
    seqs = [str(s).upper() for s in sequences]
    seq, offsets, scores = _dna_tokens(layout, token_scores, len(seqs))
    rows = []
    for s, (start, end), score in zip(seq.tolist(), offsets.tolist(), scores.tolist()):
        if not 0 <= start < end <= len(seqs[s]):
            raise ValueError(f"token bases [{start}, {end}) lie outside sequence {s} ({len(seqs[s])} bases)")
        rows.append(KmerScore(int(s), int(start), int(end), seqs[s][start:end], float(score)))
    if sort:
        rows.sort(key=lambda r: -abs(r.score))
    return rows if top is None else rows[: int(top)]
