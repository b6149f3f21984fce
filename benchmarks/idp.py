"""Identity-provider benchmark over HTTP, against the production server (gunicorn), on PostgreSQL.

    python benchmarks/idp.py --database-url postgresql://postgres@127.0.0.1:5432/hc_bench [--workers 1 2]

For each worker count it starts ``hospiconnect serve``, then measures:
- complete sign-ins: /authorize → password page → TOTP page → code → /token (PKCE, client_secret_basic),
  each by a different person (a TOTP time step is accepted once per person);
- refresh-token grants (rotation) in a loop.
The load generator runs on the same 2-core machine (it competes for the CPU): figures are per second of
wall time, and per second of CPU used by the server's processes (read from /proc) — the "per core" figure.
Targets: ≥ 30 sign-ins/s per core and ≥ 600 refresh grants/s per core. The scenario and the measurements are
those of :mod:`benchmarks.loadgen`, which ``benchmarks/side_by_side.py`` also drives against node-oidc-provider.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.loadgen import HospiConnectAdapter, RefreshChains, closed_loop, sign_in  # noqa: E402
from benchmarks.measure import measured  # noqa: E402
from benchmarks.servers import prepare_hospiconnect, start_hospiconnect, stop  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--sign-ins", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--refresh-seconds", type=float, default=15)
    parser.add_argument("--port", type=int, default=5391)
    args = parser.parse_args()
    results = []
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        people = args.sign_ins * len(args.workers)
        print(f"préparation de {people} comptes…", flush=True)
        prepared = prepare_hospiconnect(args.database_url, Path(tmp), people, f"http://127.0.0.1:{args.port}")
        adapter = HospiConnectAdapter(f"http://127.0.0.1:{args.port}", prepared.client)
        for round_index, workers in enumerate(args.workers):
            proc = start_hospiconnect(prepared.env, args.port, workers=workers)
            try:
                batch = prepared.accounts[round_index * args.sign_ins:(round_index + 1) * args.sign_ins]
                sign_ins, run = measured(proc.pid, lambda: closed_loop(
                    lambda i: sign_in(adapter, batch[i]), args.concurrency, count=len(batch)))
                chains = RefreshChains(adapter, [tokens["refresh_token"] for tokens in run.results[:args.concurrency]])
                refresh, _run = measured(proc.pid, lambda: closed_loop(
                    chains.step, args.concurrency, seconds=args.refresh_seconds))
            finally:
                stop(proc)
            failed = failed or bool(sign_ins["errors"] or refresh["errors"])
            row = {"workers": workers, "sign_ins": sign_ins, "refresh": refresh,
                   "sign_ins_per_worker": round(sign_ins["per_second"] / workers, 1),
                   "refresh_per_worker": round(refresh["per_second"] / workers, 1)}
            results.append(row)
            print(f"{workers} worker(s): sign-ins {sign_ins['per_second']}/s (median {sign_ins.get('median_ms')} ms, "
                  f"p99 {sign_ins.get('p99_ms')} ms; {sign_ins['per_core']} per second of server CPU); "
                  f"refresh {refresh['per_second']}/s (median {refresh.get('median_ms')} ms, "
                  f"p99 {refresh.get('p99_ms')} ms; {refresh['per_core']} per second of server CPU)"
                  + (f"; errors: {sign_ins.get('first_errors', [])} {refresh.get('first_errors', [])}"
                     if sign_ins["errors"] or refresh["errors"] else ""), flush=True)
        prepared.runtime.db.dispose()
    print(json.dumps(results))
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
