"""Append events to the journal and verify its hash chain.

An event is recorded in the caller's session and written when that transaction commits, so it commits or
rolls back with the change it records. Appends are serialised by the single ``audit_head`` row, locked
first: on PostgreSQL a row lock held until commit, on SQLite the database write lock; since the events of a
transaction are written together as it commits, the lock is held for the commit only. Each entry's hash
covers its fields and the previous entry's hash; ``seq`` is contiguous, so a deleted row is found as well as
a changed one. On PostgreSQL one statement does the whole append — lock the head, chain the entries (the
database computes their SHA-256 over the canonical form built here, see :func:`_chained_append`), insert
them, move the head — so a request that journals pays one round trip for it and holds the lock for the
commit alone.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import json
from typing import Any, Iterable, NoReturn

from sqlalchemy import bindparam, event, select, text, update
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction
from sqlalchemy.sql.util import find_tables

from hospiconnect import metrics
from hospiconnect.audit.models import GENESIS_HASH, AuditEvent, AuditHead
from hospiconnect.audit.tags import TAG_RE
from hospiconnect.db import utcnow
from hospiconnect.errors import HospiConnectError

OUTCOMES = ("success", "failure", "refused", "info")


def _canonical(event: AuditEvent) -> bytes:
    payload = {
        "seq": event.seq,
        "occurred_at": event.occurred_at.astimezone(dt.timezone.utc).isoformat(timespec="microseconds"),
        "tag": event.tag,
        "actor": event.actor,
        "subject": event.subject,
        "client_ip": event.client_ip,
        "outcome": event.outcome,
        "details": event.details,
        "prev_hash": event.prev_hash,
    }
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def compute_hash(event: AuditEvent) -> str:
    return hashlib.sha256(_canonical(event)).hexdigest()


def _ensure_head(session: Session) -> None:
    if session.get(AuditHead, 1) is None:
        session.add(AuditHead(id=1, seq=0, last_hash=GENESIS_HASH))
        session.flush()


# Events recorded in a session wait here (``Session.info``) until the transaction commits.
_PENDING = "hospiconnect.audit.pending"
# Rows per INSERT statement when appending; on PostgreSQL, up to _CTE_ROWS rows are appended in one statement.
_CHUNK = 500
_CTE_ROWS = 20
_COLUMNS = ("seq", "occurred_at", "tag", "actor", "subject", "client_ip", "outcome", "details", "prev_hash", "hash")


def _text(value: str) -> str:
    # Actors and subjects may quote what a request sent; PostgreSQL refuses NUL in text (details are JSON,
    # where it is escaped already).
    return value.replace("\x00", "\ufffd")


def _event(tag: str, actor: str, subject: str | None, client_ip: str | None, outcome: str,
           details: dict[str, Any] | None, occurred_at: dt.datetime) -> AuditEvent:
    if not TAG_RE.match(tag):
        raise ValueError(f"bad audit tag {tag!r}")
    if outcome not in OUTCOMES:
        raise ValueError(f"bad audit outcome {outcome!r}")
    return AuditEvent(occurred_at=occurred_at, tag=tag, actor=_text(actor)[:200],
                      subject=_text(subject)[:200] if subject else None,
                      client_ip=_text(client_ip) if client_ip else None, outcome=outcome,
                      details=json.dumps(details or {}, sort_keys=True, ensure_ascii=False, default=str))


def record(
    session: Session,
    tag: str,
    *,
    actor: str,
    subject: str | None = None,
    client_ip: str | None = None,
    outcome: str = "success",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Record one event in ``session``'s transaction and return it (not attached to the session).

    The event is appended to the chain when the transaction commits (or earlier, when the session reads the
    journal), so it exists if and only if the change it records was committed, and the journal's lock is
    held only while the transaction commits. ``seq`` and ``hash`` are set on the returned object then.
    Sign-in events are counted in the process's metrics here, at record time, not at commit
    (:func:`hospiconnect.metrics.journal_event`). Raises ValueError for a malformed tag or outcome.
    """
    event = _event(tag, actor, subject, client_ip, outcome, details, utcnow())
    metrics.journal_event(tag, outcome, details)
    if not session.in_transaction():
        session.begin()  # so that a rollback, even before any statement, forgets the event
    session.info.setdefault(_PENDING, []).append(event)
    return event


# The journal's statements are Core statements on the tables (not ORM-enabled ones) run on the session's
# connection: appending is on every request's commit path, and the ORM's bulk-update machinery would cost more
# than the round trip.
_EVENTS = AuditEvent.__table__
_HEAD = AuditHead.__table__


@functools.lru_cache(maxsize=64)
def _bump(count: int) -> Any:
    return (update(_HEAD).where(_HEAD.c.id == 1).values(seq=_HEAD.c.seq + count)
            .returning(_HEAD.c.seq, _HEAD.c.last_hash))


