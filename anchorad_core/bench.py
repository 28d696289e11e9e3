"""``anchorad bench``: what the rotating anchors cost, measured side by side in one run.

Every figure is the median of ``repeats`` timed runs after one warm-up run, on the shipped demo
bundle (a copy of its model for training) and a small synthetic demo cohort:

1. **inference per subject** — :class:`~anchorad_core.inference.DiagnosisPipeline` vs
   :func:`naive_diagnose` (the three auxiliary encoders recomputed in every round, the same
   model calls) and vs the *minimum*: each phase-1 encoder once plus each anchored pass once,
   each timed alone, summed;
2. **phase-2 training** — an epoch of every anchored round on cached auxiliary features
   (:class:`~anchorad_core.training.features.FeatureCache`) vs recomputing them in every step,
   and vs the anchored forward+backward passes alone (the minimum);
3. **cohort inference** — batched (``FeatureCache`` + ``anchored_probabilities``, batch 8, the
   anchored passes batched by length) vs one :class:`DiagnosisPipeline` call per subject, and vs
   the same batches in cohort order (:func:`anchored_in_cohort_order`, as before length batching);
4. **attribution** — Integrated Gradients of one round vs ``n_steps`` forward+backward passes of
   the same round function (in the chunks IG evaluates its path in);
5. **peak memory** of a full diagnosis with explanations, in a fresh child process (RSS; GPU
   memory on a GPU), and the benchmark process's own peak RSS (phase-2 training included).

Also reported: the bytes of the phase-2 auxiliary-feature cache (float16 tokens, float32
readouts) next to what a float32 cache of the same features holds.

Performance is checked by this benchmark, never by timed assertions in tests.
"""
from __future__ import annotations

import copy
import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from .fusion.qformer import AuxiliaryFeatures
from .modality import Modality

if TYPE_CHECKING:
    from .data.subject import Subject
    from .training.inputs import CohortInputs

#: (JSON key, comparison, target, description) of every checked figure.
TARGETS: list[tuple[str, str, float, str]] = [
    ("inference_naive_over_pipeline", ">=", 1.8, "inference: naive / pipeline"),
    ("inference_pipeline_over_minimum", "<=", 1.15, "inference: pipeline / minimum"),
    ("phase2_recompute_over_cached", ">=", 1.0, "phase 2: recompute epoch / cached epoch"),
    ("phase2_cached_over_minimum", "<=", 1.15, "phase 2: cached epoch / anchored passes"),
    ("cohort_batched_speedup", ">=", 2.0, "cohort: batched / one-by-one (subj/s)"),
    ("attribution_over_passes", "<=", 1.3, "attribution: IG / n_steps passes"),
    ("peak_rss_mb", "<=", 1536.0, "peak RSS, diagnosis + explanations (MB)"),
]


