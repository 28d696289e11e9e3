"""The jobs the CLI (and the GUI) run: train, evaluate, predict, the demo. Thin glue over the core."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence


from .bundle import Provenance, load_bundle, save_bundle
from .data import PreprocessConfig, Task, load_cohort
from .data.cohort import Cohort, default_cache_dir
from .data.note_fields import note_field_summary
from .device import resolve_device
from .errors import InputDataError
from .modality import Modality
from .progress import SILENT, Progress
from .training.config import TrainConfig
from .training.classical import SummaryFeatures, summary_features
from .training.evaluate import (
    Evaluation,
    anchored_by_rule,
    cross_validate,
    evaluate_split,
    late_fusion,
    split_train_val,
    unimodal_from_cache,
)
from .training.features import FeatureCache
from .training.inputs import CohortInputs
from .training.metrics import binary_metrics
from .training.phase2 import anchored_probabilities
from .training.splits import grouped_holdout
from .training.trainer import TrainingResult, train_anchorad

if TYPE_CHECKING:
    from .explain.subject import SubjectExplanation
    from .inference import Diagnosis, DiagnosisPipeline

SYNTHETIC_NOTE = (
    "Subjects are SYNTHETIC (AnchorAD demo cohort): images, ROI series, notes and genotypes were "
    "generated on real templates (a real T1, the Schaefer-400 atlas, real HCP group connectivity, "
    "the real APOE reference). No real patient is represented."
)


def cohort_provenance(cohort: Cohort) -> Provenance:
    """Describe the training data of a cohort (synthetic demo or user data)."""
    description = cohort.root / "dataset_description.json"
    name = str(cohort.root)
    synthetic = False
    if description.is_file():
        try:
            meta = json.loads(description.read_text(encoding="utf-8"))
            name = meta.get("Name", name)
            synthetic = "SYNTHETIC" in str(meta.get("Name", "")).upper()
        except (json.JSONDecodeError, UnicodeDecodeError):
            pass
    notes = [SYNTHETIC_NOTE] if synthetic else []
    return Provenance(training_data=name, synthetic_data=synthetic, notes=notes)


def load_task_samples(
    cohort_root: "str | Path",
    task: "str | Task",
    preprocess: PreprocessConfig,
    progress: Progress = SILENT,
    labels: "str | Path | None" = None,
) -> tuple[Cohort, Task, list[Any], CohortInputs]:
    """Load and preprocess every sample of ``task`` in a cohort: the subjects and their inputs.

    ``labels`` is a ClinicaDL-style label table (default: ``participants.tsv``); the inputs'
    groups are the samples' participants.
    """
    cohort = load_cohort(cohort_root, labels)
    task = Task.parse(task)
    ids, targets = cohort.task_subjects(task)
    if len(set(targets.tolist())) < 2:
        raise InputDataError(f"task {task.name} needs subjects of both classes; found {len(ids)} subjects", cohort.tsv)
    subjects = cohort.load_subjects(
        ids, preprocess,
        progress=progress, stage=f"loading {task.name} subjects",
        cache_dir=default_cache_dir(cohort.root),
        workers=2,
    )
    return cohort, task, subjects, CohortInputs.from_subjects(subjects, targets, cohort.groups(ids))


def load_task_inputs(
    cohort_root: "str | Path",
    task: "str | Task",
    preprocess: PreprocessConfig,
    modalities: Sequence[Modality] | None = None,
    progress: Progress = SILENT,
    labels: "str | Path | None" = None,
) -> tuple[Cohort, Task, CohortInputs]:
    """Load and preprocess every sample of ``task`` in a cohort (see :func:`load_task_samples`)."""
    cohort, task, _, inputs = load_task_samples(cohort_root, task, preprocess, progress, labels)
    if modalities is not None:
        inputs = inputs.restricted(modalities)
    return cohort, task, inputs


def train_bundle(
    cohort_root: "str | Path",
    task: str,
    out: "str | Path",
    config: TrainConfig,
    progress: Progress = SILENT,
    device: str = "auto",
    force: bool = False,
    resume: bool = False,
    run_dir: "str | Path | None" = None,
    labels: "str | Path | None" = None,
) -> tuple[Path, TrainingResult]:
    """Train on a cohort (with a validation split for early stopping) and write a bundle.

    ``labels``: a ClinicaDL-style label table (one sample per session; default
    ``participants.tsv``). The validation split keeps each participant on one side; the
    bundle records what the clinical notes contained (``note_fields``).

    Progress is checkpointed in ``run_dir`` (default ``<out>.run``) after every epoch, so a
    run killed at any point continues with ``resume=True``; the folder is removed once the
    bundle is written. Under ``accelerate launch`` the work is data-parallel across processes
    and only the main process writes the bundle.
    """
    import shutil

    from .errors import BundleError
    from .training.run_state import RunState

    out = Path(out)
    if out.exists() and not force:
        raise BundleError("already exists (use --force to replace it)", out)
    accelerator = distributed_accelerator(device)
    preprocess = PreprocessConfig.from_dict(config.preprocess)
    cohort, task_, subjects, inputs = load_task_samples(cohort_root, task, preprocess, progress, labels)
    notes = note_field_summary(subjects, preprocess.clinical_exclude) \
        if Modality.CLINICAL in config.modalities else None
    del subjects
    inputs = inputs.restricted(config.modalities)
    train, val = split_train_val(inputs, config.val_fraction, config.seed)
    run_path = Path(run_dir) if run_dir is not None else out.with_name(out.name + ".run")
    fingerprint = {"config": config.to_dict(), "task": task_.name, "train": train.subject_ids,
                   "val": val.subject_ids, "world": accelerator.num_processes if accelerator else 1}
    run = RunState(run_path, fingerprint, resume=resume,
                   writer=accelerator is None or accelerator.is_main_process)
    target = accelerator.device if accelerator is not None else resolve_device(device)
    result = train_anchorad(config, list(task_.classes), train, val, progress, target, run=run,
                            accelerator=accelerator)
    if accelerator is not None and not accelerator.is_main_process:
        accelerator.wait_for_everyone()
        return out, result
    path = save_bundle(
        result.model, config, out, cohort_provenance(cohort),
        extra={"task": task_.name, "training_subjects": len(train), "validation_subjects": len(val),
               "training_participants": len(set(train.group_ids) | set(val.group_ids)),
               **({"note_fields": notes} if notes is not None else {})},
        overwrite=force,
    )
    shutil.rmtree(run_path, ignore_errors=True)
    if accelerator is not None:
        accelerator.wait_for_everyone()
    return path, result


def distributed_accelerator(device: str = "auto") -> Any:
    """An ``accelerate.Accelerator`` when launched with several processes, else ``None``."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import Accelerator

    return Accelerator(cpu=(device == "cpu"))


