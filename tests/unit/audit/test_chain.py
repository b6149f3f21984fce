from __future__ import annotations

from click.testing import CliRunner
from sqlalchemy import delete, select, update

from hospiconnect.audit import service
from hospiconnect.audit.models import AuditEvent
from hospiconnect.cli import main


def _fill(session, n: int = 5) -> None:
    for i in range(n):
        service.record(session, "directory:identity:created", actor="tester", subject=f"id-{i}",
                       client_ip="10.0.0.1", details={"i": i})
    session.commit()


def test_events_are_chained(session):
    _fill(session, 3)
    events = session.scalars(select(AuditEvent).order_by(AuditEvent.seq)).all()
    assert [e.seq for e in events] == [1, 2, 3]
    assert events[1].prev_hash == events[0].hash
    assert events[2].prev_hash == events[1].hash
    assert service.verify(session).ok


def test_modified_row_is_reported(session):
    _fill(session)
    session.execute(update(AuditEvent).where(AuditEvent.seq == 3).values(actor="intrus"))
    session.commit()
    report = service.verify(session)
    assert not report.ok and report.broken_at_seq == 3 and "modifiée" in report.reason


def test_deleted_row_is_reported(session):
    _fill(session)
    session.execute(delete(AuditEvent).where(AuditEvent.seq == 2))
    session.commit()
    report = service.verify(session)
    assert not report.ok and report.broken_at_seq == 2


def test_deleted_last_row_is_reported(session):
    _fill(session)
    session.execute(delete(AuditEvent).where(AuditEvent.seq == 5))
    session.commit()
    assert not service.verify(session).ok


def test_rolled_back_change_leaves_no_event(session):
    service.record(session, "directory:identity:created", actor="t")
    session.rollback()
    assert session.scalars(select(AuditEvent)).all() == []
    _fill(session, 1)
    assert service.verify(session).ok


def test_bad_tag_refused(session):
    import pytest

    with pytest.raises(ValueError):
        service.record(session, "not a tag", actor="t")


def test_cli_verify_reports_first_broken_link(rt, session, monkeypatch):
    _fill(session)
    runner = CliRunner()
    ok = runner.invoke(main, ["audit", "verify", "--json"], obj=rt)
    assert ok.exit_code == 0, ok.output
    assert '"ok": true' in ok.output
    session.execute(update(AuditEvent).where(AuditEvent.seq == 4).values(details='{"i": 99}'))
    session.commit()
    broken = runner.invoke(main, ["audit", "verify"], obj=rt)
    assert broken.exit_code == 2
    assert "n° 4" in broken.output


def test_record_many_continues_the_chain(session):
    _fill(session, 2)
    n = service.record_many(session, [service.PendingEvent("directory:identity:created", actor="import",
                                                           subject=f"s{i}") for i in range(50)])
    session.commit()
    _fill(session, 1)
    assert n == 50
    report = service.verify(session)
    assert report.ok and report.checked == 53


def test_nul_characters_from_a_request_are_written_replaced(session):
    service.record(session, "oidc:authorize:refused", actor="client:\x00", subject="a\x00b", client_ip="\x00",
                   outcome="refused", details={"client_id": "\x00"})
    session.commit()
    [event] = session.scalars(select(AuditEvent)).all()
    assert (event.actor, event.subject, event.client_ip) == ("client:\ufffd", "a\ufffdb", "\ufffd")
    assert service.verify(session).ok


def test_a_read_of_the_journal_in_the_recording_transaction_sees_its_events(session):
    service.record(session, "directory:identity:created", actor="t", subject="x")
    # Not committed yet: the events are written before the journal is read, in the same transaction.
    [event] = session.scalars(select(AuditEvent)).all()
    assert (event.seq, event.subject) == (1, "x")
    session.rollback()
    assert session.scalars(select(AuditEvent)).all() == []
