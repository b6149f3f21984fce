"""Side-by-side benchmark: HospiConnect and node-oidc-provider doing the same sign-in work on this machine.

    npm ci --prefix benchmarks/peer
    python benchmarks/side_by_side.py --database-url postgresql://postgres@127.0.0.1:5432/hospiconnect_bench
                                      [--smoke] [--providers hospiconnect peer] [--no-pin]

The peer (``benchmarks/peer/server.mjs``) is a minimal host application around the npm ``oidc-provider``
(OpenID Certified) that does what HospiConnect does for a sign-in: argon2id password at the same parameters
(m = 19 MiB, t = 2, p = 1), then a single-use TOTP step, consent without a page, code flow with PKCE S256,
ES256 ID tokens, refresh tokens rotated at each use, every artefact stored in PostgreSQL (its own schema
``peer`` in the same database). Both get the same people (same usernames, password and TOTP seeds) and the
same client, and the same load generator (:mod:`benchmarks.loadgen`) drives both.

Each server runs as one process (HospiConnect: one gunicorn worker with 4 threads, plus gunicorn's master;
the peer: one node process) pinned to the first CPU, the load generator on the others, PostgreSQL where the
system puts it. For each provider, after a short warm-up:

1. sign-ins, closed loop (``--concurrency`` browsers): the maximum; sign-ins per second of server CPU (per
   core), and that as a percentage of the argon2 bound (argon2id verifications per CPU-second in one Python
   thread with argon2-cffi; the peer's library, @node-rs/argon2, is measured too);
2. sign-ins, open loop at 80 % of that maximum: median and p99 latency from the scheduled start;
3. refresh grants, closed loop: the maximum and per core; 4. refresh grants, open loop at 80 % of it;
and the peak resident memory of each server process over the four runs.

Prints a table, writes ``benchmarks/results/side_by_side.json`` (``--smoke``: ``side_by_side-smoke.json``) and
exits with status 1 when a server does not start or an operation fails. Targets (HospiConnect): sign-ins per
core ≥ 80 % of the argon2 bound, refresh grants per core ≥ the peer's, p99 < 250 ms at 80 % of the maximum.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import servers  # noqa: E402
from benchmarks.loadgen import (  # noqa: E402
    Account, Adapter, HospiConnectAdapter, PeerAdapter, RefreshChains, closed_loop, open_loop, sign_in)
from benchmarks.measure import DatabaseBackends, MemorySampler, argon2_bound, measured  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
LOAD_FRACTION = 0.8
P99_TARGET_MS = 250.0
BOUND_TARGET = 0.8


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True,
                        help="PostgreSQL database for both servers (emptied: schemas public and peer)")
    parser.add_argument("--smoke", action="store_true", help="a quick run (< 60 s) that checks the set-up")
    parser.add_argument("--providers", nargs="+", choices=["hospiconnect", "peer"], default=["hospiconnect", "peer"])
    parser.add_argument("--sign-ins", type=int, help="sign-ins of the closed-loop run (default 300; smoke 10)")
    parser.add_argument("--concurrency", type=int, help="browsers / refresh chains at once (default 8; smoke 4)")
    parser.add_argument("--refresh-seconds", type=float, help="closed-loop refresh run (default 20; smoke 3)")
    parser.add_argument("--open-seconds", type=float, help="each open-loop run at 80 %% (default 20; smoke 3)")
    parser.add_argument("--people", type=int, help="accounts created (default: enough for every run)")
    parser.add_argument("--threads", type=int, default=4, help="threads of HospiConnect's one worker")
    parser.add_argument("--port", type=int, default=5393, help="HospiConnect's port; the peer's is the next one")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the server and the load generator")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    defaults = dict(sign_ins=10, concurrency=4, refresh_seconds=3.0, open_seconds=3.0, warmup=2) if args.smoke \
        else dict(sign_ins=300, concurrency=8, refresh_seconds=20.0, open_seconds=20.0, warmup=10)
    for name, value in defaults.items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    # The open-loop sign-ins need one new person each; 40 per second of the run covers a server four times as
    # fast as HospiConnect's recorded maximum (a run that would need more is cut short and says so).
    args.open_people = int(args.open_seconds * (8 if args.smoke else 40))
    args.people = args.people or args.warmup + args.sign_ins + args.open_people
    args.output = args.output or RESULTS / ("side_by_side-smoke.json" if args.smoke else "side_by_side.json")
    return args


def machine() -> dict[str, Any]:
    """What the figures were measured on (and how busy it was when the run started)."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")),
                 platform.processor())
    mem_kib = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                       if line.startswith("MemTotal")))
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    return {"cpu": model, "cores": os.cpu_count(), "memory_gib": round(mem_kib / 2**20, 1),
            "kernel": platform.release(), "python": platform.python_version(), "node": node,
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}