def cohort_summary_features(cohort: Cohort, inputs: CohortInputs, progress: Progress = SILENT) -> SummaryFeatures:
    """The classical baseline's summary features of ``inputs`` (sMRI ones from each native T1)."""
    from .data.subject import find_subject_files

    progress.update("summary features", 0, 1)
    t1_files = {}
    for sid in inputs.subject_ids:
        t1 = find_subject_files(cohort.subject_folder(sid)).smri
        if t1 is not None:
            t1_files[sid] = t1
    features = summary_features(inputs, t1_files)
    progress.update("summary features", 1, 1)
    return features


def evaluate_cohort(
    cohort_root: "str | Path",
    tasks: Sequence[str],
    config: TrainConfig,
    folds: int = 5,
    ablation: "Sequence[str | int]" = (),
    progress: Progress = SILENT,
    device: str = "auto",
    repeats: int = 1,
    labels: "str | Path | None" = None,
) -> list[Evaluation]:
    """Repeated stratified cross-validation of every method (the classical baseline included) per task.

    Folds are grouped by participant (``labels``: a ClinicaDL-style label table, one sample
    per session; default ``participants.tsv``).
    """
    preprocess = PreprocessConfig.from_dict(config.preprocess)
    evaluations = []
    for task in tasks:
        cohort, task_, inputs = load_task_inputs(cohort_root, task, preprocess, config.modalities, progress, labels)
        features = cohort_summary_features(cohort, inputs, progress)
        evaluations.append(cross_validate(config, inputs, list(task_.classes), task_.name, folds, ablation,
                                          progress, resolve_device(device), repeats=repeats, features=features))
    return evaluations