# On PostgreSQL the whole append is one statement, chained by the database: it locks the head row, computes
# each entry's hash from the head's (SHA-256 of the same canonical form as :func:`compute_hash`, which verifies
# it), inserts the entries and moves the head. The canonical form is cut around the two values only the head
# knows: ``prev_hash`` and ``seq`` (:func:`_canonical_around_head`).
_PREV_AND_SEQ = '"prev_hash":"","seq":0'
_BETWEEN = '","seq":'


def _canonical_around_head(event: AuditEvent) -> tuple[str, str]:
    """Return ``(before, after)`` such that ``before + prev_hash + '","seq":' + str(seq) + after`` is the
    canonical form of ``event`` chained after ``prev_hash`` at ``seq`` (decoded UTF-8)."""
    event.prev_hash, event.seq = "", 0
    form = _canonical(event).decode()
    # Keys are sorted and every value before "prev_hash" is a JSON string, whose quotes are escaped: the first
    # occurrence is the key itself.
    cut = form.index(_PREV_AND_SEQ)
    return form[:cut] + '"prev_hash":"', form[cut + len(_PREV_AND_SEQ):]


_ROW_PARAMS = ("occurred_at", "tag", "actor", "subject", "client_ip", "outcome", "details")


@functools.lru_cache(maxsize=_CTE_ROWS)
def _chained_append(count: int) -> Any:
    steps = ["head AS (SELECT seq, last_hash FROM audit_head WHERE id = 1 FOR UPDATE)"]
    previous, seq, prev_hash = "head", "head.seq", "head.last_hash"
    for i in range(count):
        steps.append(f"e{i} AS (SELECT {seq} + 1 AS seq, {prev_hash} AS prev_hash, "
                     f"encode(sha256(convert_to(:before{i} || {prev_hash} || :between || ({seq} + 1)::text "
                     f"|| :after{i}, 'UTF8')), 'hex') AS hash FROM {previous})")
        previous, seq, prev_hash = f"e{i}", f"e{i}.seq", f"e{i}.hash"
    steps.append(f"moved AS (UPDATE audit_head SET seq = {seq}, last_hash = {prev_hash} FROM {previous} "
                 "WHERE audit_head.id = 1)")
    rows = " UNION ALL ".join(
        f"SELECT e{i}.seq, " + ", ".join(f":{c}{i}" for c in _ROW_PARAMS) + f", e{i}.prev_hash, e{i}.hash FROM e{i}"
        for i in range(count))
    sql = (f"WITH {', '.join(steps)} INSERT INTO audit_events ({', '.join(_COLUMNS)}) {rows} "
           "RETURNING seq, prev_hash, hash")
    return text(sql).bindparams(*[bindparam(f"occurred_at{i}", type_=_EVENTS.c.occurred_at.type)
                                  for i in range(count)])


def _append_chained_by_the_database(connection: Any, events: list[AuditEvent]) -> bool:
    # False when the head row does not exist yet (nothing written).
    params: dict[str, Any] = {"between": _BETWEEN}
    for i, event in enumerate(events):
        params.update({f"{c}{i}": getattr(event, c) for c in _ROW_PARAMS})
        params[f"before{i}"], params[f"after{i}"] = _canonical_around_head(event)
    written = sorted(connection.execute(_chained_append(len(events)), params).all())
    if not written:
        return False
    for event, (seq, prev_hash, hash_) in zip(events, written):
        event.seq, event.prev_hash, event.hash = seq, prev_hash, hash_
    return True


@functools.lru_cache(maxsize=1)
def _move_head() -> Any:
    return update(_HEAD).where(_HEAD.c.id == 1).values(last_hash=bindparam("head_hash"))


def _append(session: Session, events: list[AuditEvent]) -> None:
    """Chain ``events`` after the journal's head and write them: the head's row is locked first (until the
    transaction ends), so appends are serialised and ``seq`` stays contiguous. A failure is counted
    (``hospiconnect_journal_write_failures_total``) and raised: the transaction cannot commit."""
    try:
        _chain_and_write(session, events)
    except Exception:
        metrics.journal_write_failed()
        raise


def _chain_and_write(session: Session, events: list[AuditEvent]) -> None:
    count = len(events)
    # The session's pending changes first (as an ORM statement would autoflush them): the head's lock is then
    # taken last, just before the commit.
    session.flush()
    connection = session.connection()
    if count <= _CTE_ROWS and connection.dialect.name == "postgresql":
        if not _append_chained_by_the_database(connection, events):
            _ensure_head(session)
            if not _append_chained_by_the_database(connection, events):
                raise RuntimeError("audit head row missing")
        return
    head = connection.execute(_bump(count)).first()
    if head is None:
        _ensure_head(session)
        head = connection.execute(_bump(count)).one()
    seq, prev = head.seq - count, head.last_hash
    rows = []
    for event in events:
        seq += 1
        event.seq, event.prev_hash = seq, prev
        event.hash = prev = compute_hash(event)
        rows.append({c: getattr(event, c) for c in _COLUMNS})
    for start in range(0, count, _CHUNK):
        connection.execute(_EVENTS.insert(), rows[start:start + _CHUNK])
    connection.execute(_move_head(), {"head_hash": prev})


