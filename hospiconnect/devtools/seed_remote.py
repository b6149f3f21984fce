"""Demo people for the remote enrollment: the directory's side of the FranceConnect+ simulator's identities.

The simulator (:mod:`hospiconnect.devtools.fcplus_simulator`) signs people in with fictional identities; for
the remote enrollment to succeed, the directory must hold the same person — same birth name, given names,
birth date, birth place and country, gender — as the officer would have registered them. This module creates
those directory identities: ``camille`` and ``sacha-ne-a-letranger`` match exactly, ``lou-date-presumee``
matches under the presumed-date rule of :mod:`hospiconnect.enrollment.matching` (FranceConnect+ sends
1980-01-01, the directory holds the real day of 1980). ``camille-homonyme`` deliberately has no directory
entry of her own: signing in with her while enrolling ``camille`` shows a refused match.

They are active, with a professional e-mail and a role, and no MIE (the remote enrollment gives them one).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hospiconnect.devtools import fcplus_simulator
from hospiconnect.devtools.seed import ACTOR, EMAIL_DOMAIN, ESTABLISHMENTS
from hospiconnect.directory import services
from hospiconnect.directory.models import Identity
from hospiconnect.settings import Settings


@dataclasses.dataclass(frozen=True)
class RemoteDemoPerson:
    """A directory identity matching one of the simulator's :data:`~fcplus_simulator.TEST_IDENTITIES`."""

    simulator_key: str
    external_id: str
    role: str
    unit: str
    # The directory's birth date when it is not the FranceConnect+ one (presumed dates).
    birth_date: dt.date | None = None


REMOTE_DEMO_PEOPLE: tuple[RemoteDemoPerson, ...] = (
    RemoteDemoPerson("camille", "MAT-FC-0001", "technicien", "LABO"),
    RemoteDemoPerson("sacha-ne-a-letranger", "MAT-FC-0002", "technicien", "BIOMED"),
    RemoteDemoPerson("lou-date-presumee", "MAT-FC-0003", "technicien", "IMAGERIE", dt.date(1980, 7, 14)),
)
START_DATE = dt.date(2024, 9, 2)


def _raw(person: RemoteDemoPerson) -> dict[str, Any]:
    fc = fcplus_simulator.TEST_IDENTITIES[person.simulator_key]
    first = fc.given_name.split()[0].lower()
    family = fc.family_name.lower()
    return {
        "birth_family_name": fc.family_name,
        "usage_name": fc.preferred_username,
        "given_names": fc.given_name,
        "birth_date": person.birth_date or dt.date.fromisoformat(fc.birthdate),
        "birth_place": fc.birthplace,
        "birth_country": fc.birthcountry,
        "gender": fc.gender,
        "email": f"{first}.{(fc.preferred_username or family).lower()}@{EMAIL_DOMAIN}",
        "external_id": person.external_id,
        "contract_type": "permanent",
        "start_date": START_DATE,
        "establishments": [ESTABLISHMENTS[0][0]],
        "units": [person.unit],
        "roles": [person.role],
    }


def ensure_remote_demo_people(session: Session) -> int:
    """Create, through the directory services, the directory identities matching the simulator's identities
    ``camille``, ``sacha-ne-a-letranger`` and ``lou-date-presumee``; return how many were created.

    Idempotent: a person already present (same payroll number, or the same birth name, first given name and
    birth date) is left as it is. Works in the caller's transaction (nothing is committed here).
    """
    created = 0
    for person in REMOTE_DEMO_PEOPLE:
        if session.scalar(select(Identity.id).where(Identity.external_id == person.external_id)) is not None:
            continue
        data = services.validate_identity(_raw(person))
        if services.find_duplicates(session, data.birth_family_name, data.given_names, data.birth_date):
            continue
        services.create_identity(session, data, actor=ACTOR)
        created += 1
    session.flush()
    return created


def remote_demo_summary(session: Session, settings: Settings) -> list[str]:
    """For :func:`hospiconnect.devtools.seed.seed_demo`: create the remote-enrollment demo people when the
    simulator stands in for FranceConnect+ in a demo or development environment, and return the French
    summary parts (empty when there is nothing to say)."""
    if settings.env not in ("demo", "development") or not settings.fcplus_simulator_enabled:
        return []
    created = ensure_remote_demo_people(session)
    if not created:
        return []
    return [f"{created} personne(s) pour l'enrôlement à distance (simulateur FranceConnect+) ajoutée(s)"]