def evaluate_bundle(
    bundle_path: "str | Path",
    cohort_root: "str | Path",
    task: str,
    progress: Progress = SILENT,
    device: str = "auto",
    labels: "str | Path | None" = None,
) -> list[dict[str, Any]]:
    """Score a trained bundle on another cohort (cross-dataset test; modalities may be absent)."""
    bundle = load_bundle(bundle_path, device=resolve_device(device))
    task_ = Task.parse(task)
    if list(task_.classes) != bundle.labels:
        from .errors import ConfigError

        raise ConfigError(f"bundle was trained for {'-'.join(bundle.labels)}, not {task_.name}")
    preprocess = PreprocessConfig.from_dict(bundle.config.preprocess)
    _, _, inputs = load_task_inputs(cohort_root, task_, preprocess, bundle.model.modalities, progress, labels)
    cache = FeatureCache.compute(bundle.model, inputs, progress=progress)
    result = TrainingResult(bundle.model, cache=cache)
    rows = []

    def add(modality: str, method: str, probs: Any) -> None:
        rows.append({"modality": modality, "method": method, "task": task_.name, "fold": 0,
                     **binary_metrics(inputs.labels, probs)})

    unimodal = unimodal_from_cache(result, inputs)
    for m, probs in unimodal.items():
        add(m.title, "uni-modal", probs)
    add("All", "late fusion", late_fusion(unimodal))
    probs, present = anchored_probabilities(bundle.model, inputs, cache)
    for r, anchor in enumerate(bundle.model.anchors()):
        add(anchor.title, "anchor round", probs[r])
    for rule, aggregated in anchored_by_rule(bundle.model, probs, present).items():
        add("All", f"anchored ({rule})", aggregated)
    return rows


def report_subject(
    pipeline: "DiagnosisPipeline",
    subject_dir: "str | Path",
    out_path: "str | Path",
    force: bool = False,
    n_steps: int | None = None,
    progress: Progress | None = None,
    explain_dir: "str | Path | None" = None,
    max_steps: int | None = None,
) -> "tuple[Diagnosis, SubjectExplanation, Path]":
    """Diagnose and explain a subject folder and write its report (``anchorad report``), through a :class:`Session`.

    Checks ``out_path`` before the (slow) explanation. Returns ``(diagnosis, explanation, path)``;
    with ``explain_dir`` the maps are also saved there. IG steps start at ``n_steps`` and are
    doubled up to ``max_steps`` until the convergence bound is met (the core's defaults).
    """
    from .explain.attributions import DEFAULT_N_STEPS, MAX_N_STEPS
    from .progress import drive
    from .report.writer import check_writable
    from .session import Session

    progress = progress or SILENT
    out_path = check_writable(out_path, force)
    session = Session()
    session.use_pipeline(pipeline)
    session.open_subject(subject_dir, preview=False)
    session.read_inputs()  # errors in the subject's files before any progress
    result = drive(session.diagnose(), progress)
    explanation = drive(session.explain(n_steps or DEFAULT_N_STEPS, max_steps or MAX_N_STEPS), progress)
    if explain_dir is not None:
        explanation.save(explain_dir)
    path = drive(session.write_report(out_path, force=force), progress)
    return result.diagnosis, explanation, path


