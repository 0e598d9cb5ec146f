"""bench/pipeline.py keeps working on the CPU (the tiny configuration), several sizes in one run."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.support.processes import ROOT


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "bench/pipeline.py", "--device", "cpu", "--no-append", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_two_sizes_in_one_run_give_a_column_and_a_summary_line_each():
    done = bench("--sizes", "64x48,96x64", "--blocks", "2", "--steps", "2")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "| measure | 64x48 eager | 96x64 eager |" in done.stdout
    assert "| DiT step (ms, mean of 2 per block) |" in done.stdout and "- attention backend: sdpa" in done.stdout
    lines = done.stdout.strip().splitlines()[-2:]
    for line, size in zip(lines, ("64x48", "96x64"), strict=True):
        assert re.fullmatch(rf"size={size} variant=eager fps=[\d.]+ ttff_s=[\d.]+ peak_mb=\d+", line), line


def test_bad_arguments_are_refused_with_a_message():
    assert "multiples of 16" in bench("--sizes", "100x48").stderr
    assert "needs --device cuda" in bench("--sizes", "64x48", "--variants", "cuda-graphs").stderr
    assert "steps must be an integer from 1 to 8" in bench("--steps", "9").stderr
