"""The classical baseline a reviewer tries first: logistic regression on summary features.

:func:`summary_features` computes a dozen hand-made features per subject from the same
files and preprocessed inputs the models see:

======== ===================================================================================
sMRI     on the native T1 with the shipped Schaefer-400 atlas (the T1 must be in MNI space,
         as the demo's and Clinica ``t1-linear`` outputs are; the atlas is resampled to the
         T1 grid by its affine): mean intensity of the temporal + default-mode parcels, of the
         medial temporal parcels, each relative to the other cortical parcels; dark
         (CSF-like, < 30 % of white matter) fraction of a central box (ventricles)
fMRI     on the preprocessed ROI series: mean within-default-mode correlation, mean
         default-mode-to-rest correlation, mean correlation of all other ROI pairs
clinical parsed from the note text: MMSE, CDR-SB, number of complaints, age, years of
         education (NaN where the note does not say)
genetics APOE epsilon-4 and epsilon-2 haplotype counts of the DNA
======== ===================================================================================

:class:`ClassicalBaseline` fits ``SimpleImputer → StandardScaler → LogisticRegression`` on
one modality's features or on all of them (training subjects only), the same way in every
fold, so that it can be compared with the learned models on the same splits.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..modality import ALL_MODALITIES, Modality
from ..data.fileio import load_spatial_image

if TYPE_CHECKING:  # inputs imports nothing from here; the annotation only
    from .inputs import CohortInputs

FEATURE_NAMES: dict[Modality, tuple[str, ...]] = {
    Modality.SMRI: ("temporal+DMN / other cortex intensity", "medial temporal / other cortex intensity",
                    "central dark-voxel fraction"),
    Modality.FMRI: ("within-DMN correlation", "DMN-to-rest correlation", "other-pair correlation"),
    Modality.CLINICAL: ("MMSE", "CDR-SB", "complaints", "age", "education"),
    Modality.GENETICS: ("APOE e4 count", "APOE e2 count"),
}


@lru_cache(maxsize=4)
def _atlas_regions(shape: tuple[int, ...], affine_key: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Atlas masks on a T1 grid: (temporal+DMN, medial temporal, other cortex, central box)."""
    import nibabel as nib
    from nilearn.image import resample_to_img

    from ..data.demo import _ATROPHY_AREAS, _ATROPHY_NETWORKS
    from ..data.templates import atlas_image, atlas_labels

    affine = np.frombuffer(affine_key).reshape(4, 4)
    atlas_img = atlas_image()
    if atlas_img.shape[:3] == shape and np.allclose(atlas_img.affine, affine, atol=1e-3):
        atlas = np.asarray(atlas_img.dataobj)
    else:
        target = nib.Nifti1Image(np.zeros(shape, dtype=np.int8), affine)
        atlas = np.asarray(resample_to_img(atlas_img, target, interpolation="nearest",
                                           force_resample=True, copy_header=True).dataobj)
    labels = atlas_labels()
    area = labels["name"].str.split("_").str[3]
    affected = np.isin(atlas, labels["index"][labels["network"].isin(_ATROPHY_NETWORKS) | area.isin(_ATROPHY_AREAS)])
    medial = np.isin(atlas, labels["index"][area.isin(("PHC", "TempPole", "AntTemp"))])
    other = (atlas > 0) & ~affected
    ijk = np.indices(shape, dtype=np.float32)
    xyz = np.tensordot(affine[:3, :3], ijk, axes=1) + affine[:3, 3, None, None, None]
    box = (np.abs(xyz[0]) < 24) & (xyz[1] > -40) & (xyz[1] < 20) & (xyz[2] > -5) & (xyz[2] < 30)
    return affected, medial, other, box


def smri_features(t1_path: "str | Path") -> np.ndarray:
    """The three sMRI summary features of one native T1 file."""
    import nibabel as nib

    img = load_spatial_image(str(t1_path))
    t1 = np.asarray(img.get_fdata(dtype=np.float32))
    affected, medial, other, box = _atlas_regions(t1.shape[:3], np.ascontiguousarray(img.affine, dtype=np.float64).tobytes())
    reference = float(t1[other].mean()) or 1.0
    wm = float(np.percentile(t1[t1 > 0], 90)) if (t1 > 0).any() else 1.0
    return np.array([t1[affected].mean() / reference, t1[medial].mean() / reference,
                     float((t1[box] < 0.3 * wm).mean())], dtype=float)


def fmri_features(series: np.ndarray) -> np.ndarray:
    """Default-mode connectivity summaries of one ``(ROI, T)`` series (Schaefer-400 17-network order)."""
    from ..data.templates import DMN_NETWORKS, atlas_labels

    networks = atlas_labels()["network"]
    if len(networks) != series.shape[0]:
        return np.full(3, np.nan)
    dmn = networks.isin(DMN_NETWORKS).to_numpy()
    r = np.corrcoef(series)
    within = r[np.ix_(dmn, dmn)][np.triu_indices(int(dmn.sum()), 1)].mean()
    between = r[np.ix_(dmn, ~dmn)].mean()
    rest = r[np.ix_(~dmn, ~dmn)][np.triu_indices(int((~dmn).sum()), 1)].mean()
    return np.array([within, between, rest], dtype=float)


def _number(text: str, *patterns: str) -> float:
    """The number captured by the first of ``patterns`` that matches ``text`` (NaN if none)."""
    for pattern in patterns:
        match = re.search(pattern, text, flags=re.IGNORECASE)
        if match:
            return float(match.group(1))
    return np.nan


