"""Directory benchmark: import a generated HR file of N rows, then time SCIM filtered list queries.

    python benchmarks/directory.py [--rows 100000] [--database-url URL] [--repeat 30]

Without --database-url a temporary SQLite file is used. With a PostgreSQL URL the database is emptied
first (its schema is dropped and recreated). Prints a table and one JSON line with every figure.
Targets (issue "Foundation and directory"): import of 100,000 rows < 60 s; a SCIM filter query returning
one page at 100,000 identities < 50 ms median on PostgreSQL.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import func, select, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hospiconnect import appctx, create_app  # noqa: E402
from hospiconnect.apitokens.services import create_token  # noqa: E402
from hospiconnect.crypto import generate_key_file  # noqa: E402
from hospiconnect.devtools.hrfile import generate_hr_csv  # noqa: E402
from hospiconnect.directory.importer import import_file  # noqa: E402
from hospiconnect.directory.models import Identity  # noqa: E402
from hospiconnect.runtime import Runtime  # noqa: E402
from hospiconnect.settings import Settings  # noqa: E402


def _prepare(url: str | None, workdir: Path) -> Runtime:
    generate_key_file(workdir / "keys.json")
    settings = Settings(env="test", instance_path=workdir, secret_key_file=workdir / "keys.json",
                        database_url=url or f"sqlite:///{workdir / 'bench.db'}", issuer="http://localhost")
    rt = Runtime(settings)
    if url:
        with rt.db.engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    rt.init()
    return rt


def _queries(session, total: int) -> dict[str, str]:  # type: ignore[no-untyped-def]
    sample = session.scalars(select(Identity).where(Identity.rpps.is_not(None)).order_by(Identity.id)
                             .offset(min(5000, total // 4)).limit(1)).one()
    family = sample.usage_name or sample.birth_family_name
    return {
        "userName eq": f'userName eq "{sample.user_name}"',
        "externalId eq": f'externalId eq "{sample.external_id}"',
        "rpps eq": f'urn:hospiconnect:scim:schemas:extension:2.0:User:rpps eq "{sample.rpps}"',
        "familyName eq": f'name.familyName eq "{family}"',
        "familyName sw + active": f'name.familyName sw "{family[:3]}" and active eq true',
        "contractType + unit": ('urn:hospiconnect:scim:schemas:extension:2.0:User:contractType eq "interim" '
                                f'and urn:hospiconnect:scim:schemas:extension:2.0:User:units eq "{sample.unit_codes[0]}"'
                                if sample.unit_codes else 'active eq true'),
        "meta.lastModified gt (sorted)": 'meta.lastModified gt "2000-01-01T00:00:00Z"&sortBy=name.familyName',
    }


def run(rows: int, url: str | None, repeat: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rt = _prepare(url, work)
        backend = "postgresql" if url else "sqlite"
        csv_path = work / "rh.csv"
        t0 = time.perf_counter()
        generate_hr_csv(csv_path, rows, seed=42, today=dt.date(2026, 11, 27))
        generated = time.perf_counter() - t0
        t0 = time.perf_counter()
        with rt.db.session() as session:
            report = import_file(session, csv_path, today=dt.date(2026, 11, 27))
        import_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        with rt.db.session() as session:
            again = import_file(session, csv_path, today=dt.date(2026, 11, 27))
        reimport_seconds = time.perf_counter() - t0
        with rt.db.session() as session:
            total = session.scalar(select(func.count()).select_from(Identity))
            _, token = create_token(session, rt.keys, name="bench", scopes=["scim"], actor="bench")
            queries = _queries(session, total or 0)
        if url:
            with rt.db.engine.begin() as conn:
                conn.execute(text("ANALYZE"))
        app = create_app(rt.settings)
        app.extensions[appctx.EXTENSION] = rt
        client = app.test_client()
        headers = {"Authorization": f"Bearer {token}"}
        results: dict[str, dict[str, float]] = {}
        for name, flt in queries.items():
            path = f"/scim/v2/Users?count=50&filter={flt}"
            timings = []
            for i in range(repeat + 3):
                t0 = time.perf_counter()
                response = client.get(path, headers=headers)
                elapsed = (time.perf_counter() - t0) * 1000
                if response.status_code != 200:
                    raise SystemExit(f"{name}: HTTP {response.status_code} {response.get_data(as_text=True)[:200]}")
                if i >= 3:  # warm-up excluded
                    timings.append(elapsed)
            timings.sort()
            results[name] = {"median_ms": round(statistics.median(timings), 1),
                             "p95_ms": round(timings[int(len(timings) * 0.95) - 1], 1),
                             "results": response.get_json()["totalResults"]}
        rt.db.dispose()
        return {"backend": backend, "rows": rows, "identities": total, "generate_s": round(generated, 1),
                "import_s": round(import_seconds, 1), "created": report.counts()["created"],
                "reimport_unchanged_s": round(reimport_seconds, 1), "scim": results,
                "reimport_counts": again.counts()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    result = run(args.rows, args.database_url, args.repeat)
    print(f"\n== Directory benchmark: {result['backend']}, {result['identities']} identities")
    print(f"import of {result['rows']} rows: {result['import_s']} s   (unchanged re-import: "
          f"{result['reimport_unchanged_s']} s)")
    print(f"{'SCIM filter (page of 50)':38} {'median':>8} {'p95':>8} {'results':>8}")
    for name, figures in result["scim"].items():  # type: ignore[union-attr]
        print(f"{name:38} {figures['median_ms']:>6} ms {figures['p95_ms']:>6} ms {figures['results']:>8}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
