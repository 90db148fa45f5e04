"""Smoke test of the benchmark suite: ``bench/run_all.py --tiny`` must run to the end and
print every figure row, so the benchmark code cannot rot.  (The full ``make bench`` is not
part of ``make test``: too slow and too noisy for CI.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from run_all import EXPECTED_ROWS  # noqa: E402


@pytest.mark.slow
def test_run_all_tiny_prints_every_figure(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run_all.py"), "--tiny", "--results",
         str(results)],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    table = done.stdout.split("\nnotes:")[0]
    rows = [line for line in table.splitlines() if line.strip()]
    for expected in EXPECTED_ROWS:
        assert any(line.startswith(expected) for line in rows), (
            f"missing figure row {expected!r} in:\n{table}")
    markdown = results.read_text()
    assert markdown.startswith("# Benchmark results")
    for expected in EXPECTED_ROWS:
        assert f"| {expected}" in markdown


@pytest.mark.slow
def test_pair_modes_over_stdio_prints_every_server_and_the_paired_ratios() -> None:
    """bench/pair_modes.py --stdio (the A/B tool the findings cite) runs to the end."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "pair_modes.py"), "--stdio", "--rounds", "1",
         "--per", "5", "--b-env", "TASKBROKER_LOG_LEVEL=WARNING"],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("server CPU ms per start over stdio, 1 client x 5 calls")
    labels = [line.split()[0] for line in lines[1:] if "median" in line]
    assert labels[:2] == ["A", "B"]
    assert any(line.strip().startswith("A / B:") for line in lines)
