"""A synthetic establishment written straight into the database, for the trajectory benchmark (issue 7).

    python -m benchmarks.synthetic --database-url URL [--identities 100000] [--days 365] [--events 10000000]
                                   [--smoke] [--seed 7] [--today YYYY-MM-DD] [--check]

(the command line empties the database first; :func:`generate` wants an initialised database without
identities). What is written, with bulk statements (PostgreSQL ``COPY``; Core ``insert()`` executemany on
other databases, for the tests):

* 3 establishments (FINESS), 12 pôles and 120 services (org units with their parent), 12 relying parties
  (:mod:`benchmarks.synthetic.reference`);
* ``--identities`` people across the contract types of the directory (permanent, fixed_term, replacement,
  interim, vacataire, trainee, contractor), about 35 % with an RPPS number, with their units, roles and
  establishments; some arrive during the period (pending, then activated), fixed-term contracts end
  (suspended, then departed after the grace period), a few go on leave (suspended, reactivated);
* their MIE: a password each, and second factors (TOTP, WebAuthn platform and cross-platform) activated along an
  adoption curve over the ``--days`` days — a rush in the weeks before the policy requires two factors for the
  compliance class (1 January 2026 in the shipped policy), then a slower S-curve — most through an enrollment
  case with an identity check (face to face or FranceConnect+), some by self-service without one; losses and
  replacements, second MIE, suspended and abandoned ones — every MIE with its ``mie_transitions`` history;
* enrollment cases (activated, open, expired, cancelled, rejected) with their transitions, exceptions
  (dérogations) to people and populations, emergency credentials (used, reviewed or not);
* the journal: every change above with its event, and ``--events`` sign-ins (``oidc:code:issued``, details
  ``client_id``, ``class``, ``acr``, ``amr``, ``sid``, ``scope``) spread over the period with weekly and daily
  rhythms (:mod:`benchmarks.synthetic.signins`). The hash chain is real: ``hospiconnect audit verify`` passes
  (:mod:`benchmarks.synthetic.journal`).

The days are the ``--days`` days before ``--today`` (default: the real today); nothing is dated ``--today`` or
later, except contract dates. Deterministic for a given ``--seed`` and ``--today`` (identifiers included),
except the TOTP seeds' encryption nonces.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import time
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import func, select, text

from benchmarks.synthetic.credentials import add_mies_and_cases
from benchmarks.synthetic.grants import add_emergency, add_exceptions
from benchmarks.synthetic.plan import Clock, Plan, add_lifecycle, add_people, add_references
from benchmarks.synthetic.reference import CLIENTS, FULL, SMOKE, Sizes
from benchmarks.synthetic.signins import write_journal
from benchmarks.synthetic.tables import write_tables
from hospiconnect.directory.models import Identity
from hospiconnect.idp import clients as client_services
from hospiconnect.policies import Policy
from hospiconnect.policies.loader import load_policy
from hospiconnect.runtime import Runtime
from hospiconnect.settings import Settings

__all__ = ["FULL", "SMOKE", "Report", "Sizes", "generate", "runtime_for"]


@dataclasses.dataclass
class Report:
    sizes: Sizes
    today: dt.date
    first_day: dt.date
    seconds: float
    rows: dict[str, int]
    journal_events: int
    signin_events: int
    expected: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return {"identities": self.sizes.identities, "days": self.sizes.days, "events": self.sizes.events,
                "today": self.today.isoformat(), "first_day": self.first_day.isoformat(),
                "seconds": round(self.seconds, 1), "rows": self.rows, "journal_events": self.journal_events,
                "signin_events": self.signin_events, "expected": self.expected}


def _ensure_clients(rt: Runtime, policy: Policy) -> None:
    with rt.db.session() as session:
        for client_id, name, cls, _share, scope in CLIENTS:
            client_services.add_client(session, rt.keys, name=name, client_id=client_id, sensitivity=cls,
                                       redirect_uris=[f"https://{client_id}.chu-valmont.example/oidc/callback"],
                                       scopes=scope, classes=list(policy.classes), actor="system:benchmark")
        session.commit()


def generate(rt: Runtime, sizes: Sizes = FULL, *, today: dt.date | None = None, seed: int = 7,
             progress: Callable[[str], None] | None = None) -> Report:
    """Write a synthetic establishment of ``sizes`` into ``rt``'s database (initialised, without identities)."""
    started = time.perf_counter()
    today = today or dt.date.today()
    policy = load_policy(rt.settings.policy_file)
    with rt.db.engine.connect() as conn:
        if conn.scalar(select(func.count()).select_from(Identity)):
            raise SystemExit("the database already holds identities: generate into an empty, initialised database")
    plan = Plan(sizes, Clock(today, sizes.days, policy.timezone), random.Random(seed), policy)
    with rt.db.engine.connect() as conn:
        for table in ("establishments", "org_units", "identity_establishments", "identity_units", "identity_roles",
                      "mies", "mie_transitions", "enrollment_cases", "enrollment_transitions", "policy_exceptions",
                      "emergency_credentials"):
            plan.ids[table] = int(conn.scalar(text(f"SELECT coalesce(max(id), 0) FROM {table}")) or 0)
    add_references(plan)
    add_people(plan)
    add_lifecycle(plan)
    add_mies_and_cases(plan, rt.keys)
    add_exceptions(plan)
    add_emergency(plan)
    if progress:
        progress(f"plan: {len(plan.people):,} identities, {len(plan.mies):,} MIE, "
                 f"{sum(len(v) for v in plan.events.values()):,} events besides sign-ins "
                 f"({time.perf_counter() - started:.1f} s)")
    with rt.db.engine.begin() as conn:
        rows = write_tables(conn, plan)
        if progress:
            progress(f"tables written ({time.perf_counter() - started:.1f} s)")
        writer = write_journal(conn, plan, progress)
    _ensure_clients(rt, policy)  # after the history, so that the journal stays in time order
    with rt.db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("ANALYZE"))
    active_today = sum(1 for p in plan.people if p.active_on(sizes.days))
    expected = {"identities": len(plan.people), "active_today": active_today,
                "mies": len(plan.mies), "cases": len(plan.cases),
                "exceptions": len(plan.exceptions), "emergency": len(plan.emergency)}
    return Report(sizes=sizes, today=today, first_day=plan.clock.first, seconds=time.perf_counter() - started,
                  rows=rows, journal_events=writer.written, signin_events=writer.signins
                  + sum(1 for evs in plan.events.values() for e in evs if e[1] == "oidc:code:issued"),
                  expected=expected)


def runtime_for(url: str, workdir: Path, *, reset: bool = True) -> Runtime:
    """A runtime on ``url`` with a key file in ``workdir``; the database emptied and initialised when ``reset``."""
    from hospiconnect.crypto import generate_key_file

    generate_key_file(workdir / "keys.json")
    settings = Settings(env="test", instance_path=workdir, secret_key_file=workdir / "keys.json",
                        database_url=url, issuer="http://localhost")
    if reset and url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).unlink(missing_ok=True)
    rt = Runtime(settings)
    if reset:
        if url.startswith("postgresql"):
            with rt.db.engine.begin() as conn:
                conn.execute(text("DROP SCHEMA public CASCADE"))
                conn.execute(text("CREATE SCHEMA public"))
        rt.init()
    return rt