def cpu_split(no_pin: bool) -> tuple[set[int] | None, set[int] | None]:
    """The server on the first CPU, the load generator on the others (None: no pinning)."""
    cpus = sorted(os.sched_getaffinity(0))
    if no_pin or len(cpus) < 2:
        return None, None
    return {cpus[0]}, set(cpus[1:])


def run_provider(adapter: Adapter, proc: subprocess.Popen, accounts: list[Account], args: argparse.Namespace,
                 backends: DatabaseBackends) -> dict[str, Any]:
    """The four runs against one started server (see the module's docstring)."""
    warm, rest = accounts[:args.warmup], accounts[args.warmup:]
    closed, open_accounts = rest[:args.sign_ins], rest[args.sign_ins:]
    warmup = closed_loop(lambda i: sign_in(adapter, warm[i]), min(args.concurrency, len(warm)), count=len(warm))
    out: dict[str, Any] = {"warmup_errors": warmup.errors[:5]}
    tokens = [t["refresh_token"] for t in warmup.results]
    with MemorySampler(proc.pid) as memory:
        out["sign_ins_max"], run = measured(proc.pid, lambda: closed_loop(
            lambda i: sign_in(adapter, closed[i]), args.concurrency, count=len(closed)), backends)
        tokens += [t["refresh_token"] for t in run.results]
        rate = LOAD_FRACTION * out["sign_ins_max"]["per_second"]
        wanted = math.ceil(rate * args.open_seconds)
        count = min(wanted, len(open_accounts))
        if rate > 0 and count > 0:
            out["sign_ins_80"], run = measured(proc.pid, lambda: open_loop(
                lambda i: sign_in(adapter, open_accounts[i]), rate, count), backends)
            out["sign_ins_80"] |= {"rate": round(rate, 1), "cut_short_for_want_of_people": count < wanted}
            tokens += [t["refresh_token"] for t in run.results]
        chains = RefreshChains(adapter, tokens)
        out["refresh_max"], _ = measured(proc.pid, lambda: closed_loop(
            chains.step, min(args.concurrency, len(chains)), seconds=args.refresh_seconds), backends)
        rate = LOAD_FRACTION * out["refresh_max"]["per_second"]
        if rate > 0:
            out["refresh_80"], _ = measured(proc.pid, lambda: open_loop(
                chains.step, rate, math.ceil(rate * args.open_seconds), max_in_flight=min(64, len(chains))),
                backends)
            out["refresh_80"]["rate"] = round(rate, 1)
    out["memory"] = memory.report()
    out["memory_total_mib"] = round(sum(p["peak_rss_mib"] for p in out["memory"]), 1)
    return out