def write_pending(session: Session) -> int:
    """Append the events recorded in ``session`` and not yet written; return how many."""
    events = session.info.pop(_PENDING, None)
    if not events:
        return 0
    _append(session, events)
    return len(events)


@event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    write_pending(session)


@event.listens_for(Session, "after_soft_rollback")
def _after_rollback(session: Session, previous_transaction: SessionTransaction) -> None:
    # The change was not committed: neither are its events. (A savepoint rolled back alone keeps them: no
    # event is recorded inside one.)
    if previous_transaction.parent is None:
        session.info.pop(_PENDING, None)


_JOURNAL_TABLES = frozenset({"audit_events", "audit_head"})


@event.listens_for(Session, "do_orm_execute")
def _before_reading_the_journal(state: ORMExecuteState) -> None:
    # Whoever reads the journal in the transaction that recorded events sees them, as if written at once.
    session = state.session
    if session.info.get(_PENDING) and any(t.name in _JOURNAL_TABLES for t in find_tables(state.statement,
                                                                                        include_crud=True)):
        write_pending(session)


def refuse(session: Session, tag: str, *, actor: str, subject: str | None, client_ip: str | None,
           details: dict[str, object], error: HospiConnectError) -> NoReturn:
    """Journal a refusal (outcome ``refused``, the error's code in the details), commit it — the refusal is
    recorded even though the operation is not — and raise ``error``."""
    record(session, tag, actor=actor, subject=subject, client_ip=client_ip, outcome="refused",
           details={**details, "code": error.code})
    session.commit()
    raise error


@dataclasses.dataclass(frozen=True)
class PendingEvent:
    """An event to append with :func:`record_many`."""

    tag: str
    actor: str
    subject: str | None = None
    client_ip: str | None = None
    outcome: str = "success"
    details: dict[str, Any] | None = None


def record_many(session: Session, events: list[PendingEvent]) -> int:
    """Append many events at once, now (bulk operations such as an HR import); return how many."""
    if not events:
        return 0
    now = utcnow()
    built = [_event(e.tag, e.actor, e.subject, e.client_ip, e.outcome, e.details, now) for e in events]
    write_pending(session)  # events recorded earlier in the transaction keep their place in the chain
    _append(session, built)
    return len(built)


@dataclasses.dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    broken_at_seq: int | None = None
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def verify_events(events: Iterable[AuditEvent], head_seq: int | None, head_hash: str | None) -> ChainReport:
    """Walk ``events`` in ``seq`` order and return where the chain first breaks, if it does."""
    expected_prev = GENESIS_HASH
    expected_seq = 1
    checked = 0
    for event in events:
        if event.seq != expected_seq:
            return ChainReport(False, checked, expected_seq,
                               f"entrée n° {expected_seq} absente (la suivante est la n° {event.seq})")
        if event.prev_hash != expected_prev:
            return ChainReport(False, checked, event.seq,
                               f"l'entrée n° {event.seq} ne suit pas l'entrée précédente (lien rompu)")
        if compute_hash(event) != event.hash:
            return ChainReport(False, checked, event.seq, f"l'entrée n° {event.seq} a été modifiée")
        expected_prev = event.hash
        expected_seq += 1
        checked += 1
    if head_seq is not None and head_seq != checked:
        return ChainReport(False, checked, checked + 1,
                           f"le journal annonce {head_seq} entrées, {checked} sont présentes")
    if head_hash is not None and checked and head_hash != expected_prev:
        return ChainReport(False, checked, checked, "la dernière entrée ne correspond pas à la tête du journal")
    return ChainReport(True, checked)


def verify(session: Session, batch: int = 5000) -> ChainReport:
    """Verify the whole chain stored in the database.

    Called outside a transaction (as ``hospiconnect audit verify`` does), it reads the head and the entries in
    one snapshot: a running service appends meanwhile, and entries committed after the head was read would
    otherwise look like entries the head does not account for.
    """
    if session.get_bind().dialect.name == "postgresql" and not session.in_transaction():
        # Its default isolation gives each statement its own snapshot. (SQLite, for development, is left as is.)
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    head = session.get(AuditHead, 1)

    def stream() -> Iterable[AuditEvent]:
        last = 0
        while True:
            rows = session.scalars(
                select(AuditEvent).where(AuditEvent.seq > last).order_by(AuditEvent.seq).limit(batch)
            ).all()
            if not rows:
                return
            yield from rows
            last = rows[-1].seq
            session.expunge_all()

    return verify_events(stream(), head.seq if head else 0, head.last_hash if head else None)


def recent(session: Session, *, subject: str | None = None, limit: int = 50) -> list[AuditEvent]:
    stmt = select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(limit)
    if subject is not None:
        stmt = stmt.where(AuditEvent.subject == subject)
    return list(session.scalars(stmt))
