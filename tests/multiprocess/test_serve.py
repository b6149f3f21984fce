"""``hospiconnect serve`` as operators run it: a real gunicorn master with two workers (their number from
HOSPICONNECT_WORKERS), a pid file, ``/readyz``, ``/metrics`` adding up both workers, and a graceful reload by
``kill -HUP $(cat FILE)`` that replaces the workers while requests keep being answered — and keeps what the
replaced workers had counted.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest
import requests
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from hospiconnect.runtime import Runtime
from hospiconnect.server import metrics_dir_for
from hospiconnect.settings import Settings
from tests.multiprocess.live import child_pids, free_port, running, server_env, start_serve, ServerProcess

HTTP_TIMEOUT_SECONDS = 30
WAIT_SECONDS = 60.0
HEALTHZ = {"endpoint": "home.healthz", "method": "GET", "status_class": "2xx"}
COUNT = "hospiconnect_http_request_duration_seconds_count"


@dataclasses.dataclass(frozen=True)
class Served:
    server: ServerProcess
    pidfile: Path
    metrics_dir: Path


@pytest.fixture(scope="module")
def served(_schema: Runtime, base_settings: Settings, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Served]:
    work = tmp_path_factory.mktemp("serve")
    instance = work / "instance"
    instance.mkdir()
    port = free_port()
    # What a previous run of the same server left: emptied at start.
    folder = metrics_dir_for(instance, port)
    folder.mkdir(parents=True)
    (folder / "counter_99999.db").write_bytes(b"values of an earlier run")
    env = server_env(database_url=base_settings.database_url, key_file=base_settings.secret_key_file,
                     instance_path=instance, issuer=f"http://localhost:{port}",
                     extra={"HOSPICONNECT_WORKERS": "2", "HOSPICONNECT_THREADS": "2"})
    pidfile = work / "run" / "hospiconnect.pid"
    pidfile.parent.mkdir()
    server = start_serve("serve", env, work, options=["--pid", str(pidfile)], port=port)
    with running([server]):
        yield Served(server, pidfile, folder)


def wait_for(condition, what: str, served: Served):  # type: ignore[no-untyped-def]
    """Return ``condition()`` once truthy; fail with the server's output after :data:`WAIT_SECONDS`."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not seen after {WAIT_SECONDS:.0f} s:\n{served.server.log_tail()}")
        time.sleep(0.1)


def two_workers(master: int, unlike: set[int] = frozenset()) -> set[int] | None:  # type: ignore[assignment]
    """The master's workers when there are two of them and none is in ``unlike``, else None."""
    pids = child_pids(master)
    return pids if len(pids) == 2 and not pids & unlike else None


def workers(served: Served) -> set[int]:
    """The two workers of the master, once both exist."""
    master = int(served.pidfile.read_text())
    return wait_for(lambda: two_workers(master), "two workers", served)


def healthz_count(served: Served) -> float:
    response = requests.get(f"{served.server.url}/metrics", timeout=HTTP_TIMEOUT_SECONDS)
    assert response.status_code == 200, response.text
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == COUNT and sample.labels == HEALTHZ:
                return sample.value
    return 0.0


def count_of_worker(served: Served, pid: int) -> float:
    """What worker ``pid`` alone counted, read from its own file of the multiprocess folder."""
    path = served.metrics_dir / f"histogram_{pid}.db"
    if not path.exists():
        return 0.0
    for metric in MultiProcessCollector.merge([str(path)]):
        for sample in metric.samples:
            if sample.name == COUNT and sample.labels == HEALTHZ:
                return sample.value
    return 0.0


def healthz(served: Served) -> int:
    # A new connection each time (no session): the workers take turns at accepting them.
    return requests.get(f"{served.server.url}/healthz", timeout=HTTP_TIMEOUT_SECONDS).status_code


def test_workers_come_from_the_environment_and_the_master_writes_its_pid(served):
    assert int(served.pidfile.read_text()) == served.server.process.pid
    assert len(workers(served)) == 2
    assert not (served.metrics_dir / "counter_99999.db").exists()


def test_ready_on_a_current_schema(served):
    response = requests.get(f"{served.server.url}/readyz", timeout=HTTP_TIMEOUT_SECONDS)
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready",
                               "checks": {"database": "ok", "redis": "not_configured", "migrations": "ok"}}
    assert response.headers["Cache-Control"] == "no-store"


def test_metrics_add_up_both_workers(served):
    pids = workers(served)
    before = healthz_count(served)
    sent = 0
    with ThreadPoolExecutor(max_workers=6) as pool:
        for _ in range(20):
            statuses = list(pool.map(lambda _: healthz(served), range(12)))
            assert statuses == [200] * 12
            sent += 12
            if all(count_of_worker(served, pid) > 0 for pid in pids):
                break
    per_worker = {pid: count_of_worker(served, pid) for pid in pids}
    assert all(count > 0 for count in per_worker.values()), per_worker  # both workers answered some
    total = healthz_count(served)
    assert total >= before + sent
    assert total == sum(per_worker.values())  # what one worker answers is the sum of both


def test_hup_reloads_new_workers_while_requests_keep_succeeding(served):
    master = int(served.pidfile.read_text())
    old = workers(served)
    before = healthz_count(served)
    results: list[object] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            try:
                results.append(healthz(served))
            except requests.RequestException as exc:
                results.append(repr(exc))

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(results) >= 10, "requests before the reload", served)
        os.kill(master, signal.SIGHUP)
        new = wait_for(lambda: two_workers(master, unlike=old), "two new workers", served)
        answered = len(results)
        wait_for(lambda: len(results) >= answered + 20, "requests to the new workers", served)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=HTTP_TIMEOUT_SECONDS)
    assert served.server.process.poll() is None and int(served.pidfile.read_text()) == master
    assert not new & old and len(new) == 2
    assert results and all(status == 200 for status in results), [r for r in results if r != 200][:5]
    # The replaced workers' counts stay in the total: a counter never goes back at a reload.
    assert healthz_count(served) == before + len(results)