@contextlib.contextmanager
def started(name: str, args: argparse.Namespace, prepared: servers.Prepared, work: Path,
            cpus: set[int] | None) -> Iterator[tuple[Adapter, subprocess.Popen]]:
    """Start one provider, yield its adapter and process, stop it; on failure show the end of its log."""
    log_path = work / f"{name}.log"
    with log_path.open("wb") as log:
        try:
            if name == "hospiconnect":
                port = args.port
                proc = servers.start_hospiconnect(prepared.env, port, workers=1, threads=args.threads, cpus=cpus,
                                                  log=log)
                adapter: Adapter = HospiConnectAdapter(f"http://127.0.0.1:{port}", prepared.client)
            else:
                port = args.port + 1
                proc = servers.start_peer(args.database_url, port, accounts=prepared.accounts,
                                          password_hash=prepared.password_hash, client=prepared.client,
                                          work=work, cpus=cpus, log=log)
                adapter = PeerAdapter(f"http://127.0.0.1:{port}", prepared.client)
        except Exception:
            log.flush()
            print(log_path.read_text(errors="replace")[-3000:], file=sys.stderr)
            raise
        try:
            yield adapter, proc
        finally:
            servers.stop(proc)
            log.flush()
            if any(word in log_path.read_text(errors="replace") for word in ("Traceback", "peer ")):
                print(f"--- end of {name}'s log", file=sys.stderr)
                print(log_path.read_text(errors="replace")[-3000:], file=sys.stderr)


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def compare(result: dict[str, Any]) -> None:
    """Add the ratios HospiConnect/peer and the targets' verdicts to ``result``."""
    providers = result["providers"]
    hc, peer = providers.get("HospiConnect"), providers.get("node-oidc-provider")
    bounds = result["argon2_bound"]
    for data in providers.values():
        per_core = data["sign_ins_max"].get("per_core")
        for key, bound in (("python", "argon2_cffi"), ("node", "node_rs_argon2")):
            if key in bounds:
                data[f"sign_ins_per_core_percent_of_{bound}_bound"] = \
                    round(100 * per_core / bounds[key]["per_cpu_second"], 1) if per_core else None
    if hc and peer:
        result["ratios_hospiconnect_over_peer"] = {
            f"{run}.{key}": _ratio(hc.get(run, {}).get(key), peer.get(run, {}).get(key))
            for run in ("sign_ins_max", "refresh_max", "sign_ins_80", "refresh_80")
            for key in ("per_second", "per_core", "median_ms", "p99_ms")} | {
            "memory_total_mib": _ratio(hc["memory_total_mib"], peer["memory_total_mib"])}
    if hc:
        targets: dict[str, Any] = {
            "sign_ins_per_core_at_least_80_percent_of_argon2_bound":
                (hc["sign_ins_per_core_percent_of_argon2_cffi_bound"] or 0) >= 100 * BOUND_TARGET,
            "sign_ins_p99_below_250_ms_at_80_percent": hc.get("sign_ins_80", {}).get("p99_ms", math.inf) < P99_TARGET_MS,
            "refresh_p99_below_250_ms_at_80_percent": hc.get("refresh_80", {}).get("p99_ms", math.inf) < P99_TARGET_MS,
        }
        if peer:
            targets["refresh_per_core_at_least_peer"] = \
                (hc["refresh_max"].get("per_core") or 0) >= (peer["refresh_max"].get("per_core") or math.inf)
        result["targets_met"] = targets


def _cell(run: dict[str, Any] | None, key: str) -> str:
    value = (run or {}).get(key)
    return "—" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def table(result: dict[str, Any]) -> str:
    """The figures as a plain-text table: one row per figure, one column per provider, then the ratio."""
    providers = result["providers"]
    names = list(providers)
    ratios = result.get("ratios_hospiconnect_over_peer", {})
    rows: list[tuple[str, list[str], str]] = []
    for run, label in (("sign_ins_max", "sign-ins, max"), ("sign_ins_80", "sign-ins at 80 %"),
                       ("refresh_max", "refresh grants, max"), ("refresh_80", "refresh grants at 80 %")):
        for key, unit in (("per_second", "/s"), ("per_core", "/s per core"), ("median_ms", "median ms"),
                          ("p99_ms", "p99 ms"), ("server_cpu_s", "server CPU s"),
                          ("server_cores_busy", "server, cores busy"), ("db_cpu_s", "database CPU s"),
                          ("loadgen_cores_busy", "load generator, cores busy")):
            if run.endswith("_80") and key in ("per_core", "server_cpu_s", "db_cpu_s", "loadgen_cores_busy"):
                continue
            rows.append((f"{label}: {unit}", [_cell(providers[n].get(run), key) for n in names],
                         _cell(ratios, f"{run}.{key}")))
    for bound, library in (("argon2_cffi", "argon2-cffi"), ("node_rs_argon2", "@node-rs/argon2")):
        rows.append((f"sign-ins per core, % of the {library} bound",
                     [_cell(providers[n], f"sign_ins_per_core_percent_of_{bound}_bound") for n in names], ""))
    rows.append(("peak RSS, all processes (MiB)", [_cell(providers[n], "memory_total_mib") for n in names],
                 _cell(ratios, "memory_total_mib")))
    rows.append(("peak RSS per process (MiB)",
                 [", ".join(f"{p['name']} {p['peak_rss_mib']:g}" for p in providers[n]["memory"]) for n in names], ""))
    header = ["figure", *names, "HospiConnect / peer"]
    width = [max(len(header[0]), *(len(r[0]) for r in rows))] + \
        [max(len(n), *(len(r[1][i]) for r in rows)) for i, n in enumerate(names)] + [len(header[-1])]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, width))]
    lines += ["  ".join(c.ljust(w) for c, w in zip([label, *cells, ratio], width)) for label, cells, ratio in rows]
    bound = result["argon2_bound"]
    lines.append(f"argon2 bound: {bound['python']['per_cpu_second']:g} verifications per CPU-second (argon2-cffi); "
                 f"{_cell(bound.get('node'), 'per_cpu_second')} with @node-rs/argon2")
    for name, met in result.get("targets_met", {}).items():
        lines.append(f"target {name}: {'met' if met else 'NOT met'}")
    return "\n".join(lines)


