"""Read-only query behind the « Vérification d'identité et MIE » panels of the desk and the directory.

It loads what :func:`hospiconnect.enrollment.levels.summarize` needs — the person's verified identity
checks and MIE — and returns the summary. It changes nothing and journals nothing.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from hospiconnect.authenticators import services as mie_services
from hospiconnect.directory.models import Identity
from hospiconnect.enrollment import levels
from hospiconnect.enrollment import workflow as wf
from hospiconnect.enrollment.models import EnrollmentCase

# A check recorded in a case that was then cancelled or rejected does not stand: it gives no level.
_VOID_STATES = (wf.CANCELLED, wf.REJECTED)


def verification_of(session: Session, identity: Identity) -> levels.VerificationSummary:
    """Return the :class:`~hospiconnect.enrollment.levels.VerificationSummary` of ``identity``: its last
    verified identity check (method, date, officer or FranceConnect+), the resulting level and every MIE
    (revoked ones included, oldest first) with the check that preceded it and its last use."""
    cases = list(session.scalars(
        select(EnrollmentCase).where(EnrollmentCase.identity_id == identity.id,
                                     EnrollmentCase.identity_verified_at.is_not(None),
                                     EnrollmentCase.identity_checked_at.is_not(None),
                                     EnrollmentCase.identity_check_method.in_(wf.METHODS),
                                     EnrollmentCase.state.not_in(_VOID_STATES))))
    officer_ids = {c.identity_check_officer_id for c in cases if c.identity_check_officer_id is not None}
    officers = {o.id: f"{o.display_name} ({o.user_name})" for o in session.scalars(
        select(Identity).where(Identity.id.in_(officer_ids)))} if officer_ids else {}
    checks = []
    for case in cases:
        assert case.identity_check_method is not None and case.identity_checked_at is not None
        officer_id = case.identity_check_officer_id
        checks.append(levels.IdentityCheck(
            method=case.identity_check_method, checked_at=case.identity_checked_at,
            officer=officers.get(officer_id) if officer_id is not None else None,
            place=case.identity_check_place, document_type=case.document_type, case=case.public_id))
    mies = [levels.MieFacts(public_id=m.public_id, type=m.type, label=m.label, status=m.status,
                            created_at=m.created_at, proofing_method=m.proofing_method, proofing_at=m.proofing_at,
                            activated_at=m.activated_at, last_used_at=m.last_used_at)
            for m in mie_services.list_mie(session, identity)]
    return levels.summarize(checks, mies)
