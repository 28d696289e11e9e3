"""Evaluation of the anchored method against the paper's baselines and a classical one.

Every method is scored on the same held-out subjects of each fold:

- each modality alone (``uni-modal``, the phase-1 model) and each anchor round alone;
- ``classical``: logistic regression on summary features, per modality and for all of
  them (:mod:`.classical`);
- ``late fusion`` (mean of the uni-modal probabilities of the present modalities);
- the output-level fusions ``concat``, ``linear fusion``, ``self-attention fusion``;
- ``anchored (<rule>)`` for every aggregation rule;
- ablations (phase 2 retrained on the same phase-1 models): ``N_q``, the Q-former width,
  the gate, pooling over ``H_a``, in-sample instead of cross-fitted features
  (:func:`parse_variant`).

:func:`cross_validate` runs repeated stratified k-fold CV and keeps every method's
out-of-fold probabilities; :func:`pooled_summary` turns them into one pooled AUC per method
with a DeLong 95 % interval, and :func:`paired_tests` compares the anchored method with the
best uni-modal model, late fusion and the classical baseline on the same subjects.
"""
from __future__ import annotations

import copy
import csv
import io
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..fusion.aggregation import RULES
from ..model import AnchorADModel
from ..io_utils import atomic_write_json, atomic_write_text, json_safe
from ..modality import ALL_MODALITIES, Modality
from ..progress import SILENT, Progress
from .classical import ClassicalBaseline, SummaryFeatures
from .config import TrainConfig
from .inputs import CohortInputs
from .metrics import METRICS, binary_metrics, summarise
from .features import FeatureCache
from .output_fusion_training import output_fusion_probabilities, train_output_fusion
from .phase2 import anchored_probabilities
from .splits import grouped_holdout, grouped_kfold
from .profile import fold_profile, profile_summary, timed
from .statistics import auc_with_ci, paired_delong
from .trainer import (
    TrainingResult, build_model, features_are_fold_independent, frozen_feature_cache, load_phase1_state, phase1_state,
    run_phase2, train_anchorad,
)

FUSION_NAMES = {"concat": "concat", "linear": "linear fusion", "self-attention": "self-attention fusion"}

#: A method's key in the results: (modality column, method name).
MethodKey = tuple[str, str]


def split_train_val(inputs: CohortInputs, val_fraction: float, seed: int) -> tuple[CohortInputs, CohortInputs]:
    """Stratified split of ``inputs`` into training and validation samples, whole participants at a time."""
    train_idx, val_idx = grouped_holdout(inputs.labels, inputs.group_ids, val_fraction, seed)
    return inputs.subset(train_idx), inputs.subset(val_idx)


def unimodal_from_cache(result: TrainingResult, inputs: CohortInputs) -> dict[Modality, np.ndarray]:
    """Phase-1 probabilities per modality from the cached pooled features (NaN when missing)."""
    model, cache = result.model, result.feature_cache()
    out = {}
    with torch.no_grad():
        for m in model.modalities:
            pooled, present = cache.pooled_batch(m, inputs.subject_ids)
            probs = torch.softmax(model.head(m)(pooled.to(model.device)), -1).float().cpu().numpy()
            probs[~present.numpy()] = np.nan
            out[m] = probs
    return out


def late_fusion(unimodal: dict[Modality, np.ndarray]) -> np.ndarray:
    """Mean of the available uni-modal probabilities per subject."""
    stacked = np.stack(list(unimodal.values()))
    with np.errstate(invalid="ignore"):
        fused = np.nanmean(stacked, axis=0)
    return fused


def anchored_by_rule(model: AnchorADModel, round_probs: np.ndarray, present: np.ndarray) -> dict[str, np.ndarray]:
    """``(n, K)`` aggregate of the rounds under every rule the model can apply, and its own rule.

    Keys: ``"<rule>"`` for each of :data:`RULES` (``stacking`` only with a fitted stacker) and
    ``"selected"`` (the model's default rule). Missing rounds' NaN rows count as absent.
    """
    probs, mask = torch.as_tensor(np.nan_to_num(round_probs, nan=0.5)), torch.as_tensor(present)
    out = {rule: model.aggregate(probs, mask, rule).numpy()
           for rule in RULES if rule != "stacking" or model.stacker is not None}
    out["selected"] = model.aggregate(probs, mask).numpy()
    return out


