"""The ``anchorad`` command. Every sub-command calls the same public API as the GUI.

Errors in the user's input print one line (``anchorad: error: <file>: <problem>``) and exit
with status 2; no traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from .errors import AnchorADError, CancelledError, ConfigError
from .progress import LogSink, Progress, TqdmSink

RESEARCH_ONLY = "AnchorAD is a research tool, not a medical device: never use it for clinical diagnosis."


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``anchorad`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    # a terminal gets progress bars; a log (stderr redirected) one line per stage
    sink = TqdmSink() if sys.stderr.isatty() else LogSink()
    progress = Progress(sink)
    try:
        return int(args.handler(args, progress) or 0)
    except CancelledError:
        sink.close()
        print("anchorad: cancelled", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        sink.close()
        print("anchorad: interrupted", file=sys.stderr)
        return 130
    except AnchorADError as error:
        sink.close()  # end any progress bar first: the error gets a line of its own
        print(f"anchorad: error: {error}", file=sys.stderr)
        return 2
    finally:
        sink.close()


# ---------------------------------------------------------------------------- commands
def _pretrain(args: argparse.Namespace, progress: Progress) -> int:
    from .pretraining import PretrainSettings, pretrain_demo_backbones

    settings = PretrainSettings(subjects=args.subjects, seed=args.seed)
    modalities = tuple(m.strip() for m in args.modalities.split(",") if m.strip())
    unknown = sorted(set(modalities) - {"smri", "fmri", "genetics"})
    if unknown:
        raise ConfigError(f"--modalities: cannot pretrain {', '.join(unknown)} (choose from smri, fmri, genetics)")
    provenance = pretrain_demo_backbones(args.out, settings, progress, modalities)
    for m, entry in provenance["models"].items():
        print(f"{m:<9} {entry['objective']}: {entry['steps']} steps, loss {entry['loss'][0]:.3f} -> "
              f"{entry['loss'][-1]:.3f}  ({entry['file']})")
    print(f"provenance written to {Path(args.out) / 'PROVENANCE.json'}")
    return 0


def _demo_cohort(args: argparse.Namespace, progress: Progress) -> int:
    from .data import make_demo_cohort

    out = Path(args.out)
    if out.exists() and not args.force:
        raise ConfigError(f"{out}: already exists (use --force to replace it)")
    if args.subjects < 4:
        raise ConfigError(f"--subjects: a demo cohort needs at least 4 subjects, got {args.subjects}")
    if args.clinica:
        from .data import make_clinica_demo_cohort

        clinica = make_clinica_demo_cohort(
            out, args.subjects, args.seed, overwrite=args.force,
            progress=lambda done, total, *_: progress.update("demo cohort", done, total))
        counts = ", ".join(f"{k} {v}" for k, v in clinica.labels.items())
        print(f"wrote a SYNTHETIC longitudinal cohort of {clinica.participants} participants, {clinica.sessions} "
              f"sessions, Clinica layout, to {clinica.root}")
        print(f"labels ({counts}) in {clinica.labels_tsv}: train with --labels {clinica.labels_tsv}")
        return 0
    info = make_demo_cohort(out, args.subjects, args.seed, overwrite=args.force, progress=progress)
    counts = ", ".join(f"{k} {v}" for k, v in info.labels.items())
    print(f"wrote a SYNTHETIC demo cohort of {info.n_subjects} subjects ({counts}) to {info.root}")
    print(f"{len(info.dropped)} subjects lack one modality on purpose; see {info.root / 'README.md'}")
    return 0


def _labels(args: argparse.Namespace, progress: Progress) -> int:
    from .data.visit_labels import derive_labels, read_visit_table, write_label_table

    out = Path(args.out)
    if out.exists() and not args.force:
        raise ConfigError(f"{out}: already exists (use --force to replace it)")
    labels, summary = derive_labels(read_visit_table(args.visits), args.horizon_months)
    write_label_table(labels, out)
    print(f"{summary.text()}; horizon {args.horizon_months:g} months")
    print(f"label table written to {out} (train and evaluate with --labels {out})")
    return 0


def _check_labels(args: argparse.Namespace) -> None:
    """With ``--labels``: read the cohort and its label table before any work; say what was matched."""
    if not getattr(args, "labels", None):
        return
    from .data import load_cohort

    cohort = load_cohort(args.cohort, args.labels)
    participants = len(set(cohort.samples["participant"]))
    skipped = (f"; {len(cohort.unmatched)} listed sessions have no folder in the cohort and are skipped"
               if cohort.unmatched else "")
    print(f"{args.labels}: {len(cohort.ids)} sessions of {participants} participants{skipped}", file=sys.stderr)


def _train(args: argparse.Namespace, progress: Progress) -> int:
    from .workflows import train_bundle

    _check_options(args)
    _check_labels(args)
    config = _config(args)
    out = Path(args.out)
    run_dir = Path(args.run_dir) if args.run_dir else out.with_name(out.name + ".run")
    fresh = not run_dir.exists()
    try:
        path, result = train_bundle(args.cohort, args.task, args.out, config, progress, args.device, args.force,
                                    resume=args.resume, run_dir=args.run_dir, labels=args.labels)
    except AnchorADError:
        if fresh:
            _remove_unstarted_run(run_dir)
        raise
    print(f"bundle written to {path}")
    for phase, histories in (("phase 1", result.phase1), ("phase 2", result.phase2)):
        for modality, history in histories.items():
            print(f"  {phase} {modality.value:<9} best epoch {history.best_epoch + 1:>2}  "
                  f"validation loss {history.best_val_loss:.3f}")
    return 0


def _evaluate(args: argparse.Namespace, progress: Progress) -> int:
    from .io_utils import json_safe
    from .training.evaluate import (
        paired_tests, parse_variant, pooled_summary, pooled_table, results_table, summarise_rows, write_results,
    )
    from .training.profile import profile_summary, profile_table, timed
    from .workflows import evaluate_bundle, evaluate_cohort

    tasks = [t for t in args.task.split(",") if t]
    _check_options(args)
    _check_labels(args)
    if args.bundle:
        if len(tasks) != 1:
            raise ConfigError("--bundle scores one task at a time")
        if args.note_exclude:
            raise ConfigError("--note-exclude: a bundle renders notes as it was trained to; retrain to change them")
        _check_bundle_task(args.bundle, tasks[0])
        rows = evaluate_bundle(args.bundle, args.cohort, tasks[0], progress, args.device, labels=args.labels)
        if args.out:
            paths = write_results(rows, Path(args.out))
            print(f"results written to {paths['json']} and {paths['csv']}", file=sys.stderr)
        summary = summarise_rows(rows)
        print(json.dumps(json_safe({"folds": rows, "summary": summary}), indent=2) if args.json
              else results_table(summary))
        return 0
    ablation = [x.strip() for x in args.ablation.split(",") if x.strip()] if args.ablation else []
    for variant in ablation:
        parse_variant(variant)  # a bad name fails before any training
    wall: dict[str, float] = {}
    with timed(wall, "evaluate"):
        evaluations = evaluate_cohort(args.cohort, tasks, _config(args), args.folds, ablation, progress,
                                      args.device, repeats=args.repeats, labels=args.labels)
    profile = profile_summary([f for e in evaluations for f in e.profile], wall["evaluate"],
                              sum(e.shared_features_s for e in evaluations))
    summary = [r for e in evaluations for r in pooled_summary(e)]
    tests = [t for e in evaluations for t in paired_tests(e)]
    if args.out:
        paths = write_results(evaluations, Path(args.out), extra={"profile": profile})
        print(f"results written to {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    if args.json:
        curves = [{"task": e.task, **c} for e in evaluations for c in e.curves]
        rows = [r for e in evaluations for r in e.rows]
        print(json.dumps(json_safe({"summary": summary, "paired_tests": tests, "folds": rows, "curves": curves,
                                    "profile": profile}), indent=2))
    else:
        print(pooled_table(summary, tests))
    if args.profile:  # after the results; on stderr when stdout carries JSON
        print(f"\nWall time per fold and part (s):\n{profile_table(profile)}",
              file=sys.stderr if args.json else sys.stdout)
    return 0


def _predict(args: argparse.Namespace, progress: Progress) -> int:
    from .data.clinical import check_note_text, read_note
    from .data.genetics import parse_genetics_text
    from .progress import drive
    from .session import Session

    _check_options(args)
    session = Session()
    pipeline = session.load_bundle(args.bundle, device=args.device, dtype=args.dtype)
    overrides = {}
    if args.note is not None:
        # a file is read (and checked) naming the file; typed text is checked naming the option
        overrides["clinical"] = (read_note(args.note) if Path(args.note).is_file()
                                 else _option("--note", check_note_text, args.note))
    if args.genetics is not None:
        _option("--genetics", parse_genetics_text, args.genetics, pipeline.preprocess_config)
        overrides["genetics"] = args.genetics
    session.open_subject(args.subject, preview=False)
    for modality, value in overrides.items():
        session.set_override(modality, value)
    session.read_inputs()  # errors in the subject's files: one line, before any progress
    if args.explain:
        diagnosis = drive(session.diagnose(), progress).diagnosis
        explanation = drive(session.explain(args.steps, args.max_steps), progress)
        summary = explanation.save(args.explain)
        _print_convergence(explanation)
        print(f"explanation maps written to {Path(args.explain)} (summary: {summary})", file=sys.stderr)
    else:
        diagnosis = drive(session.diagnose(outputs=False), progress).diagnosis
    if args.json:
        print(json.dumps(diagnosis.to_dict(), indent=2))
    else:
        print(format_diagnosis(diagnosis.to_dict()))
    return 0


def _print_convergence(explanation: Any) -> None:
    """One line per anchor round on stderr: the IG convergence delta, steps, and whether the bound was met."""
    for r in explanation.rounds:
        a = r.attribution
        if a is not None:
            print(f"IG {r.anchor} round: {a.convergence_text()}", file=sys.stderr)


def _report(args: argparse.Namespace, progress: Progress) -> int:
    from .inference import DiagnosisPipeline
    from .workflows import report_subject

    out = Path(args.out)
    if out.exists() and not args.force:
        raise ConfigError(f"{out}: already exists (use --force to replace it)")
    pipeline = DiagnosisPipeline(args.bundle, device=args.device)
    diagnosis, explanation, path = report_subject(pipeline, args.subject, out, force=args.force, n_steps=args.steps,
                                                  max_steps=args.max_steps, progress=progress)
    _print_convergence(explanation)
    print(format_diagnosis(diagnosis.to_dict()))
    print(f"report written to {path}")
    return 0


def _gui(args: argparse.Namespace, progress: Progress) -> int:
    try:
        from anchorad_gui.launch import launch
    except ImportError as error:
        raise ConfigError(f"the napari plugin is not installed ({error}); pip install 'anchorad[gui]'") from None
    launch(args.subject_dir, args.bundle)
    return 0


def _demo(args: argparse.Namespace, progress: Progress) -> int:
    from .workflows import run_demo

    outputs = run_demo(args.out, args.subjects, args.seed, args.task, args.quick, progress=progress,
                       device=args.device)
    print()
    print(f"Results on held-out subjects, task {args.task} (demo cohort: SYNTHETIC subjects on real templates)")
    print(outputs.table)
    print()
    print(format_diagnosis(outputs.prediction))
    print(f"  (true label of this held-out subject: {outputs.prediction['true_label']})")
    print()
    print(f"cohort   {outputs.cohort}")
    print(f"bundle   {outputs.bundle}")
    print(f"results  {outputs.results['json']}  {outputs.results['csv']}")
    if outputs.report is not None:
        print(f"report   {outputs.report}")
    print(f"explain  {outputs.root / 'explanation'}")
    print(f"time     {outputs.seconds['total']:.0f} s")
    subject = outputs.cohort / outputs.prediction["subject_id"]
    print(f"napari   anchorad gui {subject} --bundle {outputs.bundle}   (needs a display)")
    print(RESEARCH_ONLY)
    return 0


def _backbones(args: argparse.Namespace, progress: Progress) -> int:
    from .backbones.inventory import backbone_inventory, format_inventory
    from .planning import PAPER_PRESETS, format_plan, plan_run, presets_by_modality
    from .training.config import TrainConfig

    chosen = presets_by_modality([p.strip() for p in args.presets.split(",") if p.strip()]) if args.presets else {}
    if not args.plan:
        demo_presets = [spec for spec in TrainConfig.demo().backbones.values() if isinstance(spec, str)]  # all names
        names = list(chosen.values()) or (demo_presets if args.demo else None)
        rows = backbone_inventory(names)
        print(json.dumps(rows, indent=2) if args.json else format_inventory(rows))
        return 0
    if args.config:
        config = _config(args)
    else:
        config = TrainConfig.demo() if args.demo else TrainConfig(backbones=dict(PAPER_PRESETS))
    config.backbones = {**config.backbones, **chosen}
    plan = plan_run(config, batch_size=args.batch_size, genetics_windows=args.genetics_windows)
    print(json.dumps(plan, indent=2) if args.json else format_plan(plan))
    return 0


# ---------------------------------------------------------------------------- helpers
def _bench(args: argparse.Namespace, progress: Progress) -> int:
    from .bench import format_table, run_bench

    if args.repeats < 1:
        raise ConfigError(f"--repeats: must be at least 1, got {args.repeats}")
    result = run_bench(repeats=args.repeats, quick=args.quick, device=args.device, threads=args.threads,
                       log=lambda s: print(f"bench: {s}", file=sys.stderr))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0


def _option(name: str, check: Any, *values: Any) -> Any:
    """``check(*values)``, with an error naming the option ``name`` (``--task: ...``)."""
    try:
        return check(*values)
    except (AnchorADError, ValueError) as error:
        problem = error.problem if isinstance(error, AnchorADError) and error.path is None else str(error)
        raise ConfigError(f"{name}: {problem}") from None


def _remove_unstarted_run(run_dir: Path) -> None:
    """Remove a run folder this command created if no epoch was saved in it (nothing to resume)."""
    import shutil

    state = run_dir / "run.json"
    try:
        completed = json.loads(state.read_text(encoding="utf-8")).get("completed") if state.is_file() else []
    except (OSError, ValueError):
        return
    if not completed and not any(run_dir.glob("*.pt")):
        shutil.rmtree(run_dir, ignore_errors=True)


def _check_config(config: Any) -> None:
    """Reject a config file that would fail deep inside training: text for numbers, unknown
    modalities or backbone presets."""
    from dataclasses import fields

    from .backbones.registry import resolve_config
    from .training.config import StageSettings, TrainConfig

    def check(name: str, value: Any, default: Any) -> None:
        if isinstance(default, bool) or default is None:
            return
        if isinstance(default, int):
            ok, kind = isinstance(value, int) and not isinstance(value, bool), "an integer"
        elif isinstance(default, float):
            ok, kind = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
        elif isinstance(default, str):
            ok, kind = isinstance(value, str), "a string"
        else:
            return
        if not ok:
            raise ConfigError(f"{name} must be {kind}, got {value!r}")

    stage_default, default = StageSettings(), TrainConfig()
    for phase in ("phase1", "phase2"):
        for modality, stage in getattr(config, phase).items():
            for f in fields(StageSettings):
                check(f"{phase}.{modality.value}.{f.name}", getattr(stage, f.name), getattr(stage_default, f.name))
    for f in fields(TrainConfig):
        check(f.name, getattr(config, f.name), getattr(default, f.name))
    for modality, spec in config.backbones.items():
        try:
            resolve_config(spec)
        except AnchorADError as error:
            raise ConfigError(f"backbones.{modality.value}: {error.problem}") from None


def _check_options(args: argparse.Namespace) -> None:
    """Fail fast, naming the option, on a bad --task, --device, --dtype or --modalities."""
    from .data.task import Task
    from .device import resolve_device, resolve_dtype
    from .modality import parse_modalities

    for task in ([t for t in args.task.split(",") if t] if getattr(args, "task", None) else []):
        _option("--task", Task.parse, task)
    if getattr(args, "device", None) is not None:
        _option("--device", resolve_device, args.device)
    if getattr(args, "dtype", None) is not None:
        _option("--dtype", resolve_dtype, args.dtype)
    if getattr(args, "modalities", None):
        chosen = _option("--modalities", parse_modalities, args.modalities)
        if args.command != "pretrain" and len(chosen) < 2:
            raise ConfigError(f"--modalities: AnchorAD fuses modalities (each anchor receives the others); "
                              f"name at least two, got {args.modalities!r}")
    if getattr(args, "folds", None) is not None and not getattr(args, "bundle", None) and args.folds < 2:
        raise ConfigError(f"--folds: cross-validation needs at least 2 folds, got {args.folds}")
    if getattr(args, "repeats", 1) < 1:
        raise ConfigError(f"--repeats must be at least 1, got {args.repeats}")


def _check_bundle_task(bundle: str, task: str) -> None:
    """``evaluate --bundle``: the task must be the one the bundle was trained for (manifest only)."""
    from .bundle import read_manifest
    from .data.task import Task

    labels = read_manifest(bundle).get("labels")
    wanted = Task.parse(task)
    if labels and list(wanted.classes) != list(labels):
        raise ConfigError(f"--task {wanted.name}: the bundle was trained for {'-'.join(labels)}, not {wanted.name}")


def format_diagnosis(result: dict[str, Any]) -> str:
    """Human-readable summary of a ``Diagnosis.to_dict()``."""
    labels = result["labels"]
    lines = [f"Subject {result['subject_id']}: {result['aggregate']['label']} "
             f"(p = {result['aggregate']['confidence']:.3f}, rule: {result['aggregate']['rule']})"]
    header = "  round (anchor)   " + "  ".join(f"p({label})".rjust(9) for label in labels) + "   weight"
    lines.append(header)
    for r in result["rounds"]:
        lines.append(f"  {r['anchor']:<16} " + "  ".join(f"{r['probabilities'][l]:9.3f}" for l in labels)
                     + f"   {r['weight']:.2f}")
    lines.append("  aggregate        " + "  ".join(f"{result['aggregate']['probabilities'][l]:9.3f}" for l in labels))
    lines.append(f"  modalities used: {', '.join(result['modalities_used']) or 'none'}; "
                 f"missing: {', '.join(result['modalities_missing']) or 'none'}")
    return "\n".join(lines)


def _config(args: argparse.Namespace) -> "Any":
    from .modality import parse_modalities
    from .training.config import TrainConfig

    if getattr(args, "config", None):
        path = Path(args.config)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ConfigError("a training config must hold a JSON object (TrainConfig.to_dict format)")
            config = TrainConfig.from_dict(data)
            _check_config(config)
        except (OSError, json.JSONDecodeError, UnicodeDecodeError, TypeError, ValueError) as error:
            raise ConfigError(f"cannot read training config ({error})", path) from None
        except AnchorADError as error:
            raise ConfigError(error.problem, path) from None
    else:
        config = TrainConfig.demo(quick=getattr(args, "quick", False))
    if getattr(args, "modalities", None):
        config = config.restricted(parse_modalities(args.modalities))
    if getattr(args, "seed", None) is not None:
        config.seed = args.seed
    if getattr(args, "queries", None) is not None:
        config.num_queries = args.queries
    if getattr(args, "note_exclude", None):
        from .data import PreprocessConfig

        fields = [f for f in args.note_exclude.split(",") if f.strip()]
        preprocess = _option("--note-exclude", PreprocessConfig.from_dict,
                             {**config.preprocess, "clinical_exclude": fields})
        config.preprocess = preprocess.to_dict()
    return config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="anchorad",
        description="Multi-modal Alzheimer's disease diagnosis by joint adaptation of uni-modal "
                    "foundation models (research use only).",
        epilog=RESEARCH_ONLY,
    )
    sub = parser.add_subparsers(dest="command")

    def add(name: str, handler: Any, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(handler=handler)
        return p

    def device(p: argparse.ArgumentParser) -> None:
        p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")

    def training(p: argparse.ArgumentParser) -> None:
        p.add_argument("--modalities", help="comma-separated subset of smri,fmri,clinical,genetics")
        p.add_argument("--quick", action="store_true", help="small, fast configuration (fewer epochs)")
        p.add_argument("--config", help="training config JSON (TrainConfig.to_dict format)")
        p.add_argument("--queries", type=int,
                       help="Q-former queries per block N_q (default: the config's; 8 in the demo config)")
        p.add_argument("--seed", type=int, help="random seed (default 0)")
        p.add_argument("--labels", metavar="LABELS_TSV",
                       help="ClinicaDL-style label table (participant_id, session_id, diagnosis): one sample per "
                            "session (default: participants.tsv's diagnosis); see docs/COHORTS.md")
        p.add_argument("--note-exclude", metavar="FIELDS",
                       help="clinical fields left out of the rendered notes, comma-separated (e.g. mmse,cdr_sb; "
                            "'diagnostic' = MMSE, CDR-SB and CDR global); recorded in the bundle")

    p = add("demo-cohort", _demo_cohort, "write a SYNTHETIC demo cohort built on the shipped real templates")
    p.add_argument("out", help="cohort folder to create")
    p.add_argument("--subjects", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="replace an existing folder")
    p.add_argument("--clinica", action="store_true",
                   help="Clinica / ClinicaDL layout: --subjects participants with 2-3 sessions each, "
                        "sub-<id>_sessions.tsv notes and a labels.tsv (docs/COHORTS.md)")

    p = add("labels", _labels, "derive NC/MCI/AD and sMCI/pMCI labels per session from an ADNIMERGE-shaped "
                                "visit table (rules: docs/COHORTS.md)")
    p.add_argument("visits", help="visit table, CSV or TSV (RID/PTID/participant_id, M/VISCODE/EXAMDATE, DX/DX_bl)")
    p.add_argument("out", help="label table to write (TSV: participant_id, session_id, diagnosis, months, rule)")
    p.add_argument("--horizon-months", type=float, default=36,
                   help="sMCI / pMCI horizon in months (default 36): pMCI = AD within it, sMCI = no AD and "
                        "followed at least this long")
    p.add_argument("--force", action="store_true", help="replace an existing file")

    p = add("pretrain", _pretrain, "self-supervised pretraining of the demo backbones on an unlabeled synthetic cohort")
    p.add_argument("out", help="folder for the weights and PROVENANCE.json (the shipped ones: resources/pretrained)")
    p.add_argument("--subjects", type=int, default=360)
    p.add_argument("--seed", type=int, default=1_000_003, help="seed of the pretraining cohort (no evaluation cohort uses it)")
    p.add_argument("--modalities", default="smri,fmri,genetics", help="which backbones to pretrain")

    p = add("train", _train, "train phase 1 and phase 2 on a cohort and write a model bundle")
    p.add_argument("--cohort", required=True)
    p.add_argument("--task", required=True, help="two labels, e.g. NC-AD, NC-MCI, sMCI-pMCI")
    p.add_argument("--out", required=True, help="bundle folder to write")
    p.add_argument("--force", action="store_true", help="replace an existing bundle")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last epoch")
    p.add_argument("--run-dir", help="checkpoint folder of the run (default <out>.run)")
    training(p)
    device(p)

    p = add("evaluate", _evaluate, "cross-validate all methods and baselines, or score a bundle on a cohort")
    p.add_argument("--cohort", required=True)
    p.add_argument("--task", required=True, help="one task or a comma-separated list (one column each)")
    p.add_argument("--bundle", help="score this trained bundle instead of cross-validating")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--repeats", type=int, default=1, help="repeated stratified CV: reshuffle and rerun this many times")
    p.add_argument("--ablation", default="",
                   help="phase-2 ablations, comma-separated: nq=K, width=W, no-gate, pool-extra, in-sample, "
                        "readout-keys (e.g. nq=0,no-gate,pool-extra,width=128,in-sample; each retrains phase 2 "
                        "per fold)")
    p.add_argument("--out", help="folder for results.json and results.csv")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--profile", action="store_true",
                   help="also print the wall time per fold split into phase 1, features, phase 2, baselines, "
                        "ablation and scoring, and evaluate's wall time over its main training runs "
                        "(always in --json and results.json)")
    training(p)
    device(p)

    p = add("predict", _predict, "diagnose one subject folder with a bundle")
    p.add_argument("--bundle", required=True)
    p.add_argument("--subject", required=True, help="a sub-<id> folder")
    p.add_argument("--note", help="clinical note text (or a file) replacing the folder's note")
    p.add_argument("--genetics", help="APOE genotype, DNA or FASTA text replacing the folder's genetics")
    p.add_argument("--dtype", default="float32", help="float32, bfloat16 or float16")
    p.add_argument("--json", action="store_true")
    p.add_argument("--explain", metavar="OUTDIR",
                   help="also write Q-former attention and Integrated Gradients maps (NIfTI, TSV, JSON) here")
    p.add_argument("--steps", type=int, default=16,
                   help="Integrated Gradients steps to start from (default 16); doubled until |delta| <= 5%% of "
                        "|f(x) - f(baseline)|, up to --max-steps")
    p.add_argument("--max-steps", type=int, default=128, help="cap of the adaptive IG steps (default 128)")
    device(p)

    p = add("report", _report, "diagnose and explain one subject and write a PDF report")
    p.add_argument("--bundle", required=True)
    p.add_argument("--subject", required=True, help="a sub-<id> folder")
    p.add_argument("--out", required=True, help="PDF file to write")
    p.add_argument("--force", action="store_true", help="replace an existing file")
    p.add_argument("--steps", type=int, default=16,
                   help="Integrated Gradients steps to start from (default 16); doubled until |delta| <= 5%% of "
                        "|f(x) - f(baseline)|, up to --max-steps")
    p.add_argument("--max-steps", type=int, default=128, help="cap of the adaptive IG steps (default 128)")
    device(p)

    p = add("gui", _gui, "open napari with the AnchorAD panels (and a subject folder, default the demo subject)")
    p.add_argument("subject_dir", nargs="?", help="a sub-<id> folder to open")
    p.add_argument("--bundle", help="model bundle (default: the shipped demo bundle)")

    p = add("demo", _demo, "the whole job on the embedded demo: cohort, training, evaluation, a prediction")
    p.add_argument("--out", default="anchorad-demo", help="output folder (default ./anchorad-demo)")
    p.add_argument("--subjects", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--task", default="NC-AD")
    p.add_argument("--quick", action="store_true", help="fewer epochs (a smoke run)")
    device(p)

    p = add("bench", _bench, "measure inference, phase-2, cohort, attribution cost and peak memory on the demo")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per figure after one warm-up (default 3)")
    p.add_argument("--quick", action="store_true", help="fewer subjects and IG steps (a smoke run)")
    p.add_argument("--threads", type=int, help="torch threads (default: the process default)")
    p.add_argument("--out", help="also write the JSON here")
    device(p)

    p = add("backbones", _backbones, "list backbone presets with parameter counts and memory, or plan a run's rounds")
    p.add_argument("--json", action="store_true")
    p.add_argument("--plan", action="store_true",
                   help="per anchor round: trainable parameters (LoRA, Q-former, projections, gates, head), frozen "
                        "ones and the bf16 peak memory of a training step with and without gradient checkpointing, "
                        "built on the meta device (default: the paper's presets and settings)")
    p.add_argument("--presets", help="comma-separated presets, one per modality (replacing the default ones)")
    p.add_argument("--demo", action="store_true", help="the demo presets (and, with --plan, the demo settings)")
    p.add_argument("--config", help="with --plan: a training config JSON whose backbones and round settings to plan")
    p.add_argument("--batch-size", type=int, default=1, help="with --plan: subjects per training step (default 1)")
    p.add_argument("--genetics-windows", type=int, default=2,
                   help="with --plan: DNA windows per subject of the genetics estimate (default 2, two haplotypes)")
    return parser


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
