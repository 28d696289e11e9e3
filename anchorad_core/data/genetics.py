"""Genetics: APOE genotypes, FASTA and VCF -> a list of DNA sequences (haplotypes).

Inputs (subject folder ``genetics/``), all turned into uppercase ``ACGTN`` strings:

* ``sub-<id>_apoe.txt``: an APOE genotype such as ``E3/E4``, ``e2/e4``, ``ε3/ε3``,
  ``APOE 3/4`` or ``e4e4``. It is expanded on the shipped reference fragment (RefSeq
  NM_000041 CDS nt 1-581, an epsilon-3 sequence) into two haplotype strings by setting the two
  APOE-defining SNPs (0-based indices into the fragment):

  ====== ===================== =====================
  allele rs429358 (index 387)  rs7412 (index 525)
  ====== ===================== =====================
  ε2     T                     T
  ε3     T                     C
  ε4     C                     C
  ====== ===================== =====================

  The haplotypes are returned in ascending allele order (``E4/E3`` gives ε3 then ε4).
* ``*.fa`` / ``*.fasta``: one or more records, one sequence per record (wrapped lines are
  joined, case is ignored); characters other than ``ACGTN`` or an empty record are errors.
* ``*.vcf`` / ``*.vcf.gz``: the first sample's genotypes at rs429358 and rs7412, found by ID
  or by GRCh38 position (chr19:44908684 and chr19:44908822; ``chr19`` or ``19``), are applied
  to the reference fragment (the fragment is coding = forward strand, APOE lies on the plus
  strand). Phased genotypes (``0|1``) give the haplotypes directly; unphased double
  heterozygotes are read as ε2/ε4 (the usual convention; ε1 is very rare). A VCF with only one
  of the SNPs is read with the reference base at the other (with a warning); a VCF with
  neither is an error.

:func:`parse_genetics_text` accepts text a user pastes in the GUI: a genotype, FASTA text,
VCF text or a bare sequence.
"""
from __future__ import annotations

import gzip
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..errors import InputDataError
from .config import PreprocessConfig
from .fileio import check_gzip, read_text_utf8
from .templates import apoe_reference

__all__ = [
    "RS429358_INDEX",
    "RS7412_INDEX",
    "APOE_SNPS",
    "parse_apoe_genotype",
    "expand_apoe_genotype",
    "apoe_alleles_of",
    "read_apoe",
    "parse_fasta",
    "read_fasta",
    "read_vcf",
    "parse_vcf_text",
    "parse_genetics_text",
    "read_genetics",
    "check_sequences",
    "is_genetics_name",
]

#: 0-based index of rs429358 in the APOE reference fragment (C = ε4).
RS429358_INDEX = 387
#: 0-based index of rs7412 in the APOE reference fragment (T = ε2).
RS7412_INDEX = 525


@dataclass(frozen=True)
class _Snp:
    rsid: str
    chrom: str
    pos: int  # GRCh38, 1-based
    index: int  # 0-based in the reference fragment


APOE_SNPS: tuple[_Snp, _Snp] = (
    _Snp("rs429358", "19", 44908684, RS429358_INDEX),
    _Snp("rs7412", "19", 44908822, RS7412_INDEX),
)

_ALLELE_BASES = {2: ("T", "T"), 3: ("T", "C"), 4: ("C", "C")}
_BASES_ALLELE = {("T", "T"): 2, ("T", "C"): 3, ("C", "C"): 4, ("C", "T"): 1}
_DNA = re.compile(r"^[ACGTN]*$")
_GENOTYPE = re.compile(r"^(?:apoe)?[\s:_-]*(?:e|ε|epsilon)?\s*([234])\s*[/|,;\s-]?\s*(?:e|ε|epsilon)?\s*([234])$")


def is_genetics_name(path: "str | Path") -> bool:
    """True for names the genetics reader understands."""
    n = Path(path).name.lower()
    return n.endswith(("_apoe.txt", ".fa", ".fasta", ".vcf", ".vcf.gz", ".fa.gz", ".fasta.gz"))