def evaluate_split(
    config: TrainConfig,
    labels: Sequence[str],
    train: CohortInputs,
    val: CohortInputs,
    test: CohortInputs,
    task: str,
    fold: int = 0,
    ablation: "Sequence[str | int]" = (),
    progress: Progress = SILENT,
    device: "torch.device | str" = "cpu",
    features: "SummaryFeatures | None" = None,
    phase1_features: "FeatureCache | None" = None,
) -> tuple[list[dict[str, Any]], dict[MethodKey, np.ndarray], TrainingResult]:
    """Train everything on ``train``/``val`` and score every method on ``test``.

    ``phase1_features``: the frozen backbones' features of all three splits, computed
    beforehand (:func:`~.trainer.frozen_feature_cache`); every method then reads them.
    Returns the per-method metric rows, the per-method test probabilities ``(n_test, K)``
    (NaN rows where a method gives no prediction) and the training result.
    """
    result = train_anchorad(config, labels, train, val, progress, device, extra_cache_inputs=test,
                            features=phase1_features)
    model, cache, seconds = result.model, result.feature_cache(), result.seconds
    rows: list[dict[str, Any]] = []
    predictions: dict[MethodKey, np.ndarray] = {}

    def add(modality: str, method: str, probs: np.ndarray) -> None:
        predictions[(modality, method)] = np.asarray(probs, dtype=float)
        rows.append({"modality": modality, "method": method, "task": task, "fold": fold,
                     **binary_metrics(test.labels, probs)})

    with timed(seconds, "scoring"):
        unimodal = unimodal_from_cache(result, test)
        for m, probs in unimodal.items():
            add(m.title, "uni-modal", probs)
    with timed(seconds, "baselines"):
        if features is not None:
            fit_ids = train.subject_ids + val.subject_ids
            fit_y = np.concatenate([train.labels, val.labels])
            for m in model.modalities:
                baseline = ClassicalBaseline([m]).fit(features, fit_ids, fit_y)
                add(m.title, "classical", baseline.predict_proba(features, test.subject_ids))
            everything = ClassicalBaseline(model.modalities).fit(features, fit_ids, fit_y)
            add("All", "classical", everything.predict_proba(features, test.subject_ids))
        add("All", "late fusion", late_fusion(unimodal))
        for method, name in FUSION_NAMES.items():
            fusion = train_output_fusion(method, model.modalities, cache, train, val, len(labels), config.seed)
            add("All", name, output_fusion_probabilities(fusion, model.modalities, cache, test))

    with timed(seconds, "scoring"):
        round_probs, present = anchored_probabilities(model, test, cache)
        for r, anchor in enumerate(model.anchors()):
            add(anchor.title, "anchor round", round_probs[r])
        by_rule = anchored_by_rule(model, round_probs, present)
        for rule, probs in by_rule.items():
            add("All", f"anchored ({rule})", probs)
        rows[-1]["rule"] = model.aggregation_rule

    with timed(seconds, "ablation"):
        base = phase1_state(model) if ablation else {}
        for variant in ablation:
            name, changes = parse_variant(variant)
            if all(getattr(config, k) == v for k, v in changes.items()):
                add("All", f"anchored {name}", by_rule["selected"])
                continue
            varied = copy.deepcopy(config)
            for key, value in changes.items():
                setattr(varied, key, value)
            clone = build_model(varied, labels, load_weights=False, device=device)
            load_phase1_state(clone, base)
            variant_cache = cache
            if varied.cross_fit_folds < 2 <= config.cross_fit_folds and result.cross_fitted:
                variant_cache = FeatureCache.compute(model, CohortInputs.concat(train, val, test), progress=progress)
            run_phase2(TrainingResult(clone), varied, train, val, variant_cache, progress)
            probs, pres = anchored_probabilities(clone, test, variant_cache)
            agg = clone.aggregate(torch.as_tensor(np.nan_to_num(probs, nan=0.5)), torch.as_tensor(pres))
            add("All", f"anchored {name}", agg.numpy())
    return rows, predictions, result


#: Ablation variants: name -> (row label, config changes). ``nq=K`` and ``width=W`` take a number.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "no-gate": ("without the gate (H_a at full strength)", {"gated": False}),
    "pool-extra": ("pooled over H_a too", {"pool_extra": True}),
    "in-sample": ("with in-sample phase-1 features", {"cross_fit_folds": 0}),
    "readout-keys": ("Q-former reads the readouts too", {"readout_keys": True}),
}


def parse_variant(variant: "str | int") -> tuple[str, dict[str, Any]]:
    """``4`` / ``"nq=4"`` / ``"width=128"`` / a :data:`VARIANTS` name -> (row label, config changes)."""
    from ..errors import ConfigError

    text = str(variant).strip()
    if text.isdigit() or text.startswith("nq="):
        k = int(text.split("=")[-1])
        return f"N_q={k}", {"num_queries": k}
    if text.startswith("width="):
        w = int(text.split("=")[1])
        return f"Q-former width {w}", {"qformer_width": w}
    if text in VARIANTS:
        return VARIANTS[text]
    raise ConfigError(f"unknown ablation variant {text!r}; use nq=K, width=W or one of {', '.join(VARIANTS)}")


