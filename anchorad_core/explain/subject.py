"""Explain one subject: every anchor round's Q-former attention and Integrated Gradients.

:func:`explain_subject` is what the CLI (``anchorad predict --explain OUTDIR``, ``anchorad
report``) and the GUI call; :class:`SubjectExplanation` holds the result and writes it to disk
with :meth:`SubjectExplanation.save`:

``OUTDIR/``
  ``summary.json``                                  diagnosis, per round: target, f(x), f(x'),
                                                    delta, steps, whether the IG bound was met,
                                                    per-modality totals, cross-modal shares, each
                                                    attention block's uniformity (top ROIs /
                                                    words only when not near uniform), files;
                                                    missing modalities
  ``round-<anchor>/attention-<block>_T1w.nii.gz``   sMRI map on the subject's T1 grid
  ``round-<anchor>/attention-<block>_rois.tsv``     fMRI: roi_index, name, network, value
  ``round-<anchor>/attention-<block>_roi-time.tsv`` fMRI: per ROI x time patch
  ``round-<anchor>/attention-<block>_atlas.nii.gz`` fMRI: values painted into the atlas
  ``round-<anchor>/attention-<block>_words.json``   text: one entry per word of the note
  ``round-<anchor>/attention-<block>_bases.json``   genetics: per-base tracks + 6-mer table
  ``round-<anchor>/attention-<block>_queries.npy``  per-query matrix (N_q x keys), heads averaged
  ``round-<anchor>/attention-cross.json``           cross-modal block: shares per modality
  ``round-<anchor>/ig-<modality>_*``                the same file kinds for the IG maps; sMRI:
                                                    ``ig-smri_T1w`` the brain-restricted map
                                                    (per parcel or smoothed), ``_voxels_T1w`` the
                                                    raw voxel map, ``_parcels_rois.tsv`` per parcel

Every file is written to a temporary name and renamed.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.fileio import atomic_path
from ..io_utils import atomic_write_json, atomic_write_text
from ..missing_rule import MISSING_MODALITY_RULE
from ..modality import Modality, keys_to_json
from ..progress import SILENT, Progress
from .attention import NEAR_UNIFORM_RULE, BlockAttention, round_attention
from .attributions import (
    BASELINES_TEXT, DEFAULT_N_STEPS, DELTA_TOLERANCE, MAX_N_STEPS, RoundAttribution, round_attributions,
)
from .maps import BaseMap, ModalityMap, RoiMap, VolumeMap, WordMap, paint_atlas

__all__ = ["RoundExplanation", "SubjectExplanation", "explain_subject", "MISSING_RULE"]

MISSING_RULE = (
    f"{MISSING_MODALITY_RULE[0].upper()}{MISSING_MODALITY_RULE[1:]}; it therefore has no "
    "attention or attribution map."
)


@dataclass
class RoundExplanation:
    """Explanations of one anchor round."""

    anchor: str
    probabilities: dict[str, float]
    weight: float
    attention: dict[str, BlockAttention]
    attribution: RoundAttribution | None
    seconds: float = 0.0


@dataclass
class SubjectExplanation:
    """All anchor rounds' explanations of one subject (see the module docstring for files)."""

    subject_id: str
    labels: list[str]
    target: str
    rounds: list[RoundExplanation]
    modalities_used: list[str]
    modalities_missing: list[str]
    t1_path: str | None = None
    atlas: str = "schaefer400_17n"
    n_steps: int = DEFAULT_N_STEPS
    timings: dict[str, float] = field(default_factory=dict)
    missing_rule: str = MISSING_RULE

    def round(self, anchor: "str | Modality") -> RoundExplanation:
        """The round of ``anchor``."""
        name = Modality.parse(anchor).value
        for r in self.rounds:
            if r.anchor == name:
                return r
        raise KeyError(f"no anchor round for {name}")

    # ------------------------------------------------------------------ saving
    def save(self, outdir: "str | Path") -> Path:
        """Write every map and ``summary.json`` into ``outdir`` (created); returns the summary path."""
        outdir = Path(outdir)
        outdir.mkdir(parents=True, exist_ok=True)
        rounds = []
        for r in self.rounds:
            folder = outdir / f"round-{r.anchor}"
            files: dict[str, list[str]] = {}
            blocks = {}
            for name, block in r.attention.items():
                stem = f"attention-{name}"
                written = []
                if block.map is not None:
                    written += _save_map(block.map, folder, stem, self.atlas)
                else:
                    written.append(_write_json(folder / f"{stem}.json", {
                        "block": name, "shares": block.shares,
                        "query_shares": block.query_shares, "rule": "sum over each auxiliary block's N_q keys",
                    }))
                written.append(_write_npy(folder / f"{stem}_queries.npy", block.per_query.astype(np.float32)))
                files[stem] = [str(Path(p).relative_to(outdir)) for p in written]
                uni = block.uniformity.to_dict() if block.uniformity is not None else {}
                uni["verdict"] = block.uniformity.verdict() if block.uniformity is not None else ""
                if name == "cross":
                    blocks[name] = {"shares": block.shares, "uniformity": uni}
                else:
                    blocks[name] = {**_map_summary(block.map, near_uniform=block.near_uniform), "uniformity": uni}
            ig = None
            if r.attribution is not None:
                a = r.attribution
                ig = {
                    "target": a.target, "f_input": a.output, "f_baseline": a.baseline_output,
                    **a.to_dict(), "convergence": a.convergence_text(), "warning": a.warning or None,
                    "method": a.method, "totals": keys_to_json(a.totals), "seconds": a.seconds, "maps": {},
                }
                for m, mp in a.maps.items():
                    stem = f"ig-{m.value}"
                    written = _save_map(mp, folder, stem, self.atlas)
                    if isinstance(mp, VolumeMap) and mp.voxels is not None:
                        raw = nib_image(mp.voxels, mp.affine)
                        written.append(_write_nifti(folder / f"{stem}_voxels_T1w.nii.gz", raw))
                    if isinstance(mp, VolumeMap) and mp.parcels is not None:
                        written += _save_map(mp.parcels, folder, f"{stem}_parcels", self.atlas)
                    files[stem] = [str(Path(p).relative_to(outdir)) for p in written]
                    ig["maps"][m.value] = _map_summary(mp)
            rounds.append({
                "anchor": r.anchor, "probabilities": r.probabilities, "weight": r.weight,
                "attention": blocks, "integrated_gradients": ig, "files": files, "seconds": r.seconds,
            })
        summary = {
            "subject_id": self.subject_id,
            "labels": self.labels,
            "explained_class": self.target,
            "modalities_used": self.modalities_used,
            "modalities_missing": self.modalities_missing,
            "missing_modality_rule": self.missing_rule,
            "t1": self.t1_path,
            "atlas": self.atlas,
            "attention": "Q-former cross-attention, last layer of each block, mean over heads and queries",
            "attention_uniformity": (
                "per block over its valid keys: normalised entropy H/log(n) (1 = uniform) and max/uniform "
                f"= max weight x n; near uniform when {NEAR_UNIFORM_RULE}: then no top items are listed (no "
                "region stands out)"
            ),
            "attribution": (
                "Captum LayerIntegratedGradients of the round's probability of the explained class; "
                f"{BASELINES_TEXT}; auxiliary inputs through the Q-former with their phase-1 backbones (LoRA off)"
            ),
            "rounds": rounds,
            "timings_s": self.timings,
            "research_use_only": "Research use only; not for clinical diagnosis.",
        }
        return atomic_write_json(outdir / "summary.json", summary)


