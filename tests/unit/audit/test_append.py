"""Appending to the journal: the canonical form the database hashes (PostgreSQL chains the entries itself, in
the statement that moves the head), and appends from concurrent transactions."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from hospiconnect.audit import service
from hospiconnect.audit.models import AuditEvent, AuditHead
from hospiconnect.db import utcnow

# Values that look like the part of the canonical form the database fills in.
TRICKY = '"prev_hash":"","seq":0,"subject":"x"'


@pytest.mark.parametrize("actor, subject, client_ip, details", [
    ("tester", None, None, {}),
    (TRICKY, TRICKY, TRICKY, {"note": TRICKY, TRICKY: 1}),
    ("Hélène « Ørsted »", "sujet\u2028ligne", "::1", {"texte": "é\"\\\n\t", "n": [1, 2.5, None, True]}),
])
def test_the_canonical_form_cut_around_the_head_rebuilds_the_canonical_form(actor, subject, client_ip, details):
    event = service._event("authn:password:success", actor, subject, client_ip, "success", details, utcnow())
    before, after = service._canonical_around_head(event)
    event.prev_hash, event.seq = "ab" * 32, 1234567
    rebuilt = before + event.prev_hash + service._BETWEEN + str(event.seq) + after
    assert rebuilt.encode() == service._canonical(event)


def test_the_returned_event_carries_its_place_in_the_chain(session):
    # Non-ASCII text: the database encodes the canonical form in UTF-8 as Python does.
    first = service.record(session, "directory:identity:created", actor="Hélène", details={"i": 1, "n": "« 😀 »"})
    second = service.record(session, "directory:identity:created", actor="tester", subject="sujet ligne",
                            details={"i": 2})
    session.commit()
    stored = session.scalars(select(AuditEvent).order_by(AuditEvent.seq)).all()
    assert [(e.seq, e.prev_hash, e.hash) for e in stored] == [(first.seq, first.prev_hash, first.hash),
                                                             (second.seq, second.prev_hash, second.hash)]
    assert second.prev_hash == first.hash and service.compute_hash(second) == second.hash
    assert service.compute_hash(first) == first.hash and service.verify(session).ok


def test_concurrent_appends_keep_the_chain_contiguous(rt, session):
    threads, per_thread = 6, 8
    # The head row exists from the first event on (``hospiconnect init`` journals the keys it creates).
    service.record(session, "directory:identity:created", actor="tester")
    session.commit()
    failures: list[BaseException] = []
    start = threading.Barrier(threads)

    def append(worker: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                with rt.db.session() as s:
                    # One, two or three events per transaction: both the single and the chained statements.
                    for j in range(1 + (worker + i) % 3):
                        service.record(s, "directory:identity:created", actor=f"worker-{worker}",
                                       subject=f"id-{i}-{j}", details={"worker": worker, "i": i, "j": j})
        except BaseException as exc:  # reported below: a thread's assertion would otherwise be lost
            failures.append(exc)

    workers = [threading.Thread(target=append, args=(w,)) for w in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert failures == []
    expected = 1 + sum(1 + (w + i) % 3 for w in range(threads) for i in range(per_thread))
    report = service.verify(session)
    assert report.ok and report.checked == expected
    head = session.get(AuditHead, 1)
    assert head is not None and head.seq == expected