@dataclass
class Evaluation:
    """Everything a cross-validation produced for one task.

    Attributes
    ----------
    predictions
        ``(modality, method) -> (repeats, n, K)`` out-of-fold probabilities of every subject
        (NaN where a method gave none).
    rows
        Per-fold metric rows (``repeat`` and ``fold`` say which).
    curves
        Per fold: the training and validation loss curves of every phase-1 model and
        anchored round.
    profile
        Per fold: seconds per part (:func:`~.profile.fold_profile`, with ``task``, ``repeat``
        and ``fold``).
    wall_s
        Wall-clock seconds of the whole cross-validation (cohort-wide preparation included).
    shared_features_s
        Of which computing the phase-1 features once for every fold (frozen backbones; 0 otherwise).
    """

    task: str
    labels: list[str]
    subject_ids: list[str]
    y: np.ndarray
    repeats: int
    default_rule: str
    predictions: dict[MethodKey, np.ndarray] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    curves: list[dict[str, Any]] = field(default_factory=list)
    profile: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0
    shared_features_s: float = 0.0

    def profile_summary(self) -> dict[str, Any]:
        """:func:`~.profile.profile_summary` of this cross-validation alone."""
        return profile_summary(self.profile, self.wall_s, self.shared_features_s)

    def record(self, repeat: int, test_index: np.ndarray, predictions: dict[MethodKey, np.ndarray]) -> None:
        """Store one fold's test probabilities at the subjects' positions."""
        for key, probs in predictions.items():
            if key not in self.predictions:
                self.predictions[key] = np.full((self.repeats, len(self.y), probs.shape[1]), np.nan)
            self.predictions[key][repeat, test_index] = probs

    def pooled(self, key: MethodKey) -> np.ndarray:
        """``(n, K)`` out-of-fold probabilities averaged over repeats."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows (never scored) stay NaN
            return np.nanmean(self.predictions[key], axis=0)


def cross_validate(
    config: TrainConfig,
    inputs: CohortInputs,
    labels: Sequence[str],
    task: str,
    folds: int = 5,
    ablation: "Sequence[str | int]" = (),
    progress: Progress = SILENT,
    device: "torch.device | str" = "cpu",
    repeats: int = 1,
    features: "SummaryFeatures | None" = None,
) -> Evaluation:
    """Repeated stratified ``folds``-fold cross-validation of every method, grouped by participant.

    Repeat ``r`` shuffles with seed ``config.seed + r``; every method sees the same splits,
    and each fold's validation subjects (early stopping, aggregation weights) come from its
    training part only. When no phase 1 changes its backbone
    (:func:`~.trainer.features_are_fold_independent`), the phase-1 features of every subject
    are computed once and every fold, baseline and ablation variant reads them.
    """
    evaluation = Evaluation(task, list(labels), list(inputs.subject_ids), np.asarray(inputs.labels), repeats,
                            "selected" if config.aggregation == "auto" else config.aggregation)
    total = folds * repeats
    wall: dict[str, float] = {}
    with timed(wall, "cross-validation"):
        shared = None
        if features_are_fold_independent(config):
            with timed(wall, "shared features"):
                shared = frozen_feature_cache(config, labels, inputs, progress, device)
        for repeat in range(repeats):
            splits = grouped_kfold(inputs.labels, inputs.group_ids, folds, config.seed + repeat)
            for fold, (train_idx, test_idx) in enumerate(splits):
                progress.update(f"cross-validation {task}", repeat * folds + fold, total)
                fold_wall: dict[str, float] = {}
                with timed(fold_wall, "fold"):
                    train, val = split_train_val(inputs.subset(train_idx), config.val_fraction,
                                                 config.seed + 1000 * repeat + fold)
                    fold_rows, predictions, result = evaluate_split(
                        config, labels, train, val, inputs.subset(test_idx), task, fold, ablation, progress, device,
                        features, shared,
                    )
                    for row in fold_rows:
                        row["repeat"] = repeat
                    evaluation.rows.extend(fold_rows)
                    evaluation.record(repeat, test_idx, predictions)
                    evaluation.curves.append({
                        "repeat": repeat, "fold": fold,
                        "phase1": {m.value: h.to_dict() for m, h in result.phase1.items()},
                        "phase2": {m.value: h.to_dict() for m, h in result.phase2.items()},
                    })
                evaluation.profile.append({"task": task, "repeat": repeat, "fold": fold,
                                           **fold_profile(result.seconds, fold_wall["fold"])})
        progress.update(f"cross-validation {task}", total, total)
    evaluation.wall_s = wall["cross-validation"]
    evaluation.shared_features_s = wall.get("shared features", 0.0)
    return evaluation


def pooled_summary(evaluation: Evaluation) -> list[dict[str, Any]]:
    """One row per method: pooled out-of-fold AUC with its DeLong 95 % CI, ACC, and fold spread."""
    by_method: dict[MethodKey, list[dict[str, Any]]] = {}
    for row in evaluation.rows:
        by_method.setdefault((row["modality"], row["method"]), []).append(row)
    out = []
    for key in evaluation.predictions:
        probs = evaluation.pooled(key)
        ci = auc_with_ci(evaluation.y, probs[:, 1])
        metrics = binary_metrics(evaluation.y, probs)
        spread = summarise(by_method.get(key, []))
        out.append({
            "task": evaluation.task, "modality": key[0], "method": key[1], "n": metrics["n"],
            "auc": ci.auc, "auc_low": ci.low, "auc_high": ci.high,
            **{m: metrics[m] for m in METRICS if m != "auc"},
            "fold_auc_mean": spread["auc"]["mean"], "fold_auc_sd": spread["auc"]["sd"],
            "folds": len(by_method.get(key, [])),
        })
    return out


def paired_tests(evaluation: Evaluation) -> list[dict[str, Any]]:
    """DeLong tests of the anchored method (the bundle's default rule) against its rivals.

    Rivals: the best uni-modal model (highest pooled AUC), late fusion, and the classical
    all-modality baseline, each on the subjects both methods scored.
    """
    anchored = ("All", f"anchored ({evaluation.default_rule})")
    if anchored not in evaluation.predictions:
        return []
    y = evaluation.y
    rivals: list[tuple[str, MethodKey]] = []
    unimodal = [k for k in evaluation.predictions if k[1] == "uni-modal"]
    if unimodal:
        best = max(unimodal, key=lambda k: np.nan_to_num(auc_with_ci(y, evaluation.pooled(k)[:, 1]).auc, nan=-1))
        rivals.append((f"best uni-modal ({best[0]})", best))
    for name, key in (("late fusion", ("All", "late fusion")), ("classical (all)", ("All", "classical"))):
        if key in evaluation.predictions:
            rivals.append((name, key))
    out = []
    for name, key in rivals:
        test = paired_delong(y, evaluation.pooled(anchored)[:, 1], evaluation.pooled(key)[:, 1],
                             a=anchored[1], b=name)
        out.append({"task": evaluation.task, **test.__dict__, "text": test.text()})
    return out


def summarise_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (task, modality, method) with ``<metric>_mean`` / ``<metric>_sd`` over folds."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["task"], row["modality"], row["method"]), []).append(row)
    summary = []
    for (task, modality, method), members in groups.items():
        stats = summarise(members)
        entry: dict[str, Any] = {"task": task, "modality": modality, "method": method,
                                 "folds": len(members), "n": int(sum(r["n"] for r in members))}
        for metric in METRICS:
            entry[f"{metric}_mean"] = stats[metric]["mean"]
            entry[f"{metric}_sd"] = stats[metric]["sd"]
        summary.append(entry)
    return summary


def _table(header: list[str], body: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in body]
    return "\n".join(out)


def results_table(summary: list[dict[str, Any]], metrics: Sequence[str] = ("acc", "auc")) -> str:
    """A text table shaped like the paper's: modality | method | one column per task (fold mean ± sd)."""
    tasks = list(dict.fromkeys(r["task"] for r in summary))
    keys = list(dict.fromkeys((r["modality"], r["method"]) for r in summary))
    cell = {(r["task"], r["modality"], r["method"]): r for r in summary}

    def fmt(r: dict[str, Any] | None) -> str:
        if r is None:
            return "—"
        parts = []
        for metric in metrics:
            mean, sd = r[f"{metric}_mean"], r[f"{metric}_sd"]
            if math.isnan(mean):
                parts.append("n/a")
            elif r["folds"] > 1:
                parts.append(f"{mean:.3f}±{sd:.3f}")
            else:
                parts.append(f"{mean:.3f}")
        return " / ".join(parts)

    header = ["Modality", "Method"] + [f"{t} ({' / '.join(m.upper() for m in metrics)})" for t in tasks]
    body = [[mod, meth] + [fmt(cell.get((t, mod, meth))) for t in tasks] for mod, meth in keys]
    return _table(header, body)


def _method_order(key: tuple[str, str]) -> tuple[int, int, str]:
    modality, method = key
    kinds = ["uni-modal", "classical", "anchor round", "late fusion", "concat", "linear fusion",
             "self-attention fusion"]
    kind = kinds.index(method) if method in kinds else len(kinds)
    titles = [m.title for m in ALL_MODALITIES] + ["All"]
    return kind, titles.index(modality) if modality in titles else len(titles), method


def pooled_table(summary: list[dict[str, Any]], tests: Sequence[dict[str, Any]] = ()) -> str:
    """Pooled out-of-fold AUC [95 % CI] and ACC per method and task, then the paired tests."""
    tasks = list(dict.fromkeys(r["task"] for r in summary))
    keys = sorted(dict.fromkeys((r["modality"], r["method"]) for r in summary), key=_method_order)
    cell = {(r["task"], r["modality"], r["method"]): r for r in summary}

    def fmt(r: dict[str, Any] | None) -> str:
        if r is None or math.isnan(r["auc"]):
            return "—"
        return f"{r['auc']:.3f} [{r['auc_low']:.3f}, {r['auc_high']:.3f}] / {r['acc']:.3f}"

    header = ["Modality", "Method"] + [f"{t}: AUC [95% CI] / ACC" for t in tasks]
    body = [[mod, meth] + [fmt(cell.get((t, mod, meth))) for t in tasks] for mod, meth in keys]
    text = _table(header, body)
    if tests:
        text += "\n\nPaired DeLong tests (pooled out-of-fold AUC, same subjects):\n"
        text += "\n".join(f"  {t['task']}: {t['text']}" for t in tests)
    return text


def plot_curves(curves: Sequence[dict[str, Any]], path: Path) -> Path:
    """Training (solid) and validation (dashed) loss of every model, one panel per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(phase, m) for c in curves for phase in ("phase1", "phase2") for m in c.get(phase, {})})
    cols = max(1, min(4, len(panels)))
    rows = max(1, math.ceil(len(panels) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for ax, (phase, m) in zip(axes.ravel(), panels):
        for i, c in enumerate(curves):
            h = c.get(phase, {}).get(m)
            if not h:
                continue
            ax.plot(h["train_loss"], color=f"C{i % 10}", lw=1)
            ax.plot(h["val_loss"], color=f"C{i % 10}", lw=1, ls="--")
        ax.set_title(f"{'phase 1' if phase == 'phase1' else 'anchor round'} · {m}", fontsize=8)
        ax.set_xlabel("epoch", fontsize=7)
        ax.set_ylabel("cross-entropy", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    fig.suptitle("training (solid) and validation (dashed) loss, one colour per fold", fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".part.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def write_results(evaluations: "Sequence[Evaluation] | list[dict[str, Any]]", out_dir: Path,
                  extra: "dict[str, Any] | None" = None) -> dict[str, Path]:
    """Write ``results.json``, ``results.csv`` (pooled summary) and ``training_curves.png`` atomically.

    Accepts evaluations, or plain metric rows (``evaluate --bundle``: no CV, no curves).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "results.json", "csv": out_dir / "results.csv"}
    evals = [e for e in evaluations if isinstance(e, Evaluation)]
    if evals:
        rows = [r for e in evals for r in e.rows]
        summary = [r for e in evals for r in pooled_summary(e)]
        tests = [t for e in evals for t in paired_tests(e)]
        curves = [{"task": e.task, **c} for e in evals for c in e.curves]
        oof = {e.task: {"subject_ids": e.subject_ids, "labels": e.y.tolist(),
                        "methods": {f"{k[0]} | {k[1]}": e.pooled(k)[:, 1].tolist() for k in e.predictions}}
               for e in evals}
        folds = [f for e in evals for f in e.profile]  # none for a single split (the demo)
        profile = {"profile": profile_summary(folds, sum(e.wall_s for e in evals),
                                              sum(e.shared_features_s for e in evals))} if folds else {}
        payload = {"summary": summary, "paired_tests": tests, "folds": rows, "curves": curves,
                   "out_of_fold": oof, **profile, **(extra or {})}
        if curves:
            paths["curves"] = plot_curves(curves, out_dir / "training_curves.png")
    else:
        rows = [r for r in evaluations if isinstance(r, dict)]
        summary = summarise_rows(rows)
        payload = {"folds": rows, "summary": summary, **(extra or {})}
    atomic_write_json(paths["json"], payload)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(summary[0].keys()) if summary else [])
    writer.writeheader()
    writer.writerows(json_safe(summary))
    atomic_write_text(paths["csv"], buffer.getvalue())
    return paths
