"""The load generator's runners and the /proc measurements (no server: plain tasks and a child process)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from benchmarks.loadgen import Run, closed_loop, open_loop, percentile, summary
from benchmarks.measure import group_pids, rss_by_process, server_cpu_seconds


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 0.5) == 50.0
    assert percentile([7.0], 0.99) == 7.0


def test_closed_loop_runs_each_index_once_and_counts_failures() -> None:
    seen: list[int] = []
    lock = threading.Lock()

    def task(index: int) -> int:
        with lock:
            seen.append(index)
        if index % 2:
            raise ValueError(f"odd {index}")
        return index

    run = closed_loop(task, 4, count=10)
    assert sorted(seen) == list(range(10))
    assert sorted(run.results) == [0, 2, 4, 6, 8]
    assert len(run.latencies) == 5
    assert sorted(run.errors) == sorted(f"ValueError: odd {i}" for i in (1, 3, 5, 7, 9))


def test_closed_loop_needs_a_count_or_a_duration() -> None:
    with pytest.raises(ValueError):
        closed_loop(lambda i: i, 2)


def test_open_loop_starts_every_operation() -> None:
    run = open_loop(lambda i: i, rate=2000, count=25)
    assert sorted(run.results) == list(range(25))
    assert not run.errors


def test_open_loop_counts_latency_from_the_scheduled_start() -> None:
    """With one thread, the second operation waits for the first: that wait is part of its latency (a closed
    loop would hide it — coordinated omission)."""
    release = threading.Event()
    threading.Timer(0.3, release.set).start()

    def task(index: int) -> int:
        if index == 0:
            release.wait(5)
        return index

    run = open_loop(task, rate=1000, count=2, max_in_flight=1)
    assert sorted(run.results) == [0, 1]
    latency_of = dict(zip(run.results, run.latencies))
    assert latency_of[1] >= 0.2  # scheduled 1 ms after the first, it could only start once the first ended


def test_summary_reports_counts_percentiles_and_first_errors() -> None:
    run = Run(latencies=[0.010] * 99 + [0.500], errors=["OperationFailed: x", "OperationFailed: x"], elapsed=2.0,
              results=[])
    out = summary(run)
    assert out["count"] == 100 and out["errors"] == 2 and out["per_second"] == 50.0
    assert out["median_ms"] == 10.0 and out["p99_ms"] == 10.0
    assert out["first_errors"] == ["OperationFailed: x"]
    assert summary(Run([0.01] * 50 + [0.5] * 2, [], 1.0, []))["p99_ms"] == 500.0


def test_cpu_and_memory_of_a_process_group_are_read_from_proc() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys\nx = bytearray(64 * 2**20)\n"
                              "t = sum(range(3_000_000))\nprint('ok', flush=True)\nsys.stdin.read()"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == b"ok"
        assert group_pids(child.pid) == [child.pid]
        assert server_cpu_seconds(child.pid) > 0
        [(name, rss)] = rss_by_process(child.pid).values()
        assert name.startswith("python") and rss >= 64 * 2**20
        assert os.getpid() not in group_pids(child.pid)
    finally:
        child.communicate(b"", timeout=10)
