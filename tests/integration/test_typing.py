"""``mypy`` on the core, with the project's configuration (``[tool.mypy]`` in pyproject.toml).

The configuration checks the whole ``anchorad_core`` package (``check_untyped_defs``, no
ignored project modules; only third-party libraries without type information are excused
from import checking). mypy runs once, in a subprocess as CI would; each test prints the
errors it finds.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mypy_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str]:
    """``(exit status, output)`` of ``python -m mypy`` over the package, with a fresh cache."""
    cache = tmp_path_factory.mktemp("mypy-cache")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(cache)],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    return result.returncode, result.stdout + result.stderr


def _errors(output: str) -> list[str]:
    return [line for line in output.splitlines() if re.match(r"^\S+\.py:\d+: error:", line)]


def test_mypy_ran(mypy_run: tuple[int, str]) -> None:
    status, output = mypy_run
    assert status in (0, 1), f"mypy did not run (status {status}):\n{output}"  # 1: type errors, 2: a crash or bad config
    assert "note: unused section" not in output, output  # an override for a module that is never imported


def test_mypy_is_clean_on_the_whole_core(mypy_run: tuple[int, str]) -> None:
    status, output = mypy_run
    errors = "\n".join(_errors(output)) or output
    assert status == 0 and "Success: no issues found" in output, f"mypy found errors in anchorad_core:\n{errors}"
