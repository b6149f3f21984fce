"""Generate a synthetic establishment into a database (emptied first): ``python -m benchmarks.synthetic --help``."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.synthetic import FULL, SMOKE, Sizes, generate, runtime_for  # noqa: E402
from benchmarks.synthetic.check import check  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description="Generate a synthetic establishment for the trajectory benchmark.")
    parser.add_argument("--database-url", required=True, help="emptied first (its schema is dropped and recreated)")
    parser.add_argument("--identities", type=int, default=FULL.identities)
    parser.add_argument("--days", type=int, default=FULL.days)
    parser.add_argument("--events", type=int, default=FULL.events)
    parser.add_argument("--smoke", action="store_true", help=f"small sizes: {SMOKE}")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--today", type=dt.date.fromisoformat, default=None)
    parser.add_argument("--check", action="store_true", help="check the generated data's consistency")
    args = parser.parse_args()
    sizes = SMOKE if args.smoke else Sizes(args.identities, args.days, args.events)
    with tempfile.TemporaryDirectory() as tmp:
        rt = runtime_for(args.database_url, Path(tmp))
        report = generate(rt, sizes, today=args.today, seed=args.seed, progress=lambda m: print(m, flush=True))
        print(json.dumps(report.as_dict()))
        if args.check:
            problems = check(rt, report)
            print("consistent" if not problems else "\n".join(problems))
            rt.db.dispose()
            if problems:
                raise SystemExit(1)
        rt.db.dispose()


if __name__ == "__main__":
    main()
