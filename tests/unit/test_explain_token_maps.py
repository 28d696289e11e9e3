"""Token scores mapped back to words of a note and bases of DNA, with the real tokenizers."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from anchorad_core.backbones import registry
from anchorad_core.explain.token_maps import (
    DnaTokenLayout,
    KmerScore,
    WordScore,
    batch_text_scores_to_words,
    dna_scores_to_bases,
    dna_token_layout,
    kmer_table,
    text_scores_to_words,
    word_spans,
)
from anchorad_core.resources import resource_path

NOTE = (
    "72-year-old right-handed woman, referred by GP.  MMSE 24/30; MoCA 19/30 (delayed recall 1/5).\n"
    "Reports word-finding difficulties (anomia) since 2021 — husband notes repetitive questioning.\n"
    "MRI: bilateral hippocampal atrophy (MTA 2/2), no infarcts. APOE ε3/ε4 carrier; CSF Aβ42 low."
)
SNP = 387  # rs429358 in the shipped APOE CDS fragment (0-based)


@pytest.fixture(scope="module")
def text_backbone():
    """The minilm-l6 backbone with its real tokenizer; weights on the meta device (collate only)."""
    with torch.device("meta"):
        return registry.build_backbone("minilm-l6", load_weights=False)


@pytest.fixture(scope="module")
def nt_backbone():
    torch.manual_seed(0)
    return registry.build_backbone("nt-demo")


def _apoe() -> str:
    lines = resource_path("templates/apoe_cds_fragment.fa").read_text().splitlines()
    return "".join(line.strip() for line in lines if not line.startswith(">"))


# ---------------------------------------------------------------------------------------------
# text
# ---------------------------------------------------------------------------------------------


def test_words_align_with_split_and_scores_are_conserved(text_backbone):
    notes = [NOTE, "No complaints."]
    batch = text_backbone.collate(notes)
    offsets, ids = batch["token_offsets"], batch["input_ids"]
    assert offsets.shape == (*ids.shape, 2)
    rng = np.random.default_rng(0)
    scores = rng.normal(size=tuple(ids.shape))
    words = text_scores_to_words(NOTE, offsets[0], scores[0])
    assert [w.word for w in words] == NOTE.split()
    assert all(NOTE[w.start : w.end] == w.word for w in words)
    real = (offsets[0, :, 0] + offsets[0, :, 1]).numpy() > 0  # not [CLS]/[SEP]/padding
    assert np.isclose(sum(w.score for w in words), scores[0][real].sum())
    assert all(w.n_tokens >= 1 for w in words)
    # the same through the batch helper, torch tensors in
    both = batch_text_scores_to_words(notes, offsets, torch.from_numpy(scores))
    assert both[0] == words and [w.word for w in both[1]] == ["No", "complaints."]


def test_subwords_and_punctuation_land_on_their_word(text_backbone):
    batch = text_backbone.collate([NOTE])
    offsets = batch["token_offsets"][0]
    tokens = text_backbone.tokenizer.convert_ids_to_tokens(batch["input_ids"][0])
    # one-hot scores: every token's unit must land on exactly the word that contains it
    for target in ("##camp", "anomia", "(", "ε", "/", "—"):
        hits = [i for i, t in enumerate(tokens) if t == target or (target == "anomia" and t == "an")]
        assert hits, target
        scores = np.zeros(len(tokens))
        scores[hits[0]] = 1.0
        words = text_scores_to_words(NOTE, offsets, scores)
        (word,) = [w for w in words if w.score != 0]
        begin, end = offsets[hits[0]].tolist()
        assert word.start <= begin and end <= word.end and word.score == 1.0
    by_word = {w.word: w for w in text_scores_to_words(NOTE, offsets, np.ones(len(tokens)))}
    assert by_word["hippocampal"].n_tokens == 4  # hip ##po ##camp ##al
    assert by_word["(anomia)"].n_tokens >= 3  # ( an ##omi ##a )
    assert by_word["24/30;"].score == by_word["24/30;"].n_tokens == 4  # 24 / 30 ;


def test_truncated_words_get_no_tokens(text_backbone):
    long_note = " ".join(["memory"] * 300)
    batch = text_backbone.collate([long_note])
    words = text_scores_to_words(long_note, batch["token_offsets"][0], np.ones(batch["input_ids"].shape[1]))
    assert len(words) == 300
    covered = [w.n_tokens for w in words]
    assert covered[0] == 1 and covered[-1] == 0 and sum(covered) == text_backbone.max_length - 2


def test_whitespace_tokens_and_multi_word_tokens():
    note = "alpha  beta\ngamma"
    assert word_spans(note) == [(0, 5), (7, 11), (12, 17)]
    offsets = [(0, 0), (0, 5), (5, 7), (7, 11), (11, 12), (12, 17), (0, 0)]
    words = text_scores_to_words(note, offsets, [9, 1, 2, 3, 4, 5, 9])
    assert [(w.word, w.score) for w in words] == [("alpha", 1), ("beta", 5), ("gamma", 9)]  # spaces -> next word
    spanning = text_scores_to_words("ab cd", [(0, 5)], [4.0])  # one token over "ab cd": 2 + 2 characters
    assert [w.score for w in spanning] == [2.0, 2.0]
    assert text_scores_to_words("   ", [(0, 0)], [1.0]) == []
    with pytest.raises(ValueError):
        text_scores_to_words("abc", [(0, 9)], [1.0])
    with pytest.raises(ValueError):
        text_scores_to_words("abc", [(0, 3)], [1.0, 2.0])
    assert WordScore("a", 0, 1, 0.5).n_tokens == 0


# ---------------------------------------------------------------------------------------------
# genetics
# ---------------------------------------------------------------------------------------------


def test_per_base_tracks_with_tail_n_and_windows(nt_backbone):
    apoe = _apoe()
    assert len(apoe) == 581 and apoe[SNP] == "T"
    # N at base 99: 16 6-mers + 3 singles, N, then 80 6-mers from base 100 and a 1-base tail
    e3 = apoe[:99] + "N" + apoe[100:]
    e4 = e3[:SNP] + "C" + e3[SNP + 1 :]
    long = apoe * 4  # more tokens than one window of nt-demo (255 DNA tokens)
    sequences = [e3, e4.lower(), long]
    batch = nt_backbone.collate([sequences, ["ACGTAC"]])
    assert int(batch["chunk_mask"][0].sum()) > 3  # e3, e4 and two windows of `long`
    layout = dna_token_layout(batch, 0)
    assert isinstance(layout, DnaTokenLayout)
    out = nt_backbone(batch)
    assert out.tokens.shape[1] == layout.sequence_index.shape[0]

    scores = np.random.default_rng(1).normal(size=out.tokens.shape[1])
    tracks = dna_scores_to_bases([len(s) for s in sequences], layout, scores)
    assert [len(t) for t in tracks] == [len(s) for s in sequences]
    for s, track in enumerate(tracks):  # conserved per sequence
        assert np.isclose(track.sum(), scores[layout.sequence_index == s].sum())

    table = kmer_table(sequences, layout, scores)
    assert all(isinstance(r, KmerScore) for r in table)
    rows0 = [r for r in table if r.sequence == 0]
    assert "".join(r.kmer for r in rows0) == e3  # tokens tile the sequence
    assert [r.kmer for r in rows0[16:20]] == list(e3[96:100]) and rows0[19].kmer == "N"
    assert rows0[-1] == KmerScore(0, 580, 581, e3[580], rows0[-1].score)  # leftover tail base
    # the SNP's base gets a sixth of the 6-mer that covers it, [382, 388)
    (snp0,) = [r for r in rows0 if r.start <= SNP < r.end]
    assert (snp0.start, snp0.end, snp0.kmer) == (382, 388, e3[382:388])
    assert np.isclose(tracks[0][SNP], snp0.score / 6)
    assert np.allclose(tracks[0][382:388], snp0.score / 6)
    (snp1,) = [r for r in table if r.sequence == 1 and r.start <= SNP < r.end]
    assert snp1.kmer == e4[382:388] and snp1.kmer[SNP - 382] == "C"
    assert np.isclose(tracks[1][SNP], snp1.score / 6)
    # single-base tokens keep their whole score; the N at 99 too
    (n_row,) = [r for r in rows0 if r.start == 99]
    assert tracks[0][99] == n_row.score
    # across windows of the long sequence, every base is covered exactly once
    rows2 = [r for r in table if r.sequence == 2]
    assert "".join(r.kmer for r in rows2) == long and len(rows2) > 255

    top = kmer_table(sequences, layout, scores, sort=True, top=5)
    assert len(top) == 5 and abs(top[0].score) == max(abs(r.score) for r in table)


def test_layout_from_a_mapping_and_errors(nt_backbone):
    batch = nt_backbone.collate([["ACGTACGTN"], ["AAAAAACC"]])
    subject = {k: batch[k][1] for k in ("sequence_index", "base_offsets", "token_mask")}
    scores = torch.arange(batch["sequence_index"].shape[1], dtype=torch.float32)
    (track,) = dna_scores_to_bases([8], subject, scores)  # <cls> AAAAAA C C, then padding
    assert np.allclose(track, [1 / 6] * 6 + [2, 3])
    with pytest.raises(ValueError):
        dna_scores_to_bases([5], subject, scores)  # shorter than the tokens say
    with pytest.raises(ValueError, match="outside"):
        dna_scores_to_bases([8], dna_token_layout(batch, 0), scores)  # subject 0's string has 9 bases
    two = nt_backbone.collate([["ACGTAC", "GGGGGG"]])
    with pytest.raises(ValueError, match="only 1 were given"):
        dna_scores_to_bases([6], dna_token_layout(two, 0), np.ones(two["sequence_index"].shape[1]))
    with pytest.raises(TypeError):
        dna_scores_to_bases([8], (batch["sequence_index"][1], batch["base_offsets"][1]), scores)
    overlap = DnaTokenLayout(np.array([0, 0]), np.array([[0, 6], [3, 9]]))
    with pytest.raises(ValueError, match="more than one token"):
        dna_scores_to_bases([9], overlap, [1.0, 1.0])