def parse_apoe_genotype(text: str, path: "str | Path | None" = None) -> tuple[int, int]:
    """Parse an APOE genotype (``E3/E4``, ``e2/e4``, ``ε3/ε3``, ``APOE 3/4``...) to sorted alleles."""
    key = str(text).strip().lower().replace("ɛ", "ε")
    key = re.sub(r"\s+", " ", key)
    m = _GENOTYPE.match(key)
    if not m:
        raise InputDataError(
            f"not an APOE genotype: {text.strip()[:40]!r} (expected e.g. 'E3/E4', 'e2/e4' or 'ε3/ε3')", path
        )
    a, b = sorted((int(m.group(1)), int(m.group(2))))
    return a, b


def _apply(reference: str, bases: dict[int, str]) -> str:
    seq = list(reference)
    for idx, base in bases.items():
        seq[idx] = base
    return "".join(seq)


def expand_apoe_genotype(genotype: "str | tuple[int, int]", reference: str | None = None) -> list[str]:
    """Expand an APOE genotype into two haplotype sequences on the reference fragment.

    Parameters
    ----------
    genotype : str or (int, int)
        E.g. ``"E3/E4"`` or ``(3, 4)``.
    reference : str, optional
        Reference sequence; the shipped APOE fragment by default.

    Returns
    -------
    list of str
        Two sequences, in ascending allele order.
    """
    alleles = parse_apoe_genotype(genotype) if isinstance(genotype, str) else tuple(sorted(genotype))
    ref = reference or apoe_reference()
    out = []
    for allele in alleles:
        if allele not in _ALLELE_BASES:
            raise InputDataError(f"unknown APOE allele ε{allele}")
        b1, b2 = _ALLELE_BASES[allele]
        out.append(_apply(ref, {RS429358_INDEX: b1, RS7412_INDEX: b2}))
    return out


def apoe_alleles_of(sequences: Iterable[str]) -> list[int | None]:
    """APOE allele (1-4) of each sequence aligned to the reference fragment (``None`` if too short)."""
    out: list[int | None] = []
    for s in sequences:
        if len(s) <= RS7412_INDEX:
            out.append(None)
            continue
        out.append(_BASES_ALLELE.get((s[RS429358_INDEX], s[RS7412_INDEX])))
    return out


def read_apoe(path: "str | Path") -> list[str]:
    """Read ``sub-<id>_apoe.txt`` (first non-comment line is the genotype) and expand it."""
    text = read_text_utf8(path, "APOE genotype file")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    if not lines:
        raise InputDataError("APOE genotype file has no genotype line", path)
    return expand_apoe_genotype(parse_apoe_genotype(lines[0], path))


def check_sequences(
    sequences: list[str],
    config: PreprocessConfig | None = None,
    path: "str | Path | None" = None,
    warnings: list[str] | None = None,
) -> list[str]:
    """Validate DNA sequences against ``ACGTN`` and the configured maximum length."""
    config = config or PreprocessConfig()
    if not sequences:
        raise InputDataError("no DNA sequence found", path)
    out = []
    for i, seq in enumerate(sequences):
        s = re.sub(r"\s+", "", seq).upper()
        if not s:
            raise InputDataError(f"DNA sequence {i + 1} is empty", path)
        if not _DNA.match(s):
            bad = next(ch for ch in s if ch not in "ACGTN")
            pos = s.index(bad)
            raise InputDataError(
                f"DNA sequence {i + 1} contains {bad!r} at position {pos + 1}; only A, C, G, T and N are allowed", path
            )
        if len(s) > config.dna_max_length:
            if config.dna_overlength == "error":
                raise InputDataError(
                    f"DNA sequence {i + 1} has {len(s)} bases, more than the maximum {config.dna_max_length}", path
                )
            if warnings is not None:
                warnings.append(f"DNA sequence {i + 1} truncated from {len(s)} to {config.dna_max_length} bases")
            s = s[: config.dna_max_length]
        out.append(s)
    return out


def parse_fasta(text: str, path: "str | Path | None" = None) -> list[str]:
    """Parse FASTA text into one sequence per record (no validation of the alphabet)."""
    records: list[list[str]] = []
    saw_header = False
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(";"):
            continue
        if line.startswith(">"):
            saw_header = True
            records.append([])
        else:
            if not records:
                raise InputDataError("FASTA text must start with a '>' header line", path)
            records[-1].append(line)
    if not saw_header:
        raise InputDataError("no FASTA record found (no '>' header line)", path)
    seqs = ["".join(r) for r in records]
    for i, s in enumerate(seqs):
        if not s:
            raise InputDataError(f"FASTA record {i + 1} has no sequence", path)
    return seqs