def _write_json(path: Path, data: Any) -> Path:
    return atomic_write_json(path, data)


def _write_npy(path: Path, array: np.ndarray) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)
    return path


def nib_image(data: np.ndarray, affine: np.ndarray) -> Any:
    """A float32 NIfTI image in mm of ``data`` on ``affine``."""
    import nibabel as nib

    img = nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine)
    img.header.set_xyzt_units("mm")
    return img


def _write_nifti(path: Path, img: Any) -> Path:
    import nibabel as nib

    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return path


def _save_map(mp: ModalityMap, folder: Path, stem: str, atlas: str) -> list[Path]:
    out: list[Path] = []
    if isinstance(mp, VolumeMap):
        out.append(_write_nifti(folder / f"{stem}_T1w.nii.gz", nib_image(mp.data, mp.affine)))
    elif isinstance(mp, RoiMap):
        table = mp.table()
        out.append(atomic_write_text(folder / f"{stem}_rois.tsv", table.to_csv(sep="\t", index=False, float_format="%.6g")))
        rt = table[["roi_index", "name", "network"]].copy()
        for p in range(mp.roi_time.shape[1]):
            rt[f"patch_{p}"] = mp.roi_time[:, p]
        out.append(atomic_write_text(folder / f"{stem}_roi-time.tsv", rt.to_csv(sep="\t", index=False, float_format="%.6g")))
        try:
            out.append(_write_nifti(folder / f"{stem}_atlas.nii.gz", paint_atlas(mp.values, mp.atlas)))
        except ValueError:
            pass  # ROIs do not match the shipped atlas: the TSV is the map
    elif isinstance(mp, WordMap):
        out.append(_write_json(folder / f"{stem}_words.json", {
            "note": mp.note, "special_tokens": mp.special,
            "words": [{"index": i, "word": w.word, "start": w.start, "end": w.end, "score": w.score, "n_tokens": w.n_tokens}
                      for i, w in enumerate(mp.words)],
        }))
    elif isinstance(mp, BaseMap):
        out.append(_write_json(folder / f"{stem}_bases.json", {
            "special_tokens": mp.special,
            "sequences": [{"index": i, "length": int(len(t)), "scores": t} for i, t in enumerate(mp.tracks)],
            "kmers": [{"sequence": k.sequence, "start": k.start, "end": k.end, "kmer": k.kmer, "score": k.score} for k in mp.kmers],
        }))
    return out


