"""The benchmark runs and reports well-formed figures. No timed assertions: performance is
checked by ``anchorad bench`` itself (see BENCHMARKS.md), never by the tests."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from anchorad_core import bench
from anchorad_core.inference import DiagnosisPipeline
from anchorad_core.resources import resource_path

pytestmark = pytest.mark.slow  # runs the benchmark (in-process and through the CLI): minutes on a small CPU

ROOT = Path(__file__).resolve().parents[2]
KEYS = [
    "inference_naive_over_pipeline", "inference_pipeline_over_minimum", "phase2_recompute_over_cached",
    "phase2_cached_over_minimum", "cohort_batched_speedup", "attribution_over_passes", "peak_rss_mb",
]


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def pipeline():
    return DiagnosisPipeline(resource_path("demo/bundle"), device="cpu")


@pytest.fixture(scope="module")
def subject(pipeline):
    return pipeline.load_subject(resource_path("demo/sub-001"))


def test_naive_diagnosis_agrees_with_the_pipeline(pipeline, subject):
    naive = bench.naive_diagnose(pipeline.model, subject, pipeline._cast)[0]
    d = pipeline.diagnose(subject)
    expected = torch.tensor([d.aggregate_probabilities[k] for k in d.labels])
    assert torch.allclose(naive.float(), expected, atol=1e-5)


def test_inference_and_attribution_figures(pipeline, subject):
    inf = bench.bench_inference(pipeline, subject, repeats=1)
    assert all(_positive(inf[k]) for k in ("pipeline_s", "naive_s", "minimum_s"))
    assert set(inf["minimum_parts"]) >= {f"encode.{m.value}" for m in pipeline.model.modalities}
    att = bench.bench_attribution(pipeline, subject, repeats=1, n_steps=2)
    assert _positive(att["ig_s"]) and _positive(att["passes_s"])
    assert all(p.grad is None for p in pipeline.model.parameters())


def test_full_run_json_keys(tmp_path):
    """The whole benchmark, quick sizes and one repeat, through the command line."""
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "anchorad_core.cli", "bench", "--quick", "--repeats", "1", "--threads", "1",
         "--json", "--out", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert json.loads(out.read_text()) == result
    for key in KEYS:
        assert _positive(result[key]), key
        assert key in result["targets"] and isinstance(result["targets"][key]["pass"], bool)
    for key in ("cpu_count", "torch_threads", "torch_version", "date"):
        assert result["machine"][key]
    assert result["machine"]["torch_threads"] == 1
    for section in ("inference", "phase2", "cohort", "attribution", "memory"):
        assert section in result["raw"]
    assert _positive(result["cohort_length_over_order"])
    assert _positive(result["raw"]["phase2"]["cache_build_s"])
    table = bench.format_table(result)
    assert "PASS" in table or "MISS" in table
    assert "cohort: batched by length / batched in cohort order" in table
    assert "torch_threads=1" in table


def test_gpu_bench_tiny_on_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gpu_bench.py"), "--tiny", "--device", "cpu", "--repeats", "1", "--threads", "1",
         "--json", "--out", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["sizes"] == "tiny"
    assert _positive(result["diagnosis_s"]) and _positive(result["phase2_step_total_s"])
    assert set(result["phase2_step"]) >= {"smri", "fmri", "clinical", "genetics"}
    assert all(_positive(v) for v in result["parameters"].values())


def test_table_reports_the_feature_cache_and_the_benchmark_peak_rss():
    result = {"machine": {"date": "d", "device": "cpu", "cpu_count": 2, "torch_threads": 1, "torch_version": "t"},
              "repeats": 1, "warmup": 1, "bench_wall_s": 1.0, "raw": {"phase2": {"subjects": 24}},
              "feature_cache_mb": 5.0, "feature_cache_float32_mb": 9.9, "feature_cache_over_float32": 0.505,
              "bench_peak_rss_mb": 812.0}
    table = bench.format_table(result)
    assert "feature cache (24 subjects): 5.00 MB, float32 would be 9.90 MB (0.505x)" in table
    assert "peak RSS of the benchmark process: 812 MB" in table
    assert bench.peak_rss_mb() > 0
