"""The Nucleotide Transformer v1 6-mer vocabulary and a Hugging Face ``EsmTokenizer`` built on it.

NT v1 checkpoints in Hugging Face format (``InstaDeepAI/nucleotide-transformer-500m-human-ref``,
``-500m-1000g``, ``-2.5b-1000g``, ``-2.5b-multi-species``) use an ``EsmTokenizer`` whose
``vocab.txt`` holds 4105 tokens, in this order:

=========  ===============================================================================
ids        tokens
=========  ===============================================================================
0 - 3      ``<unk>``, ``<pad>``, ``<mask>``, ``<cls>``
4 - 4099   the 4096 6-mers, ``itertools.product("ATCG", repeat=6)`` order (note: **A, T, C, G**,
           the order of the original ``nucleotide_transformer`` package), so ``AAAAAA`` = 4,
           ``AAAAAT`` = 5, ``GGGGGG`` = 4099
4100-4104  the single nucleotides ``A``, ``T``, ``C``, ``G``, ``N``
=========  ===============================================================================

This matches the model configs (``pad_token_id=1``, ``mask_token_id=2``, ``vocab_size=4105``)
and the original JAX tokenizer (special tokens ``<unk> <pad> <mask> <cls>`` first, then the
standard tokens; v1 has no ``<eos>``/``<bos>``; NT v2 adds them, 4107 tokens).

Tokenization (``EsmTokenizer`` splits text with a trie over the whole vocabulary, longest match
first, left to right) gives the NT rule: non-overlapping 6-mers from the left; an ``N`` is always
a token of its own and restarts the 6-mer grid after it; bases left over before an ``N`` or at
the end (fewer than 6) become single-letter tokens. A ``<cls>`` token is prepended; no
``<eos>`` is appended (``eos_token=None``). Example::

    ATTCCGATTCCGAT  ->  <cls> ATTCCG ATTCCG A T
    AAANAAAAAAC     ->  <cls> A A A N AAAAAA C

Real NT folders bring their own tokenizer files; this module builds the tokenizer for the demo
Nucleotide Transformer (pretrained by ``anchorad pretrain``) and for tests.
"""
from __future__ import annotations

import itertools
import tempfile
from pathlib import Path
from typing import Any

#: Special tokens of NT v1, in vocabulary order.
SPECIAL_TOKENS: tuple[str, ...] = ("<unk>", "<pad>", "<mask>", "<cls>")
#: Nucleotide order of the original tokenizer (used for the k-mer product and the single letters).
NUCLEOTIDES: tuple[str, ...] = ("A", "T", "C", "G")
#: Bases a sequence may contain.
VALID_BASES = frozenset("ACGTN")
#: k of the k-mers.
K = 6


def nt_v1_vocabulary(k: int = K) -> list[str]:
    """The NT v1 vocabulary (4105 tokens for ``k=6``) in id order."""
    kmers = ["".join(p) for p in itertools.product(NUCLEOTIDES, repeat=k)]
    return list(SPECIAL_TOKENS) + kmers + list(NUCLEOTIDES) + ["N"]


def write_vocab(directory: "str | Path", k: int = K) -> Path:
    """Write the NT v1 ``vocab.txt`` (one token a line, id = line number) into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "vocab.txt"
    path.write_text("\n".join(nt_v1_vocabulary(k)), encoding="utf-8")
    return path


def build_nt_v1_tokenizer(directory: "str | Path | None" = None, model_max_length: int = 1000) -> Any:
    """An ``EsmTokenizer`` with the NT v1 vocabulary (``<cls>`` prepended, no ``<eos>``).

    Parameters
    ----------
    directory
        Where to write ``vocab.txt`` and the tokenizer files (``save_pretrained``); with
        ``None`` a temporary folder is used and removed (the tokenizer keeps its vocabulary in
        memory).
    model_max_length
        Token limit recorded in the tokenizer config (NT v1: 1000).
    """
    from transformers import EsmTokenizer

    def build(folder: Path) -> Any:
        vocab = write_vocab(folder)
        tokenizer = EsmTokenizer(
            str(vocab),
            unk_token="<unk>",
            cls_token="<cls>",
            pad_token="<pad>",
            mask_token="<mask>",
            eos_token=None,
            model_max_length=model_max_length,
        )
        if directory is not None:
            tokenizer.save_pretrained(str(folder))
        return tokenizer

    if directory is not None:
        return build(Path(directory))
    with tempfile.TemporaryDirectory(prefix="anchorad-nt-vocab-") as tmp:
        return build(Path(tmp))


def kmer_split(sequence: str, k: int = K) -> list[str]:
    """Reference split of an upper-case ACGTN string into NT tokens (no special tokens).

    Pure-Python statement of the rule in the module docstring, used to check tokenizers.
    """
    tokens: list[str] = []
    pieces = sequence.split("N")
    for i, piece in enumerate(pieces):
        full = len(piece) // k
        tokens.extend(piece[j * k : (j + 1) * k] for j in range(full))
        tokens.extend(piece[full * k :])
        if i < len(pieces) - 1:
            tokens.append("N")
    return tokens
