"""``hospiconnect jobs run``: the periodic work, safe to run twice and from several hosts.

Each step runs in its own transaction so that one failing step does not undo the others, and each
reports what it did.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from sqlalchemy import select

from hospiconnect.authenticators import notifications, webauthn
from hospiconnect.authorizations import services as authorizations
from hospiconnect.db import utcnow
from hospiconnect.directory import services as directory
from hospiconnect.directory.models import Identity
from hospiconnect.enrollment import national, remote
from hospiconnect.enrollment import services as enrollment
from hospiconnect.idp import interactions, login_session, logout, tokens
from hospiconnect.idp.models import SsoSession
from hospiconnect.policies import PolicyError, load_policy
from hospiconnect.runtime import Runtime
from hospiconnect.trajectory import snapshots

log = logging.getLogger("hospiconnect.jobs")


def run_all(rt: Runtime, *, today: dt.date | None = None) -> dict[str, Any]:
    """Run every periodic step; return a report per step."""
    settings = rt.settings
    day = today or dt.date.today()
    now = utcnow()
    report: dict[str, Any] = {"date": day.isoformat()}
    with rt.db.session() as session:
        report["directory"] = directory.run_lifecycle(session, today=day,
                                                      grace_days=settings.departure_grace_days).as_dict()
    with rt.db.session() as session:
        # Sessions of people who are no longer active end at once (their tokens with them).
        ids = session.scalars(
            select(SsoSession.identity_id).join(Identity, Identity.id == SsoSession.identity_id)
            .where(SsoSession.ended_at.is_(None), Identity.status != "active").distinct()
        ).all()
        ended = sum(login_session.end_all_for_identity(session, i, reason="identity_inactive", actor="system:jobs",
                                                       keys=rt.keys, settings=settings) for i in ids)
        ended += login_session.end_expired(session, rt.keys, settings, now=now)
        report["sessions_ended"] = ended
    with rt.db.session() as session:
        report["enrollment_cases_expired"] = enrollment.expire_cases(session, now)
    with rt.db.session() as session:
        # Exceptions end by their date alone; this only journals each end once.
        report["policy_exceptions_expired"] = authorizations.journal_expired(session, now).as_dict()["expired"]
    with rt.db.session() as session:
        report["purged"] = {
            "webauthn_challenges": webauthn.purge_expired_challenges(session, now),
            # Abandoned FranceConnect+ checks; invitations need no purge: they die with their case.
            "fcplus_transactions": remote.purge_expired_transactions(session, now),
            "psc_transactions": national.purge_expired_transactions(session, now),
            "interactions": interactions.purge_expired(session, before=now - dt.timedelta(days=1)),
            "tokens": tokens.purge_expired(session, before=now - dt.timedelta(days=1)),
        }
    with rt.db.session() as session:
        report["notifications"] = notifications.deliver_pending(
            session, notifications.make_sender(settings), keys=rt.keys).as_dict()
    with rt.db.session() as session:
        report["backchannel_logout"] = logout.deliver_backchannel(session, now)
    report["trajectory"] = _trajectory_snapshot(rt, today, now)
    return report


def _trajectory_snapshot(rt: Runtime, today: dt.date | None, now: dt.datetime) -> dict[str, Any]:
    """Take the trajectory's snapshot of ``today`` (by default the policy's local day: the snapshot of 00:30 in
    Paris is that day's, whatever the server's clock zone). A day's snapshot replaces that day's rows, so running
    the jobs twice leaves the same rows. Last step: an unreadable policy file skips it (reported, logged)
    without holding back the others."""
    try:
        policy = load_policy(rt.settings.policy_file)
    except PolicyError as exc:
        log.error("trajectory snapshot skipped: %s", exc.message)
        return {"error": exc.message}
    day = today or policy.local_day(now)
    with rt.db.session() as session:
        return snapshots.take_snapshot(session, policy, day, now=now, actor="system:jobs").as_dict()
