"""Production server: gunicorn embedded, so that ``hospiconnect serve`` needs no other command.

The gunicorn master loads no application: each worker builds its own after the fork, so a reload
(``kill -HUP`` on the master, whose PID is in ``--pid FILE``) starts workers that read the key file and the
configuration files again, then lets the old ones finish their requests (``graceful_timeout``) — the
listening socket stays open throughout, so clients see no refusal. The environment is the master's, and so
are the modules the command line had already imported: a new version is deployed by restarting the
instances one after the other (``/readyz`` takes each out of the proxy's rotation meanwhile), not by a reload.

Metrics: the workers count in files of one folder (prometheus_client's multiprocess mode), set here before
any worker exists and emptied at each start, so that ``/metrics`` on any worker adds up the whole server;
gunicorn's ``child_exit`` hook tells the files when a worker is gone.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sys
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from hospiconnect import metrics
from hospiconnect.settings import DEFAULT_FORWARDED_ALLOW_IPS


class _Server(BaseApplication):  # type: ignore[misc]
    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from hospiconnect import create_app

        return create_app()


def _child_exit(server: Any, worker: Any) -> None:
    metrics.mark_process_dead(worker.pid)


def metrics_dir_for(instance_path: Path, port: int) -> Path:
    """Return the metrics folder of a server on ``port``: one per host and port, so that two servers sharing
    an instance folder (the same volume on two hosts, two ports on one) never mix or empty each other's."""
    host = re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname()) or "localhost"
    return instance_path / "metrics" / f"{host}-{port}"


def prepare_metrics_dir(folder: Path) -> None:
    """Empty (or create) ``folder`` and make it the multiprocess folder of this process and its workers.

    Raises RuntimeError when prometheus_client was already imported in single-process mode: the workers,
    forked from this process, would then each count alone.
    """
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    os.environ[metrics.MULTIPROC_ENV] = str(folder)
    values = sys.modules.get("prometheus_client.values")
    if values is not None and not getattr(values.ValueClass, "_multiprocess", False):
        raise RuntimeError(f"prometheus_client was imported before {metrics.MULTIPROC_ENV} was set")


def run_gunicorn(*, host: str, port: int, workers: int, threads: int, pidfile: Path | None = None,
                 forwarded_allow_ips: str = DEFAULT_FORWARDED_ALLOW_IPS, metrics_dir: Path | None = None) -> None:
    """Serve the application with gunicorn until stopped. ``metrics_dir``: see :func:`prepare_metrics_dir`
    (None: each worker keeps its metrics in memory, which suits one worker)."""
    if metrics_dir is not None:
        prepare_metrics_dir(metrics_dir)
    options: dict[str, Any] = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "graceful_timeout": 30,
        "timeout": 60,
        "accesslog": "-",
        "forwarded_allow_ips": forwarded_allow_ips,
        "child_exit": _child_exit,
    }
    if pidfile is not None:
        options["pidfile"] = str(pidfile)
    _Server(options).run()
