"""PostgreSQL stopped and started again while people sign in (DESIGN.md: "an unexpected failure never loses a
committed record and never leaves half an operation"; SECURITY.md item 22: never a 500).

A ``hospiconnect serve`` (two gunicorn workers) runs on the tests' own PostgreSQL. Four people sign in over
and over through the real login page, each sign-in ending with a code exchange and a refresh-token
rotation; a client whose request fails sends it again until it goes through. Five more sign-ins are held,
each just before one of its steps (login page, password, resume, code exchange, rotation), and that step is
sent while PostgreSQL is down. PostgreSQL is stopped with ``pg_ctl stop -m fast`` (open sessions are cut,
their transactions rolled back), left down for a few seconds and started again. Then:

* while it is down, every answer is a clean 503 — the French page for the browser, an OAuth JSON error
  (``temporarily_unavailable``) for the token endpoint, ``Retry-After`` on both — never a 500, never a
  dropped connection, never a hang;
* once it is back, the same server processes (not restarted) serve every request again at once;
* what failed changed nothing: the same password form, the same code, the same refresh token go through
  after the restart;
* the database holds exactly what the clients saw succeed — one journal entry and one SSO session per
  accepted password, one code per code received, one access and one refresh token per token response,
  nothing revoked, no reuse detected — and the journal's hash chain verifies (``hospiconnect audit verify``),
  while people sign in as well as afterwards.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import Counter
from typing import Callable, Iterator

import pytest
from sqlalchemy import func, select

from hospiconnect.audit import tags
from hospiconnect.audit.models import AuditEvent
from hospiconnect.authenticators.models import Mie
from hospiconnect.db import Database
from hospiconnect.idp.models import AuthorizationCode, SsoSession, Token
from tests.faults.conftest import Site, prepare_site
from tests.faults.services import ThrowawayPostgres, child_pids
from tests.faults.signins import Ledger, Person, SignIn
from tests.multiprocess.live import ServerProcess, running
from tests.oidc_helpers import RegisteredClient

PEOPLE = 4
DOWN_SECONDS = 4.0
#: Before the stop: every person has signed in this many times.
WARM_UP_SIGN_INS = 2
#: After the restart: every person has signed in this many times, within RECOVERY_SECONDS.
SIGN_INS_AFTER = 2
RECOVERY_SECONDS = 20.0
#: No request may take longer, outage or not.
HANG_SECONDS = 10.0
PAUSE_AFTER_FAILURE_SECONDS = 0.1

EXPECTED_SUCCESS = {"authorize": 302, "page": 200, "password": 303, "resume": 302, "token": 200, "refresh": 200}


@pytest.fixture(scope="module")
def site(postgres: ThrowawayPostgres, tmp_path_factory: pytest.TempPathFactory) -> Site:
    return prepare_site(postgres, "hc_postgresql_restart", tmp_path_factory.mktemp("postgresql-restart"))


@pytest.fixture(scope="module")
def server(site: Site) -> Iterator[ServerProcess]:
    with running([site.start_server(workers=2, threads=4)]) as servers:
        yield servers[0]


class Load:
    """Each person signs in again and again from a thread of its own until :meth:`running` ends; a failed
    request is sent again after a short pause, and a sign-in under way is finished before the thread ends."""

    def __init__(self, base_url: str, people: list[Person], rp: RegisteredClient) -> None:
        self.ledger = Ledger()
        self._base_url, self._people, self._rp = base_url, people, rp
        self._stop = threading.Event()
        self._lock = threading.Lock()
        #: (person, started, ended) of every sign-in that went through.
        self.completed: list[tuple[str, float, float]] = []
        self.errors: list[BaseException] = []
        self._threads = [threading.Thread(target=self._run, args=(p,), daemon=True) for p in people]

    def _run(self, person: Person) -> None:
        current: SignIn | None = None
        started = 0.0
        try:
            while True:
                if current is None:
                    if self._stop.is_set():
                        return
                    current, started = SignIn(self._base_url, self.ledger, person, self._rp), time.monotonic()
                if not current.advance():
                    time.sleep(PAUSE_AFTER_FAILURE_SECONDS)
                elif current.done:
                    current.close()
                    with self._lock:
                        self.completed.append((person.user_name, started, time.monotonic()))
                    current = None
        except BaseException as exc:  # reported by the test
            self.errors.append(exc)

    def sign_ins_since(self, moment: float) -> Counter[str]:
        """How many sign-ins each person started after ``moment`` and completed."""
        with self._lock:
            return Counter(name for name, started, _ in self.completed if started >= moment)

    def wait_for(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert not self.errors, self.errors
            assert time.monotonic() < deadline, f"{what} not within {timeout:.0f} s"
            time.sleep(0.05)

    def every_person(self, count: int, since: float) -> Callable[[], bool]:
        return lambda: all(self.sign_ins_since(since)[p.user_name] >= count for p in self._people)

    @contextlib.contextmanager
    def running(self) -> Iterator["Load"]:
        for thread in self._threads:
            thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            for thread in self._threads:
                thread.join(timeout=RECOVERY_SECONDS)
        assert not any(t.is_alive() for t in self._threads), "a sign-in thread is stuck"
        assert not self.errors, self.errors


def held_sign_ins(base_url: str, ledger: Ledger, person: Person, rp: RegisteredClient) -> list[SignIn]:
    """Return one sign-in of ``person`` held before each of its steps."""
    held = []
    for stage in SignIn.STAGES[:-1]:
        sign_in = SignIn(base_url, ledger, person, rp)
        while sign_in.stage != stage:
            assert sign_in.advance(), ledger.exchanges[-1].describe()
        held.append(sign_in)
    return held


def test_postgresql_restarted_under_load(site: Site, server: ServerProcess, postgres: ThrowawayPostgres) -> None:
    people = site.add_people(PEOPLE + 1)
    people, holder = people[:PEOPLE], people[PEOPLE]
    rp = site.add_client()
    site.rt.db.dispose()  # nothing of this process stays connected to the cluster during the outage
    workers_before = child_pids(server.process.pid)
    assert len(workers_before) == 2, workers_before

    load = Load(server.url, people, rp)
    ledger = load.ledger
    held = held_sign_ins(server.url, ledger, holder, rp)
    with load.running():
        load.wait_for(load.every_person(WARM_UP_SIGN_INS, 0.0), 60, "the warm-up sign-ins")
        stopping = time.monotonic()
        postgres.stop("fast")
        down = time.monotonic()
        for sign_in in held:
            stage = sign_in.stage
            assert not sign_in.advance() and sign_in.stage == stage, ledger.exchanges[-1].describe()
        time.sleep(DOWN_SECONDS)
        starting = time.monotonic()
        postgres.start()
        up = time.monotonic()
        for sign_in in held:
            assert sign_in.run(), ledger.exchanges[-1].describe()
            sign_in.close()
        load.wait_for(load.every_person(SIGN_INS_AFTER, up), RECOVERY_SECONDS, "sign-ins after the restart")
        # The journal verifies while the service appends to it (as the daily check of operators runs).
        signed_in = load.sign_ins_since(up).total()
        during = site.cli("audit", "verify", "--json")
        assert load.sign_ins_since(up).total() > signed_in, "the load ran during the check"

    # --- the answers ------------------------------------------------------------------------------------
    exchanges = list(ledger.exchanges)
    unexpected = [e.describe() for e in exchanges
                  if e.status != EXPECTED_SUCCESS[e.step] and not e.is_clean_unavailable()]
    assert not unexpected, "\n".join(unexpected[:20]) + "\n" + server_problems(server)
    slow = [e.describe() for e in exchanges if e.seconds > HANG_SECONDS]
    assert not slow, "\n".join(slow)
    while_down = [e for e in exchanges if e.started >= down and e.ended <= starting]
    assert {e.step for e in while_down} == set(SignIn.STAGES[:-1]), "every step was tried during the outage"
    assert all(e.is_clean_unavailable() for e in while_down), [e.describe() for e in while_down]
    unavailable = [e for e in exchanges if e.status == 503]
    before = [e.describe() for e in unavailable if e.ended < stopping]
    after = [e.describe() for e in unavailable if e.started > up]
    assert not before and not after, (before, after)

    # --- the same processes served again, without a restart ------------------------------------------------
    assert server.process.poll() is None
    assert child_pids(server.process.pid) == workers_before

    # --- the database holds exactly what the clients saw ------------------------------------------------------
    assert during[0] == 0 and json.loads(during[1])["ok"] is True, during
    assert_database_matches(site, ledger, [*people, holder])
    code, out, err = site.cli("audit", "verify", "--json")
    assert code == 0, (out, err)
    report = json.loads(out)
    assert report["ok"] is True
    with database(site) as db, db.session() as s:
        events = s.scalar(select(func.count()).select_from(AuditEvent))
        distinct_hashes = s.scalar(select(func.count(func.distinct(AuditEvent.hash))))
    assert report["checked"] == events == distinct_hashes


def server_problems(server: ServerProcess, limit: int = 120) -> str:
    """The server's log without its access log and its expected outage lines: what to read when an answer
    was not the expected one (a traceback, typically)."""
    lines = [line for line in server.log_tail(2_000_000).splitlines()
             if '" HTTP/1.1" ' not in line and "base de données indisponible" not in line]
    return "\n".join(lines[-limit:])


@contextlib.contextmanager
def database(site: Site) -> Iterator[Database]:
    db = Database(site.database_url)
    try:
        yield db
    finally:
        db.dispose()


def assert_database_matches(site: Site, ledger: Ledger, people: list[Person]) -> None:
    """For every person: one journal entry and one SSO session per accepted password; one code row and one
    ``oidc:code:issued`` per code received, used exactly when it was exchanged; one access and one refresh
    token row per token response, nothing revoked; and no trace of a reuse."""
    keys = site.rt.keys
    by_name = {p.user_name: p for p in people}
    responses = ledger.token_responses()
    with database(site) as db, db.session() as s:
        journal = Counter(s.execute(select(AuditEvent.subject, AuditEvent.tag)).all())
        for person in people:
            accepted = ledger.passwords_accepted[person.user_name]
            codes = [c for c, issued in ledger.codes.items() if issued.person == person.user_name]
            exchanged = [c for c in codes if ledger.codes[c].tokens is not None]
            rotations = [r for r in ledger.refresh_tokens.values()
                         if r.person == person.user_name and r.rotated_to is not None]
            answered = [body for name, body in responses if name == person.user_name]
            assert accepted >= 1
            assert journal[(person.public_id, tags.AUTHN_PASSWORD_SUCCESS)] == accepted, person
            assert journal[(person.public_id, tags.AUTHN_SESSION_OPENED)] == accepted, person
            assert s.scalar(select(func.count()).select_from(SsoSession)
                            .where(SsoSession.identity_id == person.identity_id)) == accepted
            assert journal[(person.public_id, tags.OIDC_CODE_ISSUED)] == len(codes), person
            assert s.scalar(select(func.count()).select_from(AuthorizationCode)
                            .where(AuthorizationCode.identity_id == person.identity_id)) == len(codes)
            assert journal[(person.public_id, tags.OIDC_TOKEN_ISSUED)] == len(exchanged) == len(codes), person
            assert journal[(person.public_id, tags.OIDC_REFRESH_ROTATED)] == len(rotations), person
            for kind in ("access", "refresh"):
                assert s.scalar(select(func.count()).select_from(Token).where(
                    Token.identity_id == person.identity_id, Token.kind == kind)) == len(answered), (person, kind)
            mies = s.scalars(select(Mie).where(Mie.identity_id == person.identity_id)).all()
            assert [(m.type, m.status) for m in mies] == [("password", "active")]
        for code, issued in ledger.codes.items():
            row = s.scalars(select(AuthorizationCode).where(AuthorizationCode.code_hash == keys.keyed_hash(code))).one()
            assert row.identity_id == by_name[issued.person].identity_id
            assert row.used_at is not None
        for name, body in responses:
            for kind in ("access", "refresh"):
                row = s.scalars(select(Token).where(Token.token_hash == keys.keyed_hash(body[f"{kind}_token"]))).one()
                assert row.kind == kind and row.identity_id == by_name[name].identity_id
                assert row.revoked_at is None
        for refresh_token, rotation in ledger.refresh_tokens.items():
            row = s.scalars(select(Token).where(Token.token_hash == keys.keyed_hash(refresh_token))).one()
            assert (row.used_at is not None) == (rotation.rotated_to is not None), rotation
        assert s.scalar(select(func.count()).select_from(Token).where(Token.revoked_at.is_not(None))) == 0
        refused = {tags.OIDC_CODE_REUSED, tags.OIDC_REFRESH_REUSED, tags.OIDC_TOKEN_REFUSED,
                   tags.AUTHN_PASSWORD_FAILURE}
        assert not {tag for (_, tag) in journal if tag in refused}, journal