def clinical_features(text: str) -> np.ndarray:
    """MMSE, CDR-SB, complaint count, age and education parsed from a note."""
    complaints = re.search(r"Complaints(?: \(\d+\))?:\s*(.*?)\.\s*$", text, flags=re.MULTILINE)
    if complaints:
        n = 0.0 if complaints.group(1).strip().lower() == "none" else float(len(complaints.group(1).split(";")))
    else:
        free = re.search(r"reports that the patient (.*?)\.", text)
        n = float(len(free.group(1).split(","))) if free else (0.0 if "No cognitive complaints" in text else np.nan)
    return np.array([
        _number(text, r"MMSE[^0-9]*([0-9]+(?:\.[0-9]+)?)"),
        _number(text, r"CDR-SB[^0-9]*([0-9]+(?:\.[0-9]+)?)"),
        n,
        _number(text, r"Age:\s*([0-9]+)", r"([0-9]+)-year-old"),
        _number(text, r"Education:\s*([0-9]+)", r"([0-9]+) years of education"),
    ], dtype=float)


def genetics_features(sequences: Sequence[str]) -> np.ndarray:
    """APOE epsilon-4 and epsilon-2 counts of a subject's haplotype sequences."""
    from ..data.genetics import apoe_alleles_of

    try:
        alleles = apoe_alleles_of(list(sequences))
    except Exception:  # noqa: BLE001 - a sequence that does not cover APOE has no such feature
        return np.full(2, np.nan)
    return np.array([sum(a == 4 for a in alleles), sum(a == 2 for a in alleles)], dtype=float)


@dataclass
class SummaryFeatures:
    """Per-subject summary features: ``values[m][subject_id]`` is a 1-D array (absent = missing)."""

    values: dict[Modality, dict[str, np.ndarray]] = field(default_factory=dict)

    def matrix(self, modalities: Sequence[Modality], subject_ids: Sequence[str]) -> np.ndarray:
        """``(n, k)`` features of ``modalities`` side by side, NaN where a subject lacks one."""
        blocks = []
        for m in modalities:
            width = len(FEATURE_NAMES[m])
            store = self.values.get(m, {})
            blocks.append(np.stack([store.get(s, np.full(width, np.nan)) for s in subject_ids])
                          if subject_ids else np.zeros((0, width)))
        return np.concatenate(blocks, axis=1)


def summary_features(inputs: "CohortInputs", t1_files: "dict[str, Path] | None" = None) -> SummaryFeatures:
    """Summary features of every subject of a :class:`~anchorad_core.training.inputs.CohortInputs`.

    ``t1_files`` maps subject ids to their native T1 file (the sMRI features are computed on
    it); without it the sMRI features are missing.
    """
    out = SummaryFeatures({m: {} for m in ALL_MODALITIES})
    ids = inputs.subject_ids
    samples = inputs.samples
    for i, sid in enumerate(ids):
        if t1_files and sid in t1_files and samples.get(Modality.SMRI, [None] * len(ids))[i] is not None:
            out.values[Modality.SMRI][sid] = smri_features(t1_files[sid])
        if samples.get(Modality.FMRI) and samples[Modality.FMRI][i] is not None:
            out.values[Modality.FMRI][sid] = fmri_features(np.asarray(samples[Modality.FMRI][i]))
        if samples.get(Modality.CLINICAL) and samples[Modality.CLINICAL][i] is not None:
            out.values[Modality.CLINICAL][sid] = clinical_features(str(samples[Modality.CLINICAL][i]))
        if samples.get(Modality.GENETICS) and samples[Modality.GENETICS][i] is not None:
            out.values[Modality.GENETICS][sid] = genetics_features(samples[Modality.GENETICS][i])
    return out


class ClassicalBaseline:
    """``SimpleImputer → StandardScaler → LogisticRegression`` on summary features.

    Parameters
    ----------
    modalities
        Whose features to use (one modality, or all of them).
    """

    def __init__(self, modalities: Sequence[Modality]) -> None:
        self.modalities = tuple(modalities)
        self.model: Any = None
        self.classes = 0

    def fit(self, features: SummaryFeatures, subject_ids: Sequence[str], labels: np.ndarray) -> "ClassicalBaseline":
        """Fit on the training subjects that have at least one of the features."""
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        x = features.matrix(self.modalities, list(subject_ids))
        keep = ~np.isnan(x).all(axis=1)
        y = np.asarray(labels)[keep]
        self.classes = int(np.max(labels)) + 1 if len(labels) else 2
        if len(np.unique(y)) < 2:  # no features for this modality here: the baseline has no prediction
            self.model = None
            return self
        # keep_empty_features: a feature NaN for every training subject stays (as 0) instead of
        # silently changing the column count between folds
        self.model = make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler(),
                                   LogisticRegression(C=1.0, max_iter=2000))
        self.model.fit(x[keep], y)
        return self

    def predict_proba(self, features: SummaryFeatures, subject_ids: Sequence[str]) -> np.ndarray:
        """``(n, K)`` probabilities; NaN rows for subjects with none of the features."""
        if not self.classes:
            raise RuntimeError("fit the baseline first")
        x = features.matrix(self.modalities, list(subject_ids))
        missing = np.isnan(x).all(axis=1)
        out = np.full((len(x), self.classes), np.nan)
        if self.model is not None and (~missing).any():
            out[~missing] = self.model.predict_proba(x[~missing])
        return out