def _map_summary(mp: "ModalityMap | None", near_uniform: bool = False) -> dict[str, Any]:
    """Kind, total and the top items of a map; a near-uniform attention map lists none."""
    if mp is None:
        return {}
    if near_uniform:
        return {"kind": mp.kind, "total": mp.total, "top": "none: near uniform, no region stands out"}
    if isinstance(mp, VolumeMap):
        peak = np.unravel_index(int(np.argmax(np.abs(mp.data))), mp.data.shape)
        out = {"kind": "volume", "total": mp.total, "peak_voxel": [int(v) for v in peak],
               "peak_value": float(mp.data[peak])}
        if mp.caption:
            out["shown"] = mp.caption
        if mp.outside_share is not None:
            out["share_dropped"] = mp.outside_share
        if mp.parcels is not None:
            top = mp.parcels.top(5)
            out["top_parcels"] = [{"roi_index": int(r.roi_index), "name": r.name, "network": r.network,
                                   "value": float(r.value)} for r in top.itertuples()]
        return out
    if isinstance(mp, RoiMap):
        top = mp.top(5)
        return {"kind": "roi", "total": mp.total,
                "top_rois": [{"roi_index": int(r.roi_index), "name": r.name, "network": r.network, "value": float(r.value)}
                             for r in top.itertuples()]}
    if isinstance(mp, WordMap):
        order = np.argsort(-np.abs(mp.scores))[:5]
        return {"kind": "words", "total": mp.total, "top_words": [{"word": mp.words[i].word, "score": mp.words[i].score} for i in order]}
    strongest = sorted(mp.kmers, key=lambda k: -abs(k.score))[:5]
    return {"kind": "bases", "total": mp.total,
            "top_kmers": [{"sequence": k.sequence, "start": k.start, "kmer": k.kmer, "score": k.score}
                          for k in strongest]}


