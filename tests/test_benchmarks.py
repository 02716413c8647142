"""The benchmark scripts still run (quick mode, one small model each) and print their tables."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"

RUNS = {
    "naming": ["--quick", "--models", "synthetic"],
    "extractor": ["--quick", "--parts", "a,c", "--models", "synthetic"],
    "pruning": ["--quick", "--models", "resnet18"],
    "strategies": ["--quick", "--parts", "a", "--models", "toy_branch"],
    "extract": ["--quick", "--parts", "a,d", "--size", "32"],
}


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(RUNS))
def test_benchmark_runs(script):
    out = subprocess.run(
        [sys.executable, str(BENCH / f"{script}.py"), *RUNS[script]],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| model" in out.stdout and re.search(r"\| \d+\.\d+x +\|", out.stdout), out.stdout  # ratios
