"""Crash-safe training: a run killed with SIGKILL resumes to the same final weights."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from anchorad_core.errors import ConfigError
from anchorad_core.training.run_state import RunState

DRIVER = Path(__file__).parents[1] / "resume_driver.py"
ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2]), "OMP_NUM_THREADS": "1"}


def _run(run_dir, out, mode):
    return subprocess.run([sys.executable, str(DRIVER), str(run_dir), str(out), mode], env=ENV,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_uninterrupted_weights(tmp_path):
    straight = _run(tmp_path / "a", tmp_path / "a.safetensors", "fresh")
    assert straight.returncode == 0, straight.stderr

    proc = subprocess.Popen([sys.executable, str(DRIVER), str(tmp_path / "b"), str(tmp_path / "b.safetensors"),
                             "fresh"], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_file = tmp_path / "b" / "run.json"
    deadline = time.time() + 300
    while time.time() < deadline:
        if run_file.is_file() and len(json.loads(run_file.read_text())["completed"]) >= 3 and \
                any((tmp_path / "b").glob("*.epoch.pt")):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "b.safetensors").exists()
    completed = json.loads(run_file.read_text())["completed"]
    assert 3 <= len(completed) < 8, completed

    resumed = _run(tmp_path / "b", tmp_path / "b.safetensors", "resume")
    assert resumed.returncode == 0, resumed.stderr
    a, b = load_file(str(tmp_path / "a.safetensors")), load_file(str(tmp_path / "b.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=0, msg=key)


def test_run_folder_refuses_other_configuration_and_accidental_reuse(tmp_path):
    RunState(tmp_path, {"config": 1})
    with pytest.raises(ConfigError, match="--resume"):
        RunState(tmp_path, {"config": 1})
    with pytest.raises(ConfigError, match="different configuration"):
        RunState(tmp_path, {"config": 2}, resume=True)
