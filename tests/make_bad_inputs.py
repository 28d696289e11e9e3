"""A generated corpus of malformed inputs for the ``anchorad`` command line (issue 7).

Every case starts from a GOOD base - a small synthetic demo cohort and a small bundle trained
on it with the real demo backbones - and breaks one thing: a file of one of the four
modalities, the cohort table, the bundle, or a command-line option. Nothing binary is
committed; the corpus is rebuilt from the base each time.

The contract each case checks (``tests/integration/test_bad_inputs.py``): the CLI exits with status 2,
prints exactly one line on stderr (``anchorad: error: <file or option>: <problem>``) that
names the offending file (or option) and the problem, prints no traceback, and writes
nothing: no output bundle / cohort / run folder, no half-written or temporary file, and no
input file changed.

Usage::

    python tests/make_bad_inputs.py --table          # run the corpus, print the docs table
    python tests/make_bad_inputs.py --list           # case ids and what each breaks
    python tests/make_bad_inputs.py --out DIR        # write the corpus to DIR (to inspect)

As a module: :data:`CASES`, :func:`build_base`, :func:`prepare_case`, :func:`run_case`,
:func:`check_result`.
"""
from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SUBJECT = "sub-001"  # NC, all four modalities present in the demo cohort (seed 1)
TASK = "NC-AD"
N_SUBJECTS = 16
SEED = 1


# --------------------------------------------------------------------------- the base
@dataclass
class Base:
    """The good inputs every case is made from (never modified by a case)."""

    cohort: Path
    bundle: Path | None = None

    @property
    def subject(self) -> Path:
        return self.cohort / SUBJECT


def make_base_cohort(path: Path) -> Path:
    """A small synthetic demo cohort (all subjects have all four modalities)."""
    from anchorad_core.data import make_demo_cohort

    make_demo_cohort(path, N_SUBJECTS, seed=SEED)
    return path


def train_base_bundle(cohort: Path, path: Path) -> Path:
    """A real demo bundle (the four demo backbones), trained for one epoch per stage."""
    from anchorad_core.training.config import TrainConfig
    from anchorad_core.workflows import train_bundle

    config = TrainConfig.demo(quick=True)
    for stage in (*config.phase1.values(), *config.phase2.values()):
        stage.epochs, stage.patience = 1, 1
    out, _ = train_bundle(cohort, TASK, path, config, device="cpu")
    return out


def build_base(root: Path, bundle: bool = True) -> Base:
    """Cohort (and bundle) under ``root``."""
    root = Path(root)
    cohort = make_base_cohort(root / "cohort")
    return Base(cohort, train_base_bundle(cohort, root / "bundle") if bundle else None)


# --------------------------------------------------------------------------- cases
@dataclass
class Setup:
    """What one prepared case runs and what its error line must say."""

    argv: list[str]
    names: list[str]  # substrings the line must contain: the file (full path) or the option
    problem: str  # regular expression (case-insensitive) for the problem
    outputs: list[Path] = field(default_factory=list)  # must not exist afterwards
    offending: str = ""  # short name of the offending file/option (for the table)
    progress_ok: bool = False  # progress bars may precede the error line (work had started)


@dataclass
class Case:
    id: str
    group: str
    what: str
    make: Callable[[Base, Path], Setup]
    needs_bundle: bool = False
    subprocess: bool = False  # run as ``python -m anchorad_core.cli`` instead of in-process


CASES: list[Case] = []


def case(id_: str, group: str, what: str, needs_bundle: bool = False, subprocess_: bool = False):
    def register(fn: Callable[[Base, Path], Setup]) -> Callable[[Base, Path], Setup]:
        CASES.append(Case(id_, group, what, fn, needs_bundle, subprocess_))
        return fn
    return register


# helpers ------------------------------------------------------------------
def _subject_copy(base: Base, work: Path) -> Path:
    dst = work / SUBJECT
    shutil.copytree(base.subject, dst)
    return dst


def _predict(base: Base, subject: Path, *extra: str) -> list[str]:
    assert base.bundle is not None
    return ["predict", "--bundle", str(base.bundle), "--subject", str(subject), "--device", "cpu", *extra]


def _predict_case(base: Base, work: Path, rel: str, problem: str,
                  break_: Callable[[Path, Path], Path | None], *extra: str) -> Setup:
    """Copy the good subject, let ``break_(subject, file)`` damage ``rel``; predict on it."""
    subject = _subject_copy(base, work)
    target = subject / rel.format(s=SUBJECT)
    named = break_(subject, target)
    named = named if isinstance(named, Path) else target
    return Setup(_predict(base, subject, *extra), [str(named)], problem, offending=named.relative_to(work).as_posix())


def _cohort_copy(base: Base, work: Path, with_cache: bool = True) -> Path:
    dst = work / "cohort"
    ignore = None if with_cache else shutil.ignore_patterns("derivatives")
    shutil.copytree(base.cohort, dst, ignore=ignore)
    return dst


