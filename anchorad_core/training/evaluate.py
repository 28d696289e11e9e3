"""Evaluation of the anchored method against the paper's baselines, cross-validated.

Rows of the result are ``{"modality", "method", "task", "fold", "n", "acc", "auc", ...}``:

- each modality alone (``uni-modal``, the phase-1 model) and each anchor round alone;
- ``late fusion`` (mean of the uni-modal probabilities of the present modalities);
- the output-level fusions ``concat``, ``linear fusion``, ``self-attention fusion``;
- ``anchored (<rule>)`` for every aggregation rule;
- the query-count ablation ``anchored N_q=<k>`` (phase 2 retrained on the same phase-1 models).
"""
from __future__ import annotations

import copy
import csv
import io
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold, train_test_split

from ..fusion.aggregation import RULES
from ..io_utils import atomic_write_json, atomic_write_text, json_safe
from ..modality import Modality
from ..progress import SILENT, Progress
from .config import TrainConfig
from .inputs import CohortInputs
from .metrics import METRICS, binary_metrics, summarise
from .output_fusion_training import output_fusion_probabilities, train_output_fusion
from .phase2 import anchored_probabilities
from .trainer import TrainingResult, build_model, load_phase1_state, phase1_state, run_phase2, train_anchorad

FUSION_NAMES = {"concat": "concat", "linear": "linear fusion", "self-attention": "self-attention fusion"}


def split_train_val(inputs: CohortInputs, val_fraction: float, seed: int) -> tuple[CohortInputs, CohortInputs]:
    """Stratified split of ``inputs`` into training and validation subjects."""
    index = np.arange(len(inputs))
    stratify = inputs.labels if min(np.bincount(inputs.labels)) >= 2 else None
    train_idx, val_idx = train_test_split(index, test_size=val_fraction, random_state=seed, stratify=stratify)
    return inputs.subset(np.sort(train_idx)), inputs.subset(np.sort(val_idx))


def unimodal_from_cache(result: TrainingResult, inputs: CohortInputs) -> dict[Modality, np.ndarray]:
    """Phase-1 probabilities per modality from the cached pooled features (NaN when missing)."""
    model, cache = result.model, result.cache
    out = {}
    with torch.no_grad():
        for m in model.modalities:
            pooled, present = cache.pooled_batch(m, inputs.subject_ids)
            probs = torch.softmax(model.heads[m.value](pooled.to(model.device)), -1).float().cpu().numpy()
            probs[~present.numpy()] = np.nan
            out[m] = probs
    return out


def late_fusion(unimodal: dict[Modality, np.ndarray]) -> np.ndarray:
    """Mean of the available uni-modal probabilities per subject."""
    stacked = np.stack(list(unimodal.values()))
    with np.errstate(invalid="ignore"):
        fused = np.nanmean(stacked, axis=0)
    return fused


def evaluate_split(
    config: TrainConfig,
    labels: Sequence[str],
    train: CohortInputs,
    val: CohortInputs,
    test: CohortInputs,
    task: str,
    fold: int = 0,
    ablation: Sequence[int] = (0, 4, 16),
    progress: Progress = SILENT,
    device: "torch.device | str" = "cpu",
) -> tuple[list[dict[str, Any]], TrainingResult]:
    """Train everything on ``train``/``val`` and score every method on ``test``."""
    result = train_anchorad(config, labels, train, val, progress, device, extra_cache_inputs=test)
    model, cache = result.model, result.cache
    rows: list[dict[str, Any]] = []

    def add(modality: str, method: str, probs: np.ndarray) -> None:
        rows.append({"modality": modality, "method": method, "task": task, "fold": fold,
                     **binary_metrics(test.labels, probs)})

    unimodal = unimodal_from_cache(result, test)
    for m, probs in unimodal.items():
        add(m.title, "uni-modal", probs)
    add("All", "late fusion", late_fusion(unimodal))
    for method, name in FUSION_NAMES.items():
        fusion = train_output_fusion(method, model.modalities, cache, train, val, len(labels), config.seed)
        add("All", name, output_fusion_probabilities(fusion, model.modalities, cache, test))

    round_probs, present = anchored_probabilities(model, test, cache)
    for r, anchor in enumerate(model.anchors()):
        add(anchor.title, "anchor round", round_probs[r])
    for rule in RULES:
        agg = model.aggregate(torch.as_tensor(np.nan_to_num(round_probs, nan=0.5)), torch.as_tensor(present), rule)
        add("All", f"anchored ({rule})", agg.numpy())

    base = phase1_state(model)
    for n_q in ablation:
        if n_q == config.num_queries:
            agg = model.aggregate(torch.as_tensor(np.nan_to_num(round_probs, nan=0.5)), torch.as_tensor(present))
            add("All", f"anchored N_q={n_q}", agg.numpy())
            continue
        variant = copy.deepcopy(config)
        variant.num_queries = n_q
        clone = build_model(variant, labels, load_weights=False, device=device)
        load_phase1_state(clone, base)
        clone_result = run_phase2(TrainingResult(clone), variant, train, val, cache, progress)
        probs, pres = anchored_probabilities(clone_result.model, test, cache)
        agg = clone.aggregate(torch.as_tensor(np.nan_to_num(probs, nan=0.5)), torch.as_tensor(pres))
        add("All", f"anchored N_q={n_q}", agg.numpy())
    return rows, result


def cross_validate(
    config: TrainConfig,
    inputs: CohortInputs,
    labels: Sequence[str],
    task: str,
    folds: int = 5,
    ablation: Sequence[int] = (0, 4, 16),
    progress: Progress = SILENT,
    device: "torch.device | str" = "cpu",
) -> list[dict[str, Any]]:
    """Stratified ``folds``-fold cross-validation of every method (rows of all folds)."""
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=config.seed)
    rows: list[dict[str, Any]] = []
    for fold, (train_idx, test_idx) in enumerate(splitter.split(np.zeros(len(inputs)), inputs.labels)):
        progress.update(f"cross-validation {task}", fold, folds)
        train, val = split_train_val(inputs.subset(train_idx), config.val_fraction, config.seed + fold)
        fold_rows, _ = evaluate_split(
            config, labels, train, val, inputs.subset(test_idx), task, fold, ablation, progress, device
        )
        rows.extend(fold_rows)
    progress.update(f"cross-validation {task}", folds, folds)
    return rows


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


def results_table(summary: list[dict[str, Any]], metrics: Sequence[str] = ("acc", "auc")) -> str:
    """A text table shaped like the paper's: modality | method | one column per task."""
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
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body)]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths)), line]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in body]
    return "\n".join(out)


def write_results(rows: list[dict[str, Any]], out_dir: Path, extra: "dict[str, Any] | None" = None) -> dict[str, Path]:
    """Write ``results.json`` (per fold + summary) and ``results.csv`` (summary) atomically."""
    out_dir = Path(out_dir)
    summary = summarise_rows(rows)
    paths = {"json": out_dir / "results.json", "csv": out_dir / "results.csv"}
    atomic_write_json(paths["json"], {"folds": rows, "summary": summary, **(extra or {})})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(summary[0].keys()) if summary else [])
    writer.writeheader()
    writer.writerows(json_safe(summary))
    atomic_write_text(paths["csv"], buffer.getvalue())
    return paths
