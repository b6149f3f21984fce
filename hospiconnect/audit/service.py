"""Append events to the journal and verify its hash chain.

An event is written in the caller's session, so it commits or rolls back with the change it records.
Appends are serialised by updating the single ``audit_head`` row first: on PostgreSQL that takes a row
lock held until commit, on SQLite the database write lock. Each entry's hash covers its fields and the
previous entry's hash; ``seq`` is contiguous, so a deleted row is found as well as a changed one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from typing import Any, Iterable

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hospiconnect.audit.models import GENESIS_HASH, AuditEvent, AuditHead
from hospiconnect.audit.tags import TAG_RE
from hospiconnect.db import utcnow

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
    """Append one event in ``session`` (not committed here) and return it (not attached to the session)."""
    if not TAG_RE.match(tag):
        raise ValueError(f"bad audit tag {tag!r}")
    if outcome not in OUTCOMES:
        raise ValueError(f"bad audit outcome {outcome!r}")
    # Take the lock first: the UPDATE makes every other appender wait until we commit. Core statements
    # (no ORM flush) keep the time the lock is held short.
    bump = update(AuditHead).where(AuditHead.id == 1).values(seq=AuditHead.seq + 1).returning(
        AuditHead.seq, AuditHead.last_hash)
    head = session.execute(bump).first()
    if head is None:
        _ensure_head(session)
        head = session.execute(bump).one()
    event = AuditEvent(
        seq=head.seq,
        occurred_at=utcnow(),
        tag=tag,
        actor=actor[:200],
        subject=subject[:200] if subject else None,
        client_ip=client_ip,
        outcome=outcome,
        details=json.dumps(details or {}, sort_keys=True, ensure_ascii=False, default=str),
        prev_hash=head.last_hash,
    )
    event.hash = compute_hash(event)
    insert = AuditEvent.__table__.insert().values({c: getattr(event, c) for c in _COLUMNS})
    move_head = update(AuditHead).where(AuditHead.id == 1).values(last_hash=event.hash)
    if session.get_bind().dialect.name == "postgresql":
        # One round trip instead of two while the head's lock is held: the INSERT rides in a CTE.
        session.execute(move_head.add_cte(insert.cte("appended")))
    else:
        session.execute(insert)
        session.execute(move_head)
    return event


_COLUMNS = ("seq", "occurred_at", "tag", "actor", "subject", "client_ip", "outcome", "details", "prev_hash", "hash")


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
    """Append many events under one lock (bulk operations such as an HR import); return how many."""
    if not events:
        return 0
    for item in events:
        if not TAG_RE.match(item.tag) or item.outcome not in OUTCOMES:
            raise ValueError(f"bad audit event {item.tag!r}/{item.outcome!r}")
    result = session.execute(update(AuditHead).where(AuditHead.id == 1).values(seq=AuditHead.seq + len(events)))
    if result.rowcount == 0:  # type: ignore[attr-defined]
        _ensure_head(session)
        session.execute(update(AuditHead).where(AuditHead.id == 1).values(seq=AuditHead.seq + len(events)))
    head = session.execute(select(AuditHead.seq, AuditHead.last_hash).where(AuditHead.id == 1)).one()
    seq = head.seq - len(events)
    prev = head.last_hash
    now = utcnow()
    rows = []
    for item in events:
        seq += 1
        event = AuditEvent(seq=seq, occurred_at=now, tag=item.tag, actor=item.actor[:200],
                           subject=item.subject[:200] if item.subject else None, client_ip=item.client_ip,
                           outcome=item.outcome,
                           details=json.dumps(item.details or {}, sort_keys=True, ensure_ascii=False, default=str),
                           prev_hash=prev)
        event.hash = prev = compute_hash(event)
        rows.append({c: getattr(event, c) for c in _COLUMNS})
    session.execute(AuditEvent.__table__.insert(), rows)
    session.execute(update(AuditHead).where(AuditHead.id == 1).values(last_hash=prev))
    return len(events)


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
    """Verify the whole chain stored in the database."""
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