def main() -> int:
    args = parse_args()
    server_cpus, loadgen_cpus = cpu_split(args.no_pin)
    if loadgen_cpus:
        os.sched_setaffinity(0, loadgen_cpus)
    started_at = time.time()
    result: dict[str, Any] = {
        "date": dt.date.today().isoformat(), "smoke": args.smoke, "machine": machine(),
        "pinning": {"server": sorted(server_cpus or []), "load_generator": sorted(loadgen_cpus or [])},
        "settings": {"sign_ins": args.sign_ins, "concurrency": args.concurrency,
                     "refresh_seconds": args.refresh_seconds, "open_seconds": args.open_seconds,
                     "load_fraction": LOAD_FRACTION, "people": args.people, "warmup": args.warmup,
                     "hospiconnect_workers": 1, "hospiconnect_threads": args.threads},
        "providers": {}}
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print(f"préparation de {args.people} comptes…", flush=True)
        prepared = servers.prepare_hospiconnect(args.database_url, work, args.people,
                                                f"http://127.0.0.1:{args.port}")
        prepared.runtime.db.dispose()
        print(f"comptes prêts ({time.time() - started_at:.0f} s); borne argon2…", flush=True)
        result["argon2_bound"] = {"python": argon2_bound(10 if args.smoke else 50)}
        if "peer" in args.providers:
            result["argon2_bound"]["node"] = {
                "library": "@node-rs/argon2",
                "per_cpu_second": round(servers.node_argon2_bound(prepared.password_hash, 10 if args.smoke else 50,
                                                                  server_cpus), 1)}
        backends = DatabaseBackends(args.database_url)
        result["machine"]["postgresql"] = backends.server_version()
        try:
            for name in args.providers:
                with started(name, args, prepared, work, server_cpus) as (adapter, proc):
                    print(f"{adapter.name}… ({time.time() - started_at:.0f} s)", flush=True)
                    data = run_provider(adapter, proc, prepared.accounts, args, backends)
                result["providers"][adapter.name] = data
                runs = [data.get(k, {}) for k in ("sign_ins_max", "sign_ins_80", "refresh_max", "refresh_80")]
                if data["warmup_errors"] or any(r.get("errors") for r in runs) or not all(runs):
                    failed = True
                    print(f"{adapter.name}: failed operations: "
                          f"{data['warmup_errors'] or [r.get('first_errors') for r in runs]}", file=sys.stderr)
        except Exception as exc:  # a server that did not start: the run has failed, the figures so far are kept
            failed = True
            result["failure"] = f"{type(exc).__name__}: {exc}"
            print(result["failure"], file=sys.stderr)
        finally:
            backends.close()
    compare(result)
    result["failed"] = failed
    result["duration_s"] = round(time.time() - started_at, 1)
    print(table(result))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"written to {args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