def _train(cohort: Path, work: Path, *extra: str, task: str = TASK) -> tuple[list[str], list[Path]]:
    out = work / "new-bundle"
    argv = ["train", "--cohort", str(cohort), "--task", task, "--out", str(out), "--quick", "--device", "cpu", *extra]
    return argv, [out, out.with_name(out.name + ".run")]


def _tsv_case(base: Base, work: Path, edit: Callable[[list[list[str]]], list[list[str]]], problem: str,
              task: str = TASK) -> Setup:
    cohort = _cohort_copy(base, work, with_cache=False)
    tsv = cohort / "participants.tsv"
    rows = [line.split("\t") for line in tsv.read_text(encoding="utf-8").splitlines()]
    tsv.write_text("\n".join("\t".join(r) for r in edit(rows)) + "\n", encoding="utf-8")
    argv, outputs = _train(cohort, work, task=task)
    return Setup(argv, [str(tsv)], problem, outputs, "cohort/participants.tsv")


def _nifti(data, affine, path: Path) -> None:
    import nibabel as nib
    import numpy as np

    nib.save(nib.Nifti1Image(np.asarray(data), affine), str(path))


def _t1(subject: Path):
    import nibabel as nib
    import numpy as np

    img = nib.load(str(subject / "anat" / f"{SUBJECT}_T1w.nii.gz"))
    return np.asarray(img.get_fdata(dtype=np.float32)), img.affine


T1 = "anat/{s}_T1w.nii.gz"
TABLE = "func/{s}_task-rest_atlas-schaefer400_17n_timeseries.npy"
SIDECAR = "func/{s}_task-rest_atlas-schaefer400_17n_timeseries.json"
BOLD = "func/{s}_task-rest_bold.nii.gz"
NOTE = "clinical/{s}_note.txt"
CLINICAL = "clinical/{s}_clinical.json"
APOE = "genetics/{s}_apoe.txt"


def _replace_genetics(subject: Path, name: str, content: bytes) -> Path:
    for f in (subject / "genetics").iterdir():
        f.unlink()
    target = subject / "genetics" / name
    target.write_bytes(content)
    return target


def _bold_instead_of_table(subject: Path, target: Path, data, affine) -> Path:
    for f in (subject / "func").iterdir():
        f.unlink()
    _nifti(data, affine, target)
    return target


# ---- sMRI -------------------------------------------------------------------
@case("smri-truncated-gzip", "sMRI", "T1 .nii.gz cut to half its bytes (interrupted copy)", True, subprocess_=True)
def _(base, work):
    def brk(s, f):
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    return _predict_case(base, work, T1, r"truncated or corrupt", brk)


@case("smri-not-gzip", "sMRI", "T1 named .nii.gz but stored uncompressed", True)
def _(base, work):
    def brk(s, f):
        f.write_bytes(gzip.decompress(f.read_bytes()))
    return _predict_case(base, work, T1, r"not gzip-compressed", brk)


@case("smri-empty-file", "sMRI", "T1 file of zero bytes", True)
def _(base, work):
    return _predict_case(base, work, T1, r"file is empty", lambda s, f: f.write_bytes(b""))


@case("smri-not-nifti", "sMRI", "T1 .nii.gz holding gzip-compressed text, not a NIfTI", True)
def _(base, work):
    return _predict_case(base, work, T1, r"not a readable NIfTI",
                         lambda s, f: f.write_bytes(gzip.compress(b"this is not an image\n" * 40)))


@case("smri-2d", "sMRI", "a 2-D \"T1\" (one axial slice)", True)
def _(base, work):
    def brk(s, f):
        data, affine = _t1(s)
        _nifti(data[:, :, 45], affine, f)
    return _predict_case(base, work, T1, r"must be 3-D.*2-D", brk)


@case("smri-5d", "sMRI", "a 5-D \"T1\"", True)
def _(base, work):
    def brk(s, f):
        data, affine = _t1(s)
        _nifti(data[::4, ::4, ::4, None, None].repeat(2, axis=3).repeat(2, axis=4), affine, f)
    return _predict_case(base, work, T1, r"must be 3-D.*5-D", brk)


@case("smri-4d-series", "sMRI", "a 4-D series (3 volumes) given as the T1", True)
def _(base, work):
    def brk(s, f):
        data, affine = _t1(s)
        _nifti(data[::2, ::2, ::2, None].repeat(3, axis=3), affine, f)
    return _predict_case(base, work, T1, r"must be 3-D.*3 volumes", brk)


@case("smri-nan-voxels", "sMRI", "T1 with NaN voxels", True)
def _(base, work):
    def brk(s, f):
        data, affine = _t1(s)
        data[40:44, 50:54, 40:44] = float("nan")
        _nifti(data, affine, f)
    return _predict_case(base, work, T1, r"64 NaN", brk)


@case("smri-inf-voxels", "sMRI", "T1 with infinite voxels", True)
def _(base, work):
    def brk(s, f):
        data, affine = _t1(s)
        data[10, 10, 10:13] = float("inf")
        _nifti(data, affine, f)
    return _predict_case(base, work, T1, r"3 infinite", brk)