@dataclass
class DemoOutputs:
    """Where the demo put its results."""

    root: Path
    cohort: Path
    bundle: Path
    results: dict[str, Path]
    table: str
    prediction: dict[str, Any]
    report: Path | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def run_demo(
    root: "str | Path",
    n_subjects: int = 200,
    seed: int = 0,
    task: str = "NC-AD",
    quick: bool = False,
    ablation: Sequence[int] = (),
    progress: Progress = SILENT,
    device: str = "auto",
    report_steps: int = 8,
) -> DemoOutputs:
    """Build a demo cohort, train on a split, evaluate on held-out subjects, predict one subject.

    Everything goes under ``root`` (``cohort/``, ``bundle/``, ``results/``).
    """
    from .data import make_demo_cohort
    from .training.evaluate import paired_tests, pooled_summary, pooled_table, write_results
    from .bundle import save_bundle as _save
    import numpy as np

    root = Path(root)
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    cohort_dir = root / "cohort"
    if not (cohort_dir / "participants.tsv").is_file():
        make_demo_cohort(cohort_dir, n_subjects, seed, progress=progress)
    seconds["cohort"] = time.perf_counter() - start

    config = TrainConfig.demo(quick=quick)
    config.seed = seed
    preprocess = PreprocessConfig.from_dict(config.preprocess)
    start = time.perf_counter()
    cohort, task_, inputs = load_task_inputs(cohort_dir, task, preprocess, config.modalities, progress)
    seconds["load"] = time.perf_counter() - start
    labels = list(task_.classes)

    rest, test_idx = grouped_holdout(inputs.labels, inputs.group_ids, 0.25, seed)
    train, val = split_train_val(inputs.subset(rest), config.val_fraction, seed)
    test = inputs.subset(test_idx)

    start = time.perf_counter()
    features = cohort_summary_features(cohort, inputs, progress)  # label-free, so computed once for all
    rows, predictions, result = evaluate_split(config, labels, train, val, test, task_.name, 0, ablation, progress,
                                               resolve_device(device), features)
    seconds["train_and_evaluate"] = time.perf_counter() - start
    evaluation = Evaluation(task_.name, labels, list(test.subject_ids), np.asarray(test.labels), 1,
                            "selected" if config.aggregation == "auto" else config.aggregation,
                            rows=rows, curves=[{"repeat": 0, "fold": 0,
                                                "phase1": {m.value: h.to_dict() for m, h in result.phase1.items()},
                                                "phase2": {m.value: h.to_dict() for m, h in result.phase2.items()}}])
    evaluation.record(0, np.arange(len(test)), predictions)
    results = write_results([evaluation], root / "results", {"split": {
        "train": len(train), "validation": len(val), "test": len(test), "test_ids": test.subject_ids}})
    bundle_dir = _save(result.model, config, root / "bundle", cohort_provenance(cohort),
                       extra={"task": task_.name, "training_subjects": len(train),
                              "validation_subjects": len(val)}, overwrite=True)

    # Predict one held-out subject from its folder, as a user would.
    from .inference import DiagnosisPipeline

    start = time.perf_counter()
    complete = [i for i in range(len(test)) if all(test.samples[m][i] is not None for m in config.modalities)]
    pick = complete[0] if complete else 0
    subject_id = test.subject_ids[pick]
    pipeline = DiagnosisPipeline(bundle_dir, device=device)
    diagnosis, _, report = report_subject(
        pipeline, cohort.subject_folder(subject_id), root / f"report_{subject_id}.pdf", force=True,
        n_steps=report_steps, progress=progress, explain_dir=root / "explanation",
    )
    prediction = diagnosis.to_dict()
    prediction["true_label"] = labels[int(test.labels[pick])]
    seconds["predict_explain_report"] = time.perf_counter() - start
    seconds["total"] = sum(seconds.values())
    table = pooled_table(pooled_summary(evaluation), paired_tests(evaluation))
    return DemoOutputs(root, cohort_dir, bundle_dir, results, table, prediction, report=report, seconds=seconds)