def read_fasta(path: "str | Path", config: PreprocessConfig | None = None, warnings: list[str] | None = None) -> list[str]:
    """Read a FASTA file (``.fa``, ``.fasta``, optionally gzipped) into validated sequences."""
    text = read_text_utf8(path, "FASTA file")
    return check_sequences(parse_fasta(text, path), config, path, warnings)


def _gt_alleles(gt: str) -> tuple[list[int | None], bool]:
    phased = "|" in gt
    parts = re.split(r"[/|]", gt)
    out: list[int | None] = []
    for p in parts:
        out.append(None if p in (".", "") else int(p))
    return out, phased


def parse_vcf_text(
    text: str, path: "str | Path | None" = None, reference: str | None = None, warnings: list[str] | None = None
) -> list[str]:
    """Apply a VCF's rs429358/rs7412 genotypes (first sample) to the APOE reference.

    Returns
    -------
    list of str
        Two haplotype sequences.
    """
    ref_seq = reference or apoe_reference()
    header_cols: list[str] | None = None
    found: dict[str, tuple[list[str], bool]] = {}  # rsid -> (two bases, phased)
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("##"):
            continue
        cols = line.rstrip("\n").split("\t")
        if line.startswith("#"):
            header_cols = [c.lstrip("#") for c in cols]
            continue
        if header_cols is None:
            raise InputDataError("not a VCF file: no '#CHROM' header line before the data", path)
        if len(cols) < 8:
            raise InputDataError(f"VCF line {lineno} has {len(cols)} columns, expected at least 8 (tab-separated)", path)
        chrom, pos_s, vid, ref, alt = cols[0], cols[1], cols[2], cols[3], cols[4]
        chrom_key = chrom.lower().removeprefix("chr")
        try:
            pos = int(pos_s)
        except ValueError:
            raise InputDataError(f"VCF line {lineno}: POS {pos_s!r} is not an integer", path) from None
        ids = set(vid.split(";"))
        snp = next((s for s in APOE_SNPS if s.rsid in ids or (chrom_key == s.chrom and pos == s.pos)), None)
        if snp is None:
            continue
        if len(cols) < 10:
            raise InputDataError(f"VCF line {lineno} ({snp.rsid}) has no sample genotype column", path)
        fmt = cols[8].split(":")
        if "GT" not in fmt:
            raise InputDataError(f"VCF line {lineno} ({snp.rsid}) has no GT field", path)
        sample = cols[9].split(":")
        gt = sample[fmt.index("GT")] if fmt.index("GT") < len(sample) else "."
        alleles = [ref.upper()] + [a.upper() for a in alt.split(",") if a not in (".", "")]
        if any(len(a) != 1 or a not in "ACGT" for a in alleles):
            raise InputDataError(f"VCF line {lineno} ({snp.rsid}): REF/ALT must be single bases, got {ref}/{alt}", path)
        try:
            called, phased = _gt_alleles(gt)
        except ValueError:
            raise InputDataError(f"VCF line {lineno} ({snp.rsid}): unreadable genotype {gt!r}", path) from None
        idx = [i for i in called if i is not None]
        if len(idx) < len(called):
            raise InputDataError(f"VCF line {lineno} ({snp.rsid}): genotype is missing ({gt!r})", path)
        if len(idx) == 1:  # haploid call: treat as homozygous
            idx = idx * 2
        if len(idx) != 2 or any(i >= len(alleles) for i in idx):
            raise InputDataError(f"VCF line {lineno} ({snp.rsid}): genotype {gt!r} does not fit REF/ALT", path)
        found[snp.rsid] = ([alleles[i] for i in idx], phased)
    if header_cols is None:
        raise InputDataError("not a VCF file (no '#CHROM' header line)", path)
    if not found:
        raise InputDataError(
            "VCF contains neither rs429358 (chr19:44908684) nor rs7412 (chr19:44908822); cannot derive APOE", path
        )
    per_snp: dict[int, list[str]] = {}
    phased_all = all(found[s.rsid][1] for s in APOE_SNPS if s.rsid in found)
    for snp in APOE_SNPS:
        if snp.rsid in found:
            per_snp[snp.index] = list(found[snp.rsid][0])
        else:
            base = ref_seq[snp.index]
            per_snp[snp.index] = [base, base]
            if warnings is not None:
                warnings.append(f"VCF has no {snp.rsid}; the reference base {base} was assumed")
    b387, b525 = per_snp[RS429358_INDEX], per_snp[RS7412_INDEX]
    if not phased_all:
        # unphased: put ε4-defining C alleles first and ε2-defining T alleles last, so a double
        # heterozygote reads as ε2/ε4 (the usual convention)
        b387 = sorted(b387, key=lambda b: 0 if b == "C" else 1)
        b525 = sorted(b525, key=lambda b: 1 if b == "T" else 0)
    haps = [_apply(ref_seq, {RS429358_INDEX: b387[k], RS7412_INDEX: b525[k]}) for k in range(2)]
    alleles_ = apoe_alleles_of(haps)
    order = sorted(range(2), key=lambda k: alleles_[k] or 0)
    return [haps[k] for k in order]