# ---------------------------------------------------------------------- entry point
def explain_subject(
    pipeline: Any,
    subject: Any,
    *,
    target: "str | int | None" = None,
    n_steps: int = DEFAULT_N_STEPS,
    internal_batch_size: int | None = None,
    max_steps: int = MAX_N_STEPS,
    tolerance: float = DELTA_TOLERANCE,
    adaptive: bool = True,
    attributions: bool = True,
    auxiliary_attributions: bool = True,
    progress: Progress = SILENT,
    diagnosis: Any = None,
) -> tuple[Any, SubjectExplanation]:
    """Diagnose ``subject`` and explain every anchor round.

    Parameters
    ----------
    pipeline : DiagnosisPipeline
    subject : Subject
        From ``pipeline.load_subject``.
    target : str or int, optional
        Class whose probability IG explains (label or index); default: the aggregated diagnosis.
    n_steps : int
        IG steps per round (Gauss-Legendre) to start from; with ``adaptive`` (default) they are
        doubled up to ``max_steps`` until ``|delta| <= tolerance * |f(x) - f(x')|`` (see
        :func:`.attributions.round_attributions`; each round says whether the bound was met).
    max_steps, tolerance, adaptive : see :func:`.attributions.round_attributions`.
    internal_batch_size : int, optional
        IG interpolation points per forward/backward pass (default
        ``min(n_steps, DEFAULT_INTERNAL_BATCH_SIZE)``, see :func:`.attributions.round_attributions`).
    attributions : bool
        Run Integrated Gradients (``False``: attention only, a fraction of a second).
    auxiliary_attributions : bool
        Also attribute to the auxiliary inputs through the Q-former (default); ``False`` is
        about four times cheaper (anchor input only).
    progress : Progress
        Told ``("explanation", done, total)`` after the diagnosis and after every round; a
        cancel request raises :class:`~anchorad_core.errors.CancelledError` between rounds.
    diagnosis : Diagnosis, optional
        A diagnosis of the same subject made with ``return_outputs=True`` (skips re-running it).

    Returns
    -------
    (Diagnosis, SubjectExplanation)
    """
    import torch

    start = time.perf_counter()
    model = pipeline.model
    if diagnosis is None or not diagnosis.features or any(r.output is None for r in diagnosis.rounds):
        diagnosis = pipeline.diagnose(subject, return_outputs=True)
    labels = list(diagnosis.labels)
    if target is None:
        target_index = labels.index(diagnosis.label)
    elif isinstance(target, str):
        if target not in labels:
            from ..errors import ConfigError

            raise ConfigError(f"unknown target class {target!r}; the bundle's classes are {', '.join(labels)}")
        target_index = labels.index(target)
    else:
        target_index = int(target)
    total = len(diagnosis.rounds) + 1
    progress.update("explanation", 1, total)
    timings = {"diagnosis": time.perf_counter() - start}
    cached = {}
    if attributions and not auxiliary_attributions:
        from ..fusion.qformer import AuxiliaryFeatures

        with torch.no_grad():
            for m, batch in diagnosis.features.items():
                out = model.encode(m, batch)
                cached[m] = AuxiliaryFeatures.of(out)
    rounds = []
    for i, rr in enumerate(diagnosis.rounds):
        t0 = time.perf_counter()
        attention = round_attention(rr.output, rr.anchor, model, subject, diagnosis.features)
        attribution = None
        if attributions:
            attribution = round_attributions(
                model, rr.anchor, subject, diagnosis.features, cached, target=target_index, labels=labels,
                n_steps=n_steps, internal_batch_size=internal_batch_size, auxiliaries=auxiliary_attributions,
                adaptive=adaptive, max_steps=max_steps, tolerance=tolerance,
            )
        seconds = time.perf_counter() - t0
        timings[f"round.{rr.anchor.value}"] = seconds
        rounds.append(RoundExplanation(rr.anchor.value, rr.probabilities, rr.weight, attention, attribution, seconds))
        progress.update("explanation", i + 2, total)
    timings["total"] = time.perf_counter() - start
    explanation = SubjectExplanation(
        subject_id=diagnosis.subject_id,
        labels=labels,
        target=labels[target_index],
        rounds=rounds,
        modalities_used=list(diagnosis.modalities_used),
        modalities_missing=list(diagnosis.modalities_missing),
        t1_path=str(subject.sources.get(Modality.SMRI)) if getattr(subject, "sources", None) and Modality.SMRI in subject.sources else None,
        atlas=str((getattr(subject, "fmri_info", None) or {}).get("atlas") or "schaefer400_17n"),
        n_steps=int(n_steps),
        timings=timings,
    )
    return diagnosis, explanation
