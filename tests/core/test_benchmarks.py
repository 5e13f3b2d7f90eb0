"""The benchmarks keep running (tiny sizes here; their figures come from real runs)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ingest_recall_benchmark_runs_and_prints_its_figures() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "recall_latency.py"), "--turns", "40",
         "--sizes", "300", "--queries", "10"],
        capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"ingest\s+40 turns: capture\s+[\d.]+ turns/s\s+capture\+augmentation\s+"
                     r"[\d.]+ turns/s", proc.stdout), proc.stdout
    line = re.search(r"recall\s+N=\s*300: p50\s+([\d.]+) ms.*peer/memori\s+([\d.]+)x.*"
                     r"agreement with brute force ([\d.]+)", proc.stdout)
    assert line is not None, proc.stdout
    assert float(line.group(3)) == 1.0  # exact search agrees with brute force


def run_bench(*args: str) -> str:
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600,
                          check=False, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_recall_memory_benchmark_runs_and_prints_its_figures() -> None:
    out = run_bench(str(ROOT / "benchmarks" / "recall_memory.py"), "--entities", "30",
                    "--memories", "20", "--recalls", "40")
    assert re.search(r"recalled 40 times over 30 entities", out), out
    assert re.search(r"recall cache: 30 entities, [\d.]+ MiB", out), out
    assert re.search(r"peak RSS [\d.]+ MiB \(target < 1024 MiB", out), out


def test_capture_overhead_benchmark_runs_and_prints_its_figures() -> None:
    out = run_bench(str(ROOT / "benchmarks" / "capture_overhead.py"), "--calls", "20",
                    "--memories", "20")
    assert "sqlite" in out and "postgresql" in out, out


def test_load_benchmark_runs_and_prints_its_figures() -> None:
    out = run_bench(str(ROOT / "benchmarks" / "load.py"), "--hash", "--threads", "2",
                    "--seconds", "1", "--rates", "10", "--memories", "5")
    row = re.search(r"^\s+10\s+([\d.]+)\s+[\d./]+\s+[\d./]+\s+(\d+)\s+(\d+)\s+\d+$", out, re.M)
    assert row is not None, out
    assert (row.group(2), row.group(3)) == ("0", "0")  # no error, no lost turn
    assert re.search(r"highest rate sustained .*: (10 requests/s|none)$", out, re.M), out


def test_dashboard_api_benchmark_runs_and_prints_its_figures() -> None:
    out = run_bench(str(ROOT / "benchmarks" / "dashboard_api.py"), "--memories", "200",
                    "--triples", "50", "--requests", "5", "--entities", "3",
                    "--backends", "sqlite")
    assert re.search(r"first page \(limit 50\)\s+50\s+[\d.]+\s+[\d.]+", out), out
    assert re.search(r"triples \(50, pages of 1000\)\s+50\s", out), out
    assert re.search(r"targets: first page [\d.]+ ms \(<= 300\) \| search [\d.]+ ms", out), out


def test_cold_recall_benchmark_runs_and_prints_its_figures() -> None:
    out = run_bench(str(ROOT / "benchmarks" / "cold_recall.py"), "--sizes", "300",
                    "--backends", "sqlite", "--cold", "2", "--warm", "3")
    assert re.search(r"sqlite\s+N=\s*300 before \(in-process index\)\s+cold p50\s+[\d.]+ ms",
                     out), out
    assert re.search(r"sqlite\s+N=\s*300 after\s+\(candidate path\)\s+cold p50\s+[\d.]+ ms",
                     out), out
    assert "targets: cold <= 50 ms at 10k" in out, out


def test_recall_scale_benchmark_runs_and_prints_its_figures() -> None:
    out = run_bench(str(ROOT / "benchmarks" / "recall_scale.py"), "--entities", "20",
                    "--memories", "10", "--processes", "2", "--recalls", "20",
                    "--cache-mb", "1")
    for mode in ("in-process", "pushdown"):
        assert re.search(rf"{mode}\s+2 processes x 20 random-entity recalls \(1 MB cache each\)"
                         r".*p99 [\d.]+ ms", out), out
        assert re.search(rf"{mode}\s+targets: p99 [\d.]+ ms \(<= 100\) \| RSS \d+ MB", out), out
