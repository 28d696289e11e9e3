"""Genetics: APOE genotype expansion, FASTA (shipped reference), VCF, pasted text."""
from __future__ import annotations

import gzip

import pytest

from anchorad_core.data import (
    PreprocessConfig,
    apoe_alleles_of,
    expand_apoe_genotype,
    parse_apoe_genotype,
    parse_genetics_text,
    read_genetics,
)
from anchorad_core.data.genetics import RS429358_INDEX, RS7412_INDEX
from anchorad_core.data.templates import apoe_reference, template_path
from anchorad_core.errors import InputDataError

REF = apoe_reference()


def test_reference_fasta_is_epsilon3():
    seqs = read_genetics(template_path("apoe_cds_fragment.fa"))
    assert seqs == [REF] and len(REF) == 581
    assert (REF[387], REF[525]) == ("T", "C")
    assert apoe_alleles_of(seqs) == [3]


@pytest.mark.parametrize(
    "text,alleles",
    [("E3/E4", (3, 4)), ("e2/e4", (2, 4)), ("ε3/ε3", (3, 3)), ("APOE 4/3", (3, 4)), ("e4e4", (4, 4)), ("E2 / E3", (2, 3))],
)
def test_parse_genotype(text, alleles):
    assert parse_apoe_genotype(text) == alleles


@pytest.mark.parametrize(
    "genotype,bases",
    [("E3/E3", [("T", "C"), ("T", "C")]), ("E3/E4", [("T", "C"), ("C", "C")]), ("E2/E4", [("T", "T"), ("C", "C")]),
     ("E4/E4", [("C", "C"), ("C", "C")]), ("E2/E2", [("T", "T"), ("T", "T")])],
)
def test_expansion_sets_the_right_bases(genotype, bases):
    seqs = expand_apoe_genotype(genotype)
    assert len(seqs) == 2
    for seq, (b387, b525) in zip(seqs, bases):
        assert len(seq) == len(REF)
        assert seq[RS429358_INDEX] == b387 and seq[RS7412_INDEX] == b525
        diff = [i for i, (a, b) in enumerate(zip(seq, REF)) if a != b]
        assert set(diff) <= {387, 525}


def test_apoe_file(tmp_path):
    p = tmp_path / "sub-1_apoe.txt"
    p.write_text("# genotype\nE4/E3\n")
    assert apoe_alleles_of(read_genetics(p)) == [3, 4]
    p.write_text("E5/E9\n")
    with pytest.raises(InputDataError, match="not an APOE genotype") as info:
        read_genetics(p)
    assert info.value.path == p


def test_fasta_multi_record_and_errors(tmp_path):
    p = tmp_path / "x.fasta"
    p.write_text(">a\nACGT\nacgn\n>b\nTTTT\n")
    assert read_genetics(p) == ["ACGTACGN", "TTTT"]
    p.write_text(">a\nACGU\n")
    with pytest.raises(InputDataError, match="'U' at position 4") as info:
        read_genetics(p)
    assert info.value.path == p
    p.write_text(">a\n>b\nACGT\n")
    with pytest.raises(InputDataError, match="record 1 has no sequence"):
        read_genetics(p)
    p.write_text("")
    with pytest.raises(InputDataError, match="empty"):
        read_genetics(p)
    p.write_text("ACGT\n")
    with pytest.raises(InputDataError, match="'>' header"):
        read_genetics(p)


def test_long_sequence_truncated_or_refused(tmp_path):
    p = tmp_path / "x.fa"
    p.write_text(">a\n" + "A" * 100 + "\n")
    warnings: list[str] = []
    assert read_genetics(p, PreprocessConfig(dna_max_length=60), warnings) == ["A" * 60]
    assert warnings and "truncated" in warnings[0]
    with pytest.raises(InputDataError, match="more than the maximum"):
        read_genetics(p, PreprocessConfig(dna_max_length=60, dna_overlength="error"))