def read_vcf(path: "str | Path", warnings: list[str] | None = None) -> list[str]:
    """Read a ``.vcf`` / ``.vcf.gz`` file and return two APOE haplotype sequences."""
    path = Path(path)
    if path.name.lower().endswith(".gz"):
        check_gzip(path)
        try:
            raw = gzip.decompress(path.read_bytes())
        except (OSError, EOFError, zlib.error) as exc:
            raise InputDataError(f"truncated or corrupt gzip file ({exc})", path) from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InputDataError("VCF is not valid UTF-8/ASCII text", path) from None
    else:
        text = read_text_utf8(path, "VCF file")
    return parse_vcf_text(text, path, warnings=warnings)


def read_genetics(
    path: "str | Path", config: PreprocessConfig | None = None, warnings: list[str] | None = None
) -> list[str]:
    """Read any supported genetics file (APOE genotype, FASTA, VCF) into sequences."""
    path = Path(path)
    if not path.is_file():
        raise InputDataError("genetics file not found", path)
    name = path.name.lower()
    if name.endswith("_apoe.txt") or name.endswith(".txt"):
        seqs = read_apoe(path)
    elif name.endswith((".vcf", ".vcf.gz")):
        seqs = read_vcf(path, warnings)
    elif name.endswith((".fa", ".fasta", ".fa.gz", ".fasta.gz")):
        return read_fasta(path, config, warnings)
    else:
        raise InputDataError("genetics file must be *_apoe.txt, *.fa, *.fasta, *.vcf or *.vcf.gz", path)
    return check_sequences(seqs, config, path, warnings)


def parse_genetics_text(
    text: str, config: PreprocessConfig | None = None, warnings: list[str] | None = None
) -> list[str]:
    """Turn pasted text into sequences: an APOE genotype, FASTA, VCF, or bare DNA.

    Bare DNA may hold several sequences separated by blank lines.
    """
    if not isinstance(text, str) or not text.strip():
        raise InputDataError("genetics text is empty")
    stripped = text.strip()
    if stripped.startswith(">"):
        return check_sequences(parse_fasta(stripped), config, None, warnings)
    if stripped.startswith("##fileformat=VCF") or stripped.startswith("#CHROM"):
        return check_sequences(parse_vcf_text(stripped, warnings=warnings), config, None, warnings)
    if len(stripped) <= 40 and re.search(r"\d", stripped):  # digits: a genotype (E3/E4), never DNA
        try:
            return expand_apoe_genotype(parse_apoe_genotype(stripped))
        except InputDataError:
            pass
        if not re.fullmatch(r"[ACGTNacgtn\s]+", stripped):
            raise InputDataError(
                f"not an APOE genotype: {stripped!r} (expected e.g. 'E3/E4'), FASTA, VCF or DNA text"
            )
    blocks = [b for b in re.split(r"\n\s*\n", stripped) if b.strip()]
    return check_sequences(blocks, config, None, warnings)