# ---------------------------------------------------------------------------- helpers
def timed(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> dict[str, Any]:
    """Median (and all) wall-clock seconds of ``repeats`` calls of ``fn`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    runs = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return {"median_s": statistics.median(runs), "runs_s": runs}


def side_by_side(fns: "dict[str, Callable[[], Any]]", repeats: int, warmup: int = 1) -> dict[str, dict[str, Any]]:
    """:func:`timed` of several variants, interleaved: every repeat runs each variant once in
    turn, so that a variant's median is not taken in a quieter or busier moment than the
    others' (the machine may be shared). A variant returning a float reports that as its
    time (for minima that time only their own parts)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    runs: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(max(1, repeats)):
        for name, fn in fns.items():
            start = time.perf_counter()
            value = fn()
            elapsed = time.perf_counter() - start
            runs[name].append(float(value) if isinstance(value, float) else elapsed)
    return {k: {"median_s": statistics.median(v), "runs_s": v} for k, v in runs.items()}


def machine_info(device: torch.device) -> dict[str, Any]:
    """CPU count, torch threads, versions and the date of the run."""
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "device": str(device),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------- 1. inference
@torch.no_grad()
def naive_diagnose(model: Any, subject: Any, cast: Callable[[dict], dict]) -> torch.Tensor:
    """A naive diagnosis: every round recomputes the phase-1 features of its three auxiliary
    modalities (the same ``model.encode`` / ``model.anchored`` calls as the pipeline).
    Returns the aggregated ``(1, K)`` probabilities."""
    present = [m for m in model.modalities if getattr(subject, m.value, None) is not None]
    batches = {m: cast(model.backbone(m).collate([getattr(subject, m.value)])) for m in present}
    anchors = model.anchors()
    probs = torch.full((len(anchors), 1, len(model.labels)), 1.0 / len(model.labels))
    mask = torch.zeros(len(anchors), 1, dtype=torch.bool)
    for r, anchor in enumerate(anchors):
        if anchor not in present:
            continue
        aux = {}
        for m in present:
            if m is anchor:
                continue
            out = model.encode(m, batches[m])
            aux[m] = AuxiliaryFeatures.of(out)
        logits = model.anchored(anchor, batches[anchor], aux).logits
        probs[r, 0] = torch.softmax(logits.float(), -1)[0].cpu()
        mask[r, 0] = True
    return model.aggregate(probs, mask)


def bench_inference(pipeline: Any, subject: Any, repeats: int) -> dict[str, Any]:
    """Pipeline vs naive vs the minimum (each encoder once + each anchored pass once, alone)."""
    model, device = pipeline.model, pipeline.device

    def run_pipeline() -> None:
        pipeline.diagnose(subject)
        _sync(device)

    def run_naive() -> None:
        naive_diagnose(model, subject, pipeline._cast)
        _sync(device)

    present = [m for m in model.modalities if getattr(subject, m.value, None) is not None]
    batches = {m: pipeline._cast(model.backbone(m).collate([getattr(subject, m.value)])) for m in present}
    features: dict[Modality, AuxiliaryFeatures] = {}
    part_runs: dict[str, list[float]] = {}

    def part(name: str, fn: Callable[[], Any]) -> float:
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        elapsed = time.perf_counter() - start
        part_runs.setdefault(name, []).append(elapsed)
        return elapsed

    @torch.no_grad()
    def run_minimum() -> float:
        """Each phase-1 encoder once and each anchored pass once, each timed alone."""
        total = 0.0
        for m in present:
            def enc(m: Modality = m) -> None:
                o = model.encode(m, batches[m])
                features[m] = AuxiliaryFeatures.of(o)
            total += part(f"encode.{m.value}", enc)
        for m in model.anchors():
            if m in present:
                def anchored(m: Modality = m) -> None:
                    model.anchored(m, batches[m], features)
                total += part(f"anchored.{m.value}", anchored)
        return total

    out: dict[str, Any] = side_by_side({"pipeline": run_pipeline, "naive": run_naive, "minimum": run_minimum}, repeats)
    parts = {k: {"median_s": statistics.median(v[1:] if len(v) > 1 else v), "runs_s": v[1:] if len(v) > 1 else v}
             for k, v in part_runs.items()}  # [1:]: drop the warm-up
    out["minimum_parts"] = parts
    out["minimum_s"] = out["minimum"]["median_s"]  # median over repeats of the summed parts
    out["pipeline_s"] = out["pipeline"]["median_s"]
    out["naive_s"] = out["naive"]["median_s"]
    return out


# ---------------------------------------------------------------------------- 2. phase 2
def _trainable_copy(bundle_path: Path, device: torch.device) -> Any:
    """A fresh copy of the bundle's model whose rounds (Q-former, head) and LoRA train."""
    from .bundle import load_bundle

    model = load_bundle(bundle_path).model.to(device)
    model.requires_grad_(False)
    for anchor in model.anchors():
        model.anchored_round(anchor).requires_grad_(True)
        for name, p in model.backbone(anchor).named_parameters():
            if "lora_" in name:
                p.requires_grad_(True)
    return model


def bench_phase2(model: Any, inputs: Any, repeats: int, batch_size: int = 8, seed: int = 0) -> dict[str, Any]:
    """One phase-2 epoch of every anchored round: cached features vs recomputed vs passes alone.

    Every variant takes phase 2's own training mode and loss (:func:`.training.phase2.phase2_train_mode`,
    :func:`.training.phase2.anchored_loss`); they differ only in where the auxiliary features come from.
    """
    from .training.features import FeatureCache
    from .training.phase2 import anchored_batch, anchored_loss, phase2_train_mode

    device = model.device
    anchors = model.anchors()
    y_all = torch.as_tensor(inputs.labels, device=device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    start = time.perf_counter()
    cache = FeatureCache.compute(model, inputs, batch_size=batch_size)
    cache_s = time.perf_counter() - start
    order = np.random.default_rng(seed).permutation(len(inputs))

    def plan(anchor: Modality) -> list[list[int]]:
        have = set(np.flatnonzero(inputs.present(anchor)).tolist())
        idx = [int(i) for i in order if int(i) in have]
        return [idx[s : s + batch_size] for s in range(0, len(idx), batch_size)]

    plans = {a: plan(a) for a in anchors}

    def train_mode() -> None:  # as phase 2 trains (the real function)
        model.eval()
        for a in anchors:
            phase2_train_mode(model, a)

    def step(anchor: Modality, index: list[int], features: FeatureCache) -> None:  # phase 2's own batch and loss
        optimizer.zero_grad(set_to_none=True)
        anchored_loss(model, anchor, *anchored_batch(model, anchor, inputs, features, index), y_all[index]).backward()
        optimizer.step()

    def epoch_cached() -> None:
        train_mode()
        for a in anchors:
            for index in plans[a]:
                step(a, index, cache)
        _sync(device)

    def epoch_recompute() -> None:
        for a in anchors:
            for index in plans[a]:
                aux_mods = tuple(m for m in model.modalities if m is not a)
                fresh = FeatureCache.compute(model, inputs.subset(index), modalities=aux_mods, batch_size=batch_size)
                train_mode()  # FeatureCache.compute puts the model in eval mode
                step(a, index, fresh)
        _sync(device)

    # the minimum: the anchored forward+backward passes alone, inputs prepared beforehand
    def prepare(a: Modality, index: list[int]) -> tuple[dict, dict, list[int]]:
        batch, aux = anchored_batch(model, a, inputs, cache, index)
        return batch, {m: f.to(device) for m, f in aux.items()}, index

    prepared = {a: [prepare(a, index) for index in plans[a]] for a in anchors}

    def epoch_passes() -> float:
        train_mode()
        total = 0.0
        for a in anchors:
            for batch, aux, index in prepared[a]:
                optimizer.zero_grad(set_to_none=True)
                _sync(device)
                t0 = time.perf_counter()
                anchored_loss(model, a, batch, aux, y_all[index]).backward()
                _sync(device)
                total += time.perf_counter() - t0
        optimizer.zero_grad(set_to_none=True)
        return total

    state = copy.deepcopy({k: v for k, v in model.state_dict().items()})
    times = side_by_side({"cached_epoch": epoch_cached, "recompute_epoch": epoch_recompute,
                          "passes_epoch": epoch_passes}, repeats)
    out: dict[str, Any] = {
        "subjects": len(inputs),
        "anchors": [a.value for a in anchors],
        "steps_per_epoch": sum(len(p) for p in plans.values()),
        "batch_size": batch_size,
        "cache_build_s": cache_s,
        "cache_bytes": cache.nbytes(),
        "cache_float32_bytes": cache.float32_nbytes(),
        **times,
    }
    model.load_state_dict(state)
    model.eval()
    out["cached_epoch_s"] = out["cached_epoch"]["median_s"]
    out["recompute_epoch_s"] = out["recompute_epoch"]["median_s"]
    out["passes_epoch_s"] = out["passes_epoch"]["median_s"]
    return out


# ---------------------------------------------------------------------------- 3. cohort
@torch.no_grad()
def anchored_in_cohort_order(model: Any, inputs: Any, cache: Any, batch_size: int = 8) -> np.ndarray:
    """``(R, n, K)`` round probabilities with each round's subjects batched in cohort order (every
    batch padded to its longest anchor input): the reference for batching by length."""
    anchors = model.anchors()
    probs = np.full((len(anchors), len(inputs), len(model.labels)), np.nan)
    for r, anchor in enumerate(anchors):
        backbone = model.backbone(anchor)
        index = np.flatnonzero(inputs.present(anchor))
        for start in range(0, len(index), batch_size):
            chunk = index[start : start + batch_size]
            batch = backbone.collate([inputs.samples[anchor][i] for i in chunk])
            aux = cache.aux_for_anchor(anchor, [inputs.subject_ids[i] for i in chunk])
            probs[r, chunk] = torch.softmax(model.anchored(anchor, batch, aux).logits, -1).float().cpu().numpy()
    return probs


def bench_cohort(pipeline: Any, subjects: list, repeats: int, batch_size: int = 8) -> dict[str, Any]:
    """Batched cohort inference (anchored passes by length) vs one pipeline call per subject and vs
    the same batches in cohort order (subjects already loaded)."""
    from .training.evaluate import anchored_probabilities
    from .training.features import FeatureCache
    from .training.inputs import CohortInputs

    model, device = pipeline.model, pipeline.device
    inputs = CohortInputs.from_subjects(subjects)

    def batched(by_length: bool = True) -> None:
        with torch.no_grad():
            cache = FeatureCache.compute(model, inputs, batch_size=batch_size)
            if by_length:
                probs, present = anchored_probabilities(model, inputs, cache, batch_size=batch_size)
            else:
                probs = anchored_in_cohort_order(model, inputs, cache, batch_size)
                present = ~np.isnan(probs[..., 0])
            model.aggregate(torch.as_tensor(np.nan_to_num(probs, nan=0.5)), torch.as_tensor(present))
        _sync(device)

    def one_by_one() -> None:
        for s in subjects:
            pipeline.diagnose(s)
        _sync(device)

    out: dict[str, Any] = {"subjects": len(subjects), "batch_size": batch_size,
                           **side_by_side({"batched": batched, "batched_in_order": lambda: batched(False),
                                           "one_by_one": one_by_one}, repeats)}
    out["batched_subjects_per_s"] = len(subjects) / out["batched"]["median_s"]
    out["batched_in_order_subjects_per_s"] = len(subjects) / out["batched_in_order"]["median_s"]
    out["one_by_one_subjects_per_s"] = len(subjects) / out["one_by_one"]["median_s"]
    return out


# ---------------------------------------------------------------------------- 4. attribution
def bench_attribution(pipeline: Any, subject: Any, repeats: int, n_steps: int, anchor: "Modality | None" = None) -> dict[str, Any]:
    """IG of one round vs forward+backward passes of the round function on its ``n_steps`` path
    points, in the chunks IG evaluates them in (``DEFAULT_INTERNAL_BATCH_SIZE``)."""
    from .explain.attributions import DEFAULT_INTERNAL_BATCH_SIZE, _INPUT_KEY, _RoundFunction, round_attributions

    model, device = pipeline.model, pipeline.device
    diagnosis = pipeline.diagnose(subject, return_outputs=True)
    batches = diagnosis.features
    anchor = anchor or next(m for m in model.anchors() if m in batches)
    present = [m for m in model.modalities if m in batches]

    def ig() -> None:
        round_attributions(model, anchor, subject, batches, target=0, labels=model.labels, n_steps=n_steps,
                           adaptive=False)  # the cost of one fixed-step run
        _sync(device)

    fn = _RoundFunction(model, anchor, present, batches, {})
    handles = []
    for m in present:  # gradients into the embedding outputs, as Captum's layer hook makes them
        if m.value not in fn.inputs:
            handles.append(fn.layer(m).register_forward_hook(lambda _m, _i, out: out.detach().requires_grad_(True)))
    alphas = torch.linspace(0.0, 1.0, n_steps, device=device)
    chunk = min(n_steps, DEFAULT_INTERNAL_BATCH_SIZE)  # the chunks IG evaluates its path in

    def passes() -> None:
        for start in range(0, n_steps, chunk):
            a = alphas[start : start + chunk]
            xs = []
            for m in present:
                x = torch.as_tensor(batches[m][_INPUT_KEY[m]])
                if m.value in fn.inputs:  # points on the straight path, with grad
                    x = (a.view(-1, *([1] * (x.dim() - 1))).to(x.dtype) * x).detach().requires_grad_(True)
                else:
                    x = x.repeat(len(a), *([1] * (x.dim() - 1)))
                xs.append(x)
            with torch.enable_grad():
                fn(*xs)[:, 0].sum().backward()
        _sync(device)

    try:
        out: dict[str, Any] = {"anchor": anchor.value, "n_steps": n_steps, "internal_batch_size": chunk,
                               **side_by_side({"ig": ig, "passes": passes}, repeats)}
    finally:
        for h in handles:
            h.remove()
    model.zero_grad(set_to_none=True)
    out["ig_s"] = out["ig"]["median_s"]
    out["passes_s"] = out["passes"]["median_s"]
    return out


# ---------------------------------------------------------------------------- 5. memory
def peak_memory_child(bundle: str, subject: str, device: str, n_steps: int, threads: int) -> dict[str, Any]:
    """Run in a fresh process: load, diagnose and explain one subject; report peak memory."""
    torch.set_num_threads(threads)
    from .explain import explain_subject
    from .inference import DiagnosisPipeline

    pipeline = DiagnosisPipeline(bundle, device=device)
    subj = pipeline.load_subject(subject)
    if pipeline.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(pipeline.device)
    start = time.perf_counter()
    explain_subject(pipeline, subj, n_steps=n_steps)
    seconds = time.perf_counter() - start
    out = {"peak_rss_mb": peak_rss_mb(), "explain_s": seconds, "n_steps": n_steps,
           "rss_source": "VmHWM" if Path("/proc/self/status").exists() else "ru_maxrss"}
    if pipeline.device.type == "cuda":
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated(pipeline.device) / 2**20
    return out


def peak_rss_mb() -> float:
    """Peak resident memory (MB) of this process.

    VmHWM: the peak RSS of this process's own address space. ru_maxrss is not used on Linux: it
    carries over the RSS of the forked parent (the benchmark) into an exec'd child.
    """
    import resource

    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024.0


def bench_memory(bundle: str, subject: str, device: str, n_steps: int, threads: int) -> dict[str, Any]:
    """:func:`peak_memory_child` in a child process, so the figure is that of a diagnosis alone."""
    code = ("import json,sys; from anchorad_core.bench import peak_memory_child; "
            f"print('@@' + json.dumps(peak_memory_child({bundle!r}, {subject!r}, {device!r}, {n_steps}, {threads})))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("@@")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"peak-memory child failed: {proc.stderr.strip()[-2000:]}")
    return json.loads(lines[-1][2:])


# ---------------------------------------------------------------------------- driver
def run_bench(
    repeats: int = 3,
    quick: bool = False,
    device: str = "cpu",
    threads: "int | None" = None,
    cohort_subjects: int = 24,
    n_steps: int = 16,
    sections: "tuple[str, ...]" = ("inference", "phase2", "cohort", "attribution", "memory"),
    cohort_dir: "str | Path | None" = None,
    log: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
    """Run the benchmark and return its JSON form (figures, raw timings, machine, date).

    ``quick`` uses fewer subjects and IG steps (a smoke run; the ratios are noisier).
    """
    from .data import load_cohort, make_demo_cohort
    from .inference import DiagnosisPipeline
    from .resources import resource_path
    from .training.inputs import CohortInputs

    if threads:
        torch.set_num_threads(int(threads))
    if quick:
        cohort_subjects, n_steps = min(cohort_subjects, 8), min(n_steps, 4)
    wall = time.perf_counter()
    bundle_path = Path(resource_path("demo/bundle"))
    subject_path = Path(resource_path("demo/sub-001"))
    pipeline = DiagnosisPipeline(bundle_path, device=device)
    subject = pipeline.load_subject(subject_path)
    result: dict[str, Any] = {"machine": machine_info(pipeline.device), "repeats": repeats, "warmup": 1,
                              "quick": quick, "bundle": str(bundle_path), "subject": str(subject_path)}
    raw: dict[str, Any] = {}
    figures: dict[str, Any] = {}

    if "inference" in sections:
        log("inference per subject ...")
        r = raw["inference"] = bench_inference(pipeline, subject, repeats)
        figures["inference_pipeline_s"] = r["pipeline_s"]
        figures["inference_naive_s"] = r["naive_s"]
        figures["inference_minimum_s"] = r["minimum_s"]
        figures["inference_naive_over_pipeline"] = r["naive_s"] / r["pipeline_s"]
        figures["inference_pipeline_over_minimum"] = r["pipeline_s"] / r["minimum_s"]

    subjects: "list[Subject]" = []
    inputs: "CohortInputs | None" = None
    if "phase2" in sections or "cohort" in sections:
        log(f"demo cohort of {cohort_subjects} subjects ...")
        with tempfile.TemporaryDirectory(prefix="anchorad-bench-") as tmp:
            root = Path(cohort_dir) if cohort_dir else Path(tmp) / "cohort"
            if not (root / "participants.tsv").exists():
                make_demo_cohort(root, cohort_subjects, 0)
            cohort = load_cohort(root)
            task = "-".join(pipeline.labels)
            try:
                ids, y = cohort.task_subjects(task)
            except Exception:  # noqa: BLE001 - a bundle whose task the demo cohort lacks
                ids, y = cohort.ids, np.zeros(len(cohort.ids), dtype=np.int64)
            subjects = cohort.load_subjects(ids, pipeline.preprocess_config)
            inputs = CohortInputs(list(ids), np.asarray(y, dtype=np.int64),
                                  CohortInputs.from_subjects(subjects).samples)

    if "phase2" in sections:
        log("phase-2 epochs ...")
        model2 = _trainable_copy(bundle_path, pipeline.device)
        r = raw["phase2"] = bench_phase2(model2, inputs, repeats)
        del model2
        figures["phase2_cached_epoch_s"] = r["cached_epoch_s"]
        figures["phase2_recompute_epoch_s"] = r["recompute_epoch_s"]
        figures["phase2_passes_epoch_s"] = r["passes_epoch_s"]
        figures["phase2_recompute_over_cached"] = r["recompute_epoch_s"] / r["cached_epoch_s"]
        figures["phase2_cached_over_minimum"] = r["cached_epoch_s"] / r["passes_epoch_s"]
        figures["feature_cache_mb"] = r["cache_bytes"] / 2**20
        figures["feature_cache_float32_mb"] = r["cache_float32_bytes"] / 2**20
        figures["feature_cache_over_float32"] = r["cache_bytes"] / r["cache_float32_bytes"]

    if "cohort" in sections:
        log("cohort inference ...")
        r = raw["cohort"] = bench_cohort(pipeline, subjects, repeats)
        figures["cohort_batched_subjects_per_s"] = r["batched_subjects_per_s"]
        figures["cohort_one_by_one_subjects_per_s"] = r["one_by_one_subjects_per_s"]
        figures["cohort_batched_speedup"] = r["batched_subjects_per_s"] / r["one_by_one_subjects_per_s"]
        figures["cohort_length_over_order"] = r["batched_subjects_per_s"] / r["batched_in_order_subjects_per_s"]

    if "attribution" in sections:
        log("attribution ...")
        r = raw["attribution"] = bench_attribution(pipeline, subject, repeats, n_steps)
        figures["attribution_ig_s"] = r["ig_s"]
        figures["attribution_passes_s"] = r["passes_s"]
        figures["attribution_over_passes"] = r["ig_s"] / r["passes_s"]

    if "memory" in sections:
        log("peak memory (child process) ...")
        r = raw["memory"] = bench_memory(str(bundle_path), str(subject_path), device, n_steps, torch.get_num_threads())
        figures["peak_rss_mb"] = r["peak_rss_mb"]
        if "peak_gpu_mb" in r:
            figures["peak_gpu_mb"] = r["peak_gpu_mb"]

    figures["bench_peak_rss_mb"] = peak_rss_mb()
    result.update(figures)
    result["raw"] = raw
    result["targets"] = {key: {"op": op, "target": target, "pass": check(result.get(key), op, target)}
                         for key, op, target, _ in TARGETS if key in result}
    result["n_steps"] = n_steps
    result["bench_wall_s"] = time.perf_counter() - wall
    return result


def check(value: Any, op: str, target: float) -> "bool | None":
    """Whether ``value`` meets ``op target`` (None when it was not measured)."""
    if value is None:
        return None
    return bool(value >= target) if op == ">=" else bool(value <= target)


def format_table(result: dict[str, Any]) -> str:
    """The figures next to their targets, PASS/MISS, with the raw medians and the machine."""
    m = result["machine"]
    lines = [f"AnchorAD benchmark  {m['date']}  {m['device']}  cpus={m['cpu_count']} "
             f"torch_threads={m['torch_threads']}  torch {m['torch_version']}  "
             f"median of {result['repeats']} after {result['warmup']} warm-up"]
    rows = [("figure", "value", "target", "")]
    for key, op, target, desc in TARGETS:
        if key not in result:
            continue
        value = result[key]
        unit = "" if key.endswith("_mb") else "x"
        rows.append((desc, f"{value:.2f}{unit}", f"{op} {target:g}{unit}",
                     "PASS" if check(value, op, target) else "MISS"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for i, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    raw = [(k, v) for k, v in result.items() if isinstance(v, float) and k.endswith(("_s", "_per_s")) and k != "bench_wall_s"]
    if raw:
        lines.append("")
        lines.append("raw medians: " + ", ".join(f"{k}={v:.4g}" for k, v in raw))
    if "cohort_length_over_order" in result:
        lines.append(f"cohort: batched by length / batched in cohort order (subj/s): "
                     f"{result['cohort_length_over_order']:.2f}x")
    if "peak_gpu_mb" in result:
        lines.append(f"peak GPU memory: {result['peak_gpu_mb']:.0f} MB")
    if "feature_cache_mb" in result:
        subjects = result.get("raw", {}).get("phase2", {}).get("subjects", "?")
        lines.append(f"feature cache ({subjects} subjects): {result['feature_cache_mb']:.2f} MB, float32 would be "
                     f"{result['feature_cache_float32_mb']:.2f} MB ({result['feature_cache_over_float32']:.3f}x)")
    if "bench_peak_rss_mb" in result:
        lines.append(f"peak RSS of the benchmark process: {result['bench_peak_rss_mb']:.0f} MB")
    lines.append(f"benchmark wall time: {result['bench_wall_s']:.0f} s")
    return "\n".join(lines)