HEADER = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\n"


def _vcf(lines):
    return HEADER + "".join("\t".join(map(str, row)) + "\n" for row in lines)


@pytest.mark.parametrize(
    "rows,alleles",
    [
        ([("chr19", 44908684, "rs429358", "T", "C", ".", "PASS", ".", "GT", "0/1"),
          ("chr19", 44908822, "rs7412", "C", "T", ".", "PASS", ".", "GT", "0/0")], [3, 4]),
        # by position only, no rsID, "19" contig, unphased double het -> e2/e4
        ([("19", 44908684, ".", "T", "C", ".", "PASS", ".", "GT:DP", "1/0:30"),
          ("19", 44908822, ".", "C", "T", ".", "PASS", ".", "GT:DP", "0/1:28")], [2, 4]),
        # phased double het in cis -> e1 / e3
        ([("chr19", 44908684, "rs429358", "T", "C", ".", "PASS", ".", "GT", "1|0"),
          ("chr19", 44908822, "rs7412", "C", "T", ".", "PASS", ".", "GT", "1|0")], [1, 3]),
        ([("chr19", 44908684, "rs429358", "T", "C", ".", "PASS", ".", "GT", "1/1"),
          ("chr19", 44908822, "rs7412", "C", "T", ".", "PASS", ".", "GT", "0/0")], [4, 4]),
    ],
)
def test_vcf(tmp_path, rows, alleles):
    p = tmp_path / "s.vcf"
    p.write_text(_vcf(rows))
    seqs = read_genetics(p)
    assert apoe_alleles_of(seqs) == alleles
    gz = tmp_path / "s.vcf.gz"
    gz.write_bytes(gzip.compress(p.read_bytes()))
    assert read_genetics(gz) == seqs


def test_vcf_errors(tmp_path):
    p = tmp_path / "s.vcf"
    p.write_text(_vcf([("chr1", 1000, "rs1", "A", "G", ".", "PASS", ".", "GT", "0/1")]))
    with pytest.raises(InputDataError, match="neither rs429358") as info:
        read_genetics(p)
    assert info.value.path == p
    p.write_text(_vcf([("chr19", 44908684, "rs429358", "T", "C", ".", "PASS", ".", "GT", "./.")]))
    with pytest.raises(InputDataError, match="genotype is missing"):
        read_genetics(p)
    p.write_text("just text\n")
    with pytest.raises(InputDataError, match="not a VCF"):
        read_genetics(p)
    gz = tmp_path / "t.vcf.gz"
    gz.write_text("plain")
    with pytest.raises(InputDataError, match="not gzip-compressed"):
        read_genetics(gz)


def test_vcf_with_one_snp_warns(tmp_path):
    p = tmp_path / "s.vcf"
    p.write_text(_vcf([("chr19", 44908684, "rs429358", "T", "C", ".", "PASS", ".", "GT", "0|1")]))
    warnings: list[str] = []
    assert apoe_alleles_of(read_genetics(p, warnings=warnings)) == [3, 4]
    assert any("rs7412" in w for w in warnings)


def test_parse_genetics_text():
    assert apoe_alleles_of(parse_genetics_text("e3/e4")) == [3, 4]
    assert parse_genetics_text(">x\nacgt\n") == ["ACGT"]
    assert parse_genetics_text("ACGT\n\nTTNN") == ["ACGT", "TTNN"]
    vcf = _vcf([("chr19", 44908822, "rs7412", "C", "T", ".", "PASS", ".", "GT", "0/1")])
    assert apoe_alleles_of(parse_genetics_text(vcf)) == [2, 3]
    with pytest.raises(InputDataError, match="not an APOE genotype"):
        parse_genetics_text("E3/E7")
    with pytest.raises(InputDataError, match="only A, C, G, T and N"):
        parse_genetics_text("hello world")
    with pytest.raises(InputDataError, match="empty"):
        parse_genetics_text("  ")