@case("smri-constant", "sMRI", "T1 of all zeros (an empty mask saved as the T1)", True)
def _(base, work):
    def brk(s, f):
        data, affine = _t1(s)
        _nifti(data * 0, affine, f)
    return _predict_case(base, work, T1, r"constant", brk)


# ---- fMRI -------------------------------------------------------------------
@case("fmri-bold-3d", "fMRI", "a 3-D image (one volume) given as the BOLD run", True)
def _(base, work):
    def brk(s, f):
        data, affine = _t1(s)
        return _bold_instead_of_table(s, f, data, affine)
    return _predict_case(base, work, BOLD, r"must be 4-D", brk)


@case("fmri-bold-too-few-frames", "fMRI", "a 4-D BOLD run of 10 volumes (the model needs 48)", True)
def _(base, work):
    def brk(s, f):
        import numpy as np

        data, affine = _t1(s)
        small = data[::4, ::4, ::4]
        run = np.stack([small + i for i in range(10)], axis=-1)
        return _bold_instead_of_table(s, f, run, affine @ np.diag([4, 4, 4, 1]))
    return _predict_case(base, work, BOLD, r"too few frames.*10 volumes.*48", brk)


@case("fmri-bold-truncated", "fMRI", "a 4-D BOLD run cut short (interrupted download)", True)
def _(base, work):
    def brk(s, f):
        import numpy as np

        data, affine = _t1(s)
        small = data[::4, ::4, ::4]
        run = np.stack([small + i for i in range(60)], axis=-1).astype(np.float32)
        _bold_instead_of_table(s, f, run, affine @ np.diag([4, 4, 4, 1]))
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 3])
    return _predict_case(base, work, BOLD, r"truncated or corrupt", brk)


@case("fmri-table-too-few-frames", "fMRI", "ROI table of 20 time points (the model needs 48)", True)
def _(base, work):
    def brk(s, f):
        import numpy as np

        np.save(f, np.load(f)[:, :20])
    return _predict_case(base, work, TABLE, r"too few frames: 20 time points.*48", brk)


@case("fmri-table-roi-count", "fMRI", "ROI table of 100 parcels while the atlas has 400", True)
def _(base, work):
    def brk(s, f):
        import numpy as np

        np.save(f, np.load(f)[:100])
    return _predict_case(base, work, TABLE, r"100 parcels.*400", brk)


@case("fmri-table-wrong-atlas", "fMRI", "ROI table whose sidecar names another atlas (AAL)", True)
def _(base, work):
    def brk(s, f):
        side = json.loads(f.read_text())
        side["Atlas"] = side["ParcelOrder"] = "AAL116"
        f.write_text(json.dumps(side))
    return _predict_case(base, work, SIDECAR, r"unsupported atlas 'AAL116'", brk)


@case("fmri-table-no-sidecar", "fMRI", "ROI table without its JSON sidecar", True)
def _(base, work):
    def brk(s, f):
        (s / SIDECAR.format(s=SUBJECT)).unlink()
    return _predict_case(base, work, TABLE, r"needs a JSON sidecar", brk)


@case("fmri-sidecar-not-json", "fMRI", "ROI sidecar that is not JSON", True)
def _(base, work):
    def brk(s, f):
        f.write_text(f.read_text()[:-20])
    return _predict_case(base, work, SIDECAR, r"invalid JSON", brk)


@case("fmri-table-nan", "fMRI", "ROI table with NaN values", True)
def _(base, work):
    def brk(s, f):
        import numpy as np

        a = np.load(f)
        a[7, :5] = np.nan
        np.save(f, a)
    return _predict_case(base, work, TABLE, r"5 NaN", brk)


@case("fmri-table-not-npy", "fMRI", "ROI .npy that is not a NumPy file", True)
def _(base, work):
    return _predict_case(base, work, TABLE, r"not a readable \.npy",
                         lambda s, f: f.write_bytes(b"parcel\ttime\n1\t2\n"))


