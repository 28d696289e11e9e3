"""Quick check that a demo cohort carries the designed signal (not a model, not a test).

:func:`check_demo_signal` computes one or two simple summary features per modality and
reports the cross-validated AUC of a logistic regression on each modality alone and on all
of them together:

* sMRI: mean T1 intensity in the atrophy parcels (temporal + default mode) relative to the
  other cortical parcels, and the fraction of dark (CSF-like) voxels in the central brain
  (ventricles), both on the native T1 with the shipped atlas;
* fMRI: mean within-DMN and DMN-to-rest correlation of the preprocessed ROI series;
* clinical: MMSE, CDR-SB and the number of complaints parsed from the rendered note;
* genetics: number of APOE epsilon-4 and epsilon-2 haplotypes.

Run ``python -m anchorad_core.data.signal_check COHORT [TASK]``.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..modality import Modality
from .cohort import load_cohort
from .config import PreprocessConfig
from .genetics import apoe_alleles_of
from .task import Task
from .templates import DMN_NETWORKS, atlas_image, atlas_labels
from .fileio import load_spatial_image

__all__ = ["check_demo_signal", "summary_features"]


def _smri_features(path: str) -> list[float]:
    from .demo import _ATROPHY_AREAS, _ATROPHY_NETWORKS

    t1 = np.asarray(load_spatial_image(path).get_fdata(dtype=np.float32))
    atlas = np.asarray(atlas_image().dataobj)
    labels = atlas_labels()
    area = labels["name"].str.split("_").str[3]
    chosen = labels["index"][(labels["network"].isin(_ATROPHY_NETWORKS)) | area.isin(_ATROPHY_AREAS)].to_numpy()
    affected = np.isin(atlas, chosen)
    other = (atlas > 0) & ~affected
    ratio = float(t1[affected].mean() / t1[other].mean())
    wm = float(np.percentile(t1[t1 > 0], 90))
    c = np.array(t1.shape) // 2
    box = t1[c[0] - 12 : c[0] + 12, c[1] - 15 : c[1] + 15, c[2] - 2 : c[2] + 14]
    vent = float((box < 0.3 * wm).mean())
    return [ratio, vent]


def _fmri_features(x: np.ndarray) -> list[float]:
    dmn = atlas_labels()["network"].isin(DMN_NETWORKS).to_numpy()
    r = np.corrcoef(x)
    within = r[np.ix_(dmn, dmn)][np.triu_indices(int(dmn.sum()), 1)].mean()
    between = r[np.ix_(dmn, ~dmn)].mean()
    return [float(within), float(between)]


def _clinical_features(text: str) -> list[float]:
    mmse = re.search(r"MMSE[^0-9]*([0-9]+(?:\.[0-9]+)?)", text)
    cdr = re.search(r"CDR-SB:\s*([0-9]+(?:\.[0-9]+)?)", text)
    compl = re.search(r"Complaints(?: \(\d+\))?:\s*(.*)\.", text)
    n = 0.0 if not compl or compl.group(1).strip() == "none" else float(len(compl.group(1).split(";")))
    return [float(mmse.group(1)) if mmse else np.nan, float(cdr.group(1)) if cdr else np.nan, n]


def _genetics_features(seqs: list[str]) -> list[float]:
    alleles = apoe_alleles_of(seqs)
    return [float(sum(a == 4 for a in alleles)), float(sum(a == 2 for a in alleles))]


def summary_features(root: "str | Path", config: PreprocessConfig | None = None) -> dict[str, Any]:
    """Per-subject summary features of a cohort: ``{"ids": [...], modality: (n, k) array with NaN rows for missing}``."""
    cohort = load_cohort(root)
    ids = cohort.ids
    subjects = cohort.load_subjects(ids, config, modalities=[Modality.FMRI, Modality.CLINICAL, Modality.GENETICS])
    feats: dict[str, list[list[float]]] = {m.value: [] for m in Modality}
    from .subject import find_subject_files

    for pid, subj in zip(ids, subjects):
        t1 = find_subject_files(cohort.subject_folder(pid)).smri
        feats["smri"].append(_smri_features(str(t1)) if t1 else [np.nan] * 2)
        feats["fmri"].append(_fmri_features(subj.fmri) if subj.fmri is not None else [np.nan] * 2)
        feats["clinical"].append(_clinical_features(subj.clinical) if subj.clinical else [np.nan] * 3)
        feats["genetics"].append(_genetics_features(subj.genetics) if subj.genetics else [np.nan] * 2)
    out: dict[str, Any] = {"ids": ids, "cohort": cohort}
    out.update({k: np.asarray(v, dtype=float) for k, v in feats.items()})
    return out


def _cv_auc(x: np.ndarray, y: np.ndarray, seed: int = 0) -> float:
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(SimpleImputer(), StandardScaler(), LogisticRegression(max_iter=1000))
    cv = StratifiedKFold(5, shuffle=True, random_state=seed)
    p = cross_val_predict(model, x, y, cv=cv, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, p))


def check_demo_signal(
    root: "str | Path", tasks: tuple[str, ...] = ("NC-AD", "NC-MCI", "sMCI-pMCI"), features: dict[str, Any] | None = None
) -> dict[str, dict[str, float]]:
    """Cross-validated AUC per modality and fused, for each task.

    Returns
    -------
    dict
        task -> {modality or "fused" -> AUC}
    """
    f = features or summary_features(root)
    cohort = f["cohort"]
    index = {pid: i for i, pid in enumerate(f["ids"])}
    result: dict[str, dict[str, float]] = {}
    for task in tasks:
        ids, y = cohort.task_subjects(Task.parse(task))
        rows = np.array([index[i] for i in ids])
        res: dict[str, float] = {}
        for m in Modality:
            x = f[m.value][rows]
            keep = ~np.isnan(x).all(axis=1)
            res[m.value] = _cv_auc(x[keep], y[keep])
        x_all = np.concatenate([f[m.value][rows] for m in Modality], axis=1)
        res["fused"] = _cv_auc(x_all, y)
        result[task] = res
    return result


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m anchorad_core.data.signal_check COHORT [TASK ...]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print(__doc__)
        return 2
    tasks = tuple(argv[1:]) or ("NC-AD", "NC-MCI", "sMCI-pMCI")
    res = check_demo_signal(argv[0], tasks)
    names = ["smri", "fmri", "clinical", "genetics", "fused"]
    print("task        " + "  ".join(f"{n:>8}" for n in names))
    for task, r in res.items():
        print(f"{task:<11} " + "  ".join(f"{r[n]:8.3f}" for n in names))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