@case("fmri-table-pickle", "fMRI", "ROI .npy holding a pickled object array (would run code)", True)
def _(base, work):
    def brk(s, f):
        import numpy as np

        np.save(f, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    return _predict_case(base, work, TABLE, r"allow_pickle=False", brk)


# ---- clinical ---------------------------------------------------------------
@case("clinical-note-empty", "clinical", "clinical note that is empty (only blank lines)", True)
def _(base, work):
    return _predict_case(base, work, NOTE, r"clinical note is empty", lambda s, f: f.write_text("\n  \n"))


@case("clinical-note-not-utf8", "clinical", "clinical note saved as Latin-1", True)
def _(base, work):
    return _predict_case(base, work, NOTE, r"not valid UTF-8",
                         lambda s, f: f.write_bytes("Patientin, 74 J., Gedächtnisstörung.\n".encode("latin-1")))


@case("clinical-json-invalid", "clinical", "clinical JSON with a syntax error", True)
def _(base, work):
    return _predict_case(base, work, CLINICAL, r"invalid JSON",
                         lambda s, f: f.write_text(f.read_text().replace(",", "", 1)))


@case("clinical-json-out-of-range", "clinical", "clinical JSON with MMSE 45 (range 0-30)", True)
def _(base, work):
    def brk(s, f):
        d = json.loads(f.read_text())
        d["mmse"] = 45
        f.write_text(json.dumps(d))
    return _predict_case(base, work, CLINICAL, r"'mmse' = 45 is outside", brk)


@case("clinical-json-bad-type", "clinical", "clinical JSON with age given as text", True)
def _(base, work):
    def brk(s, f):
        d = json.loads(f.read_text())
        d["age"] = "seventy"
        f.write_text(json.dumps(d))
    return _predict_case(base, work, CLINICAL, r"'age' must be a number", brk)


@case("clinical-json-not-object", "clinical", "clinical JSON that is a list, not an object", True)
def _(base, work):
    return _predict_case(base, work, CLINICAL, r"must be an object", lambda s, f: f.write_text("[72, 27]"))


# ---- genetics ---------------------------------------------------------------
@case("genetics-apoe-unknown-allele", "genetics", "APOE genotype E5/E9", True)
def _(base, work):
    return _predict_case(base, work, APOE, r"not an APOE genotype: 'E5/E9'", lambda s, f: f.write_text("E5/E9\n"))


@case("genetics-apoe-empty", "genetics", "APOE genotype file with only a comment", True)
def _(base, work):
    return _predict_case(base, work, APOE, r"no genotype line", lambda s, f: f.write_text("# genotype\n"))


@case("genetics-fasta-bad-bases", "genetics", "FASTA with non-ACGTN characters (a protein)", True)
def _(base, work):
    return _predict_case(base, work, "genetics/{s}.fa", r"contains 'M' at position 1", lambda s, f: _replace_genetics(
        s, f.name, b">APOE protein\nMKVLWAALLVTFLAGCQAKVEQAVETEPEPELRQQTEQWQSGQRWELALGRFWDYLRWVQTLSEQVQEELL\n"))


@case("genetics-fasta-empty-sequence", "genetics", "FASTA record of zero length", True)
def _(base, work):
    return _predict_case(base, work, "genetics/{s}.fa", r"record 1 has no sequence",
                         lambda s, f: _replace_genetics(s, f.name, b">empty\n\n"))


@case("genetics-fasta-no-records", "genetics", "FASTA file without any '>' record", True)
def _(base, work):
    return _predict_case(base, work, "genetics/{s}.fasta", r"no FASTA record",
                         lambda s, f: _replace_genetics(s, f.name, b"; comment only\n"))


@case("genetics-vcf-no-apoe", "genetics", "VCF without rs429358 / rs7412", True)
def _(base, work):
    vcf = ("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\n"
           "19\t44905000\trs123\tA\tG\t.\tPASS\t.\tGT\t0/1\n")
    return _predict_case(base, work, "genetics/{s}.vcf", r"neither rs429358.*nor rs7412",
                         lambda s, f: _replace_genetics(s, f.name, vcf.encode()))


@case("genetics-vcf-gz-not-gzip", "genetics", "VCF named .vcf.gz but not compressed", True)
def _(base, work):
    vcf = ("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\n"
           "19\t44908684\trs429358\tT\tC\t.\tPASS\t.\tGT\t0/1\n")
    return _predict_case(base, work, "genetics/{s}.vcf.gz", r"not gzip-compressed",
                         lambda s, f: _replace_genetics(s, f.name, vcf.encode()))


@case("genetics-vcf-bad-genotype", "genetics", "VCF whose APOE genotype is not readable (0/x)", True)
def _(base, work):
    vcf = ("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\n"
           "19\t44908684\trs429358\tT\tC\t.\tPASS\t.\tGT\t0/x\n")
    return _predict_case(base, work, "genetics/{s}.vcf", r"unreadable genotype '0/x'",
                         lambda s, f: _replace_genetics(s, f.name, vcf.encode()))


# ---- cohort -----------------------------------------------------------------
@case("cohort-duplicate-ids", "cohort", "participants.tsv lists sub-003 twice", subprocess_=True)
def _(base, work):
    return _tsv_case(base, work, lambda rows: rows + [rows[3]], r"duplicate participant_id.*sub-003")


@case("cohort-unknown-labels", "cohort", "task NC-PD on a cohort without PD subjects")
def _(base, work):
    return _tsv_case(base, work, lambda rows: rows, r"no participant has diagnosis 'PD'", task="NC-PD")


@case("cohort-missing-folder", "cohort", "participants.tsv lists sub-099, which has no folder")
def _(base, work):
    return _tsv_case(base, work, lambda rows: rows + [["sub-099", "AD", "70", "F"]], r"no subject folder.*sub-099")


@case("cohort-missing-column", "cohort", "participants.tsv without a diagnosis column")
def _(base, work):
    return _tsv_case(base, work, lambda rows: [[r[0]] + r[2:] for r in rows], r"no 'diagnosis' column")


@case("cohort-comma-separated", "cohort", "participants.tsv saved comma-separated")
def _(base, work):
    return _tsv_case(base, work, lambda rows: [[",".join(r)] for r in rows], r"no 'participant_id' column")


@case("cohort-no-participants", "cohort", "participants.tsv with a header only")
def _(base, work):
    return _tsv_case(base, work, lambda rows: rows[:1], r"lists no participants")


@case("cohort-one-class", "cohort", "every participant labelled NC")
def _(base, work):
    return _tsv_case(base, work, lambda rows: rows[:1] + [[r[0], "NC", *r[2:]] for r in rows[1:]],
                     r"no participant has diagnosis 'AD'")


@case("cohort-no-table", "cohort", "cohort folder without participants.tsv")
def _(base, work):
    cohort = _cohort_copy(base, work, with_cache=False)
    (cohort / "participants.tsv").unlink()
    argv, outputs = _train(cohort, work)
    return Setup(argv, [str(cohort / "participants.tsv")], r"has no participants.tsv", outputs, "cohort/participants.tsv")


@case("cohort-bad-subject-file", "cohort", "one subject's T1 is truncated (train stops, names it)")
def _(base, work):
    cohort = _cohort_copy(base, work)
    t1 = cohort / SUBJECT / T1.format(s=SUBJECT)
    t1.write_bytes(t1.read_bytes()[:5000])
    argv, outputs = _train(cohort, work)
    return Setup(argv, [str(t1)], r"truncated or corrupt", outputs, f"cohort/{SUBJECT}/{T1.format(s=SUBJECT)}")


@case("cohort-bad-subject-late", "cohort", "the last NC/AD subject's clinical JSON has MMSE 99 (after progress bars)")
def _(base, work):
    cohort = _cohort_copy(base, work)
    rows = [line.split("\t") for line in (cohort / "participants.tsv").read_text().splitlines()[1:]]
    sid = [r[0] for r in rows if r[1] in ("NC", "AD")][-1]
    clinical = cohort / sid / CLINICAL.format(s=sid)
    clinical.write_text(json.dumps({**json.loads(clinical.read_text()), "mmse": 99}))
    argv, outputs = _train(cohort, work)
    return Setup(argv, [str(clinical)], r"'mmse' = 99 is outside", outputs, f"cohort/{sid}/{CLINICAL.format(s=sid)}",
                 progress_ok=True)


@case("cohort-folder-missing", "cohort", "--cohort names a folder that does not exist")
def _(base, work):
    argv, outputs = _train(work / "no-such-cohort", work)
    return Setup(argv, [str(work / "no-such-cohort")], r"cohort folder not found", outputs, "--cohort")


# ---- bundle -----------------------------------------------------------------
def _bundle_copy(base: Base, work: Path) -> Path:
    assert base.bundle is not None
    dst = work / "bundle"
    shutil.copytree(base.bundle, dst)
    return dst


def _bundle_case(base: Base, work: Path, break_: Callable[[Path], Path], problem: str) -> Setup:
    bundle = _bundle_copy(base, work)
    named = break_(bundle)
    argv = ["predict", "--bundle", str(bundle), "--subject", str(base.subject), "--device", "cpu"]
    return Setup(argv, [str(named)], problem, offending=named.relative_to(work).as_posix())


@case("bundle-missing-file", "bundle", "a weight file listed in bundle.json was deleted", True, subprocess_=True)
def _(base, work):
    def brk(b):
        f = b / "weights" / "fmri.safetensors"
        f.unlink()
        return f
    return _bundle_case(base, work, brk, r"listed in bundle.json is missing")


@case("bundle-hash-mismatch", "bundle", "one byte of a weight file changed", True)
def _(base, work):
    def brk(b):
        f = b / "rounds" / "clinical" / "round.safetensors"
        data = bytearray(f.read_bytes())
        data[-1] ^= 0x01
        f.write_bytes(bytes(data))
        return f
    return _bundle_case(base, work, brk, r"content hash mismatch")


@case("bundle-adapter-swapped", "bundle", "a LoRA adapter replaced by another round's adapter", True)
def _(base, work):
    def brk(b):
        f = b / "rounds" / "smri" / "adapter" / "adapter_model.safetensors"
        shutil.copyfile(b / "rounds" / "genetics" / "adapter" / "adapter_model.safetensors", f)
        return f
    return _bundle_case(base, work, brk, r"content hash mismatch")


def _edit_manifest(b: Path, edit: Callable[[dict], object]) -> Path:
    f = b / "bundle.json"
    d = json.loads(f.read_text())
    edit(d)
    f.write_text(json.dumps(d))
    return f


@case("bundle-format-version", "bundle", "bundle.json of an unknown format version (99)", True)
def _(base, work):
    return _bundle_case(base, work, lambda b: _edit_manifest(b, lambda d: d.update(format_version=99)),
                        r"unknown bundle format version 99")


@case("bundle-json-not-json", "bundle", "bundle.json that is not JSON", True)
def _(base, work):
    def brk(b):
        f = b / "bundle.json"
        f.write_text(f.read_text()[:100])
        return f
    return _bundle_case(base, work, brk, r"unreadable JSON")


@case("bundle-not-anchorad", "bundle", "bundle.json of another tool", True)
def _(base, work):
    def brk(b):
        f = b / "bundle.json"
        f.write_text(json.dumps({"model_type": "bert"}))
        return f
    return _bundle_case(base, work, brk, r"not an AnchorAD bundle")


@case("bundle-no-manifest", "bundle", "bundle folder without bundle.json", True)
def _(base, work):
    def brk(b):
        (b / "bundle.json").unlink()
        return b
    return _bundle_case(base, work, brk, r"missing bundle.json")


@case("bundle-rehashed-garbage", "bundle", "weight file replaced by garbage and its hash updated", True)
def _(base, work):
    from anchorad_core.io_utils import sha256_file

    def brk(b):
        f = b / "weights" / "genetics.safetensors"
        f.write_bytes(b"\x00" * 64)
        _edit_manifest(b, lambda d: d["files"].__setitem__("weights/genetics.safetensors", sha256_file(f)))
        return f
    return _bundle_case(base, work, brk, r"unreadable safetensors")


@case("bundle-folder-missing", "bundle", "--bundle names a folder that does not exist", True)
def _(base, work):
    argv = ["predict", "--bundle", str(work / "no-such-bundle"), "--subject", str(base.subject), "--device", "cpu"]
    return Setup(argv, [str(work / "no-such-bundle")], r"not a bundle folder", offending="--bundle")


# ---- options ----------------------------------------------------------------
@case("report-bad-subject", "options", "report on a subject whose clinical JSON is invalid (no PDF)", True)
def _(base, work):
    setup = _predict_case(base, work, CLINICAL, r"invalid JSON",
                          lambda s, f: f.write_text(f.read_text().replace(",", "", 1)))
    pdf = work / "report.pdf"
    setup.argv = ["report", "--bundle", str(base.bundle), "--subject", str(work / SUBJECT), "--out", str(pdf),
                  "--device", "cpu"]
    setup.outputs = [pdf]
    return setup


@case("explain-bad-subject", "options", "predict --explain on a subject with a 2-D T1 (no maps)", True)
def _(base, work):
    def brk(s, f):
        data, affine = _t1(s)
        _nifti(data[:, 50, :], affine, f)
    maps = work / "explanation"
    setup = _predict_case(base, work, T1, r"must be 3-D", brk, "--explain", str(maps))
    setup.outputs = [maps]
    return setup


@case("subject-folder-missing", "options", "--subject names a folder that does not exist", True)
def _(base, work):
    return Setup(_predict(base, work / "sub-404"), [str(work / "sub-404")], r"subject folder not found",
                 offending="--subject")


@case("subject-folder-empty", "options", "--subject names an empty folder", True)
def _(base, work):
    (work / "sub-000").mkdir()
    return Setup(_predict(base, work / "sub-000"), [str(work / "sub-000")], r"no input file of any modality",
                 offending="--subject")


@case("subject-files-misnamed", "options", "a subject folder whose files do not follow the naming", True)
def _(base, work):
    subject = _subject_copy(base, work)
    for f in list(subject.rglob("*.*")):
        f.rename(f.with_name(f.name.replace(f"{SUBJECT}_", "").replace("_", "-")))
    return Setup(_predict(base, subject), [str(subject)], r"no input file of any modality.*_T1w",
                 offending="--subject")


@case("option-note-file-not-utf8", "options", "--note names a note file saved as Latin-1", True)
def _(base, work):
    note = work / "note.txt"
    note.write_bytes("Patient, 74 y., Ged\xe4chtnis.\n".encode("latin-1"))
    return Setup(_predict(base, base.subject, "--note", str(note)), [str(note)], r"not valid UTF-8",
                 offending="--note")


@case("option-unknown-task", "options", "--task with one label only")
def _(base, work):
    argv, outputs = _train(base.cohort, work, task="AD")
    return Setup(argv, ["--task"], r"cannot read task 'AD'", outputs, "--task")


@case("option-unknown-device", "options", "--device tpu", True)
def _(base, work):
    return Setup(_predict(base, base.subject)[:-2] + ["--device", "tpu"], ["--device", "'tpu'"], r"unknown device",
                 offending="--device")


@case("option-missing-gpu", "options", "--device cuda:99 (no such GPU)", True)
def _(base, work):
    return Setup(_predict(base, base.subject)[:-2] + ["--device", "cuda:99"], ["--device", "'cuda:99'"],
                 r"not available|does not exist", offending="--device")


@case("option-unknown-dtype", "options", "--dtype float8", True)
def _(base, work):
    return Setup(_predict(base, base.subject, "--dtype", "float8"), ["--dtype", "'float8'"], r"unknown dtype",
                 offending="--dtype")


@case("option-unknown-modality", "options", "--modalities smri,pet")
def _(base, work):
    argv, outputs = _train(base.cohort, work, "--modalities", "smri,pet")
    return Setup(argv, ["--modalities"], r"unknown modality 'pet'", outputs, "--modalities")


@case("option-one-modality", "options", "--modalities clinical (nothing to fuse)")
def _(base, work):
    argv, outputs = _train(base.cohort, work, "--modalities", "clinical")
    return Setup(argv, ["--modalities"], r"name at least two", outputs, "--modalities")


@case("option-config-not-json", "options", "--config file that is not JSON")
def _(base, work):
    cfg = work / "config.json"
    cfg.write_text("{epochs: 3}")
    argv, outputs = _train(base.cohort, work, "--config", str(cfg))
    return Setup(argv, [str(cfg)], r"cannot read training config", outputs, "--config")


def _config_case(base: Base, work: Path, edit: Callable[[dict], object], problem: str) -> Setup:
    from anchorad_core.training.config import TrainConfig

    data = TrainConfig.demo(quick=True).to_dict()
    edit(data)
    cfg = work / "config.json"
    cfg.write_text(json.dumps(data))
    argv, outputs = _train(base.cohort, work, "--config", str(cfg))
    return Setup(argv, [str(cfg)], problem, outputs, "--config")


@case("option-config-bad-type", "options", "--config with epochs given as text")
def _(base, work):
    return _config_case(base, work, lambda d: d["phase1"]["smri"].update(epochs="three"),
                        r"phase1.smri.epochs must be an integer")


@case("option-config-bad-value", "options", "--config with a negative query count")
def _(base, work):
    return _config_case(base, work, lambda d: d.update(num_queries=-3), r"num_queries must be >= 0")


@case("option-config-unknown-preset", "options", "--config naming an unknown backbone preset")
def _(base, work):
    return _config_case(base, work, lambda d: d["backbones"].update(smri="brainmvp-huge"),
                        r"unknown backbone preset 'brainmvp-huge'")


@case("option-config-hub-id", "options", "--config naming a hub id with no local copy (offline)")
def _(base, work):
    def edit(d):
        d["backbones"]["clinical"] = {"preset": "minilm-l6", "model_path": "meta-llama/Llama-2-7b-hf"}
    setup = _config_case(base, work, edit, r"not a local folder.*never downloads")
    setup.argv += ["--modalities", "clinical,genetics"]
    setup.names = ["clinical-text model: 'meta-llama/Llama-2-7b-hf'"]  # the model_path value it names
    setup.progress_ok = True  # the subjects are loaded before the backbone is built
    return setup


@case("option-folds", "options", "evaluate --folds 1")
def _(base, work):
    out = work / "results"
    argv = ["evaluate", "--cohort", str(base.cohort), "--task", TASK, "--folds", "1", "--quick", "--out", str(out),
            "--device", "cpu"]
    return Setup(argv, ["--folds"], r"at least 2 folds", [out], "--folds")


@case("option-genetics-override", "options", "--genetics E5/E9 typed on the command line", True)
def _(base, work):
    return Setup(_predict(base, base.subject, "--genetics", "E5/E9"), ["--genetics"], r"not an APOE genotype",
                 offending="--genetics")


@case("option-empty-note", "options", "--note ' ' (a blank note typed on the command line)", True)
def _(base, work):
    return Setup(_predict(base, base.subject, "--note", " "), ["--note"], r"empty", offending="--note")


@case("option-bundle-task", "options", "evaluate --bundle with a task the bundle was not trained for", True)
def _(base, work):
    out = work / "results"
    argv = ["evaluate", "--bundle", str(base.bundle), "--cohort", str(base.cohort), "--task", "NC-MCI",
            "--out", str(out), "--device", "cpu"]
    return Setup(argv, ["--task NC-MCI"], r"trained for NC-AD, not NC-MCI", [out], "--task")


@case("train-out-exists", "options", "train --out onto an existing folder without --force")
def _(base, work):
    argv, outputs = _train(base.cohort, work)
    Path(argv[argv.index("--out") + 1]).mkdir()
    (work / "new-bundle" / "keep.txt").write_text("user data\n")
    return Setup(argv, [str(work / "new-bundle")], r"already exists", outputs[1:], "--out")


@case("demo-cohort-too-small", "options", "demo-cohort --subjects 2")
def _(base, work):
    out = work / "demo"
    return Setup(["demo-cohort", str(out), "--subjects", "2", "--seed", "1"], ["--subjects"], r"at least 4 subjects", [out],
                 "--subjects")


# --------------------------------------------------------------------------- running
@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


def prepare_case(c: Case, base: Base, work: Path) -> Setup:
    """Build case ``c`` in the empty folder ``work``."""
    work.mkdir(parents=True, exist_ok=True)
    return c.make(base, work)


def snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``roots`` -> (size, mtime_ns)."""
    out: dict[str, tuple[int, int]] = {}
    for root in roots:
        if root.is_file():
            st = root.stat()
            out[str(root)] = (st.st_size, st.st_mtime_ns)
            continue
        for p in root.rglob("*") if root.is_dir() else ():
            if p.is_file():
                st = p.stat()
                out[str(p)] = (st.st_size, st.st_mtime_ns)
    return out


def run_inprocess(argv: list[str]) -> Result:
    """``anchorad_core.cli.main(argv)`` with stdout/stderr captured."""
    from anchorad_core.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse
            code = int(exc.code or 0)
    return Result(code, out.getvalue(), err.getvalue())


def run_subprocess(argv: list[str], timeout: float = 600) -> Result:
    """``python -m anchorad_core.cli argv`` in a fresh interpreter."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "anchorad_core.cli", *argv], env=env, capture_output=True,
                          text=True, timeout=timeout)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def check_result(setup: Setup, result: Result, before: dict[str, tuple[int, int]],
                 after: dict[str, tuple[int, int]]) -> list[str]:
    """Problems with a case's outcome (empty = the contract holds)."""
    problems = []
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    if setup.progress_ok:  # progress of the work done before the error: tqdm bars or log lines per stage
        lines = [ln for ln in lines if not re.match(r"^[^:]+:\s+\d+%\|", ln)
                 and not re.match(r"^.+: (started \(\d+ steps\)|done in [0-9.]+ s)$", ln)]
    if result.code != 2:
        problems.append(f"exit status {result.code}, expected 2")
    if "Traceback" in result.stderr or "Traceback" in result.stdout:
        problems.append("a traceback was printed")
    if len(lines) != 1:
        problems.append(f"{len(lines)} lines on stderr, expected 1: {result.stderr[-2000:]!r}")
    line = lines[-1] if lines else ""
    if not line.startswith("anchorad: error: "):
        problems.append(f"the line does not start with 'anchorad: error: ': {line!r}")
    for name in setup.names:
        if name not in line:
            problems.append(f"the line does not name {name!r}: {line!r}")
    if not re.search(setup.problem, line, flags=re.I):
        problems.append(f"the line does not say /{setup.problem}/: {line!r}")
    for out in setup.outputs:
        if out.exists():
            problems.append(f"output {out} was created")
        leftovers = [p.name for p in out.parent.glob(f".{out.name}*")] if out.parent.is_dir() else []
        if leftovers:
            problems.append(f"temporary files left next to {out}: {leftovers}")
    changed = sorted(k for k in before if after.get(k) != before[k])
    new = sorted(k for k in after if k not in before and not _is_cache_entry(k))
    if changed:
        problems.append(f"input files changed: {changed[:5]}")
    if new:
        problems.append(f"files written: {new[:5]}")
    return problems


def _is_cache_entry(path: str) -> bool:
    """A complete preprocessing-cache entry of a GOOD subject (the cache is allowed to fill)."""
    p = Path(path)
    return "anchorad-cache" in p.parts and not p.name.startswith(".") and p.suffix == ".npz"


def execute(c: Case, base: Base, work: Path, runner: "Callable[[list[str]], Result] | None" = None
            ) -> tuple[Setup, Result, list[str]]:
    """Prepare, run and check one case."""
    setup = prepare_case(c, base, work)
    watched = [work, base.cohort] + ([base.bundle] if base.bundle else [])
    before = snapshot(*watched)
    runner = runner or (run_subprocess if c.subprocess else run_inprocess)
    result = runner(setup.argv)
    return setup, result, check_result(setup, result, before, snapshot(*watched))


# --------------------------------------------------------------------------- table / CLI
def _md(text: str) -> str:
    return text.replace("|", "\\|")


def table(base: Base, root: Path, display_root: str = "/data") -> str:
    """Run every case and return the markdown table of the docs."""
    rows = ["| # | input | case | what the user sees (stderr, exit status 2) | nothing written |",
            "|---|---|---|---|---|"]
    for i, c in enumerate(CASES, 1):
        work = root / c.id
        setup, result, problems = execute(c, base, work, run_inprocess)
        line = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "(nothing)"
        for path, shown in ((str(work), f"{display_root}"), (str(base.bundle), f"{display_root}/bundle"),
                            (str(base.cohort), f"{display_root}/cohort")):
            line = line.replace(path, shown)
        written = "yes" if not [p for p in problems if "written" in p or "created" in p or "changed" in p
                                or "temporary" in p] else "**NO**"
        status = "" if not problems else " **(contract broken: " + "; ".join(problems) + ")**"
        rows.append(f"| {i} | {c.group} | {_md(c.what)} (`{c.id}`) | `{_md(line)}`{_md(status)} | {written} |")
    return "\n".join(rows)


def main(argv: "list[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", action="store_true", help="run the corpus and print the markdown table")
    parser.add_argument("--list", action="store_true", help="list the cases")
    parser.add_argument("--out", help="write the corpus (base + one folder per case) here and keep it")
    args = parser.parse_args(argv)
    if args.list:
        for c in CASES:
            print(f"{c.id:32} {c.group:9} {c.what}")
        print(f"{len(CASES)} cases")
        return 0
    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="anchorad-bad-inputs-"))
    try:
        print(f"building the base (demo cohort of {N_SUBJECTS} subjects, 1-epoch demo bundle) in {root}",
              file=sys.stderr)
        base = build_base(root / "base")
        if args.table:
            print(table(base, root / "cases"))
        else:
            for c in CASES:
                setup = prepare_case(c, base, root / "cases" / c.id)
                print(f"{c.id}: anchorad {' '.join(setup.argv)}")
    finally:
        if not args.out:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
