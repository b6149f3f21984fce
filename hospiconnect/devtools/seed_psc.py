"""Demo people for the pairing with Pro Santé Connect: the directory's side of the PSC simulator's professionals.

The PSC simulator (:mod:`hospiconnect.devtools.psc_simulator`) signs in three fictional professionals of this
establishment; for the pairing (« Associer mon identité nationale » on ``/mes-moyens``) to succeed, the
directory must hold them. ``medecin-cps`` and ``infirmier-ecps`` are created with their RPPS number (pairing
by RPPS); ``pharmacienne-ecps`` without one (pairing by names: the RPPS number is filled in). The fourth
professional, ``sage-femme-inconnue``, deliberately has no directory entry: pairing with her is refused.

Pairing needs a session with two factors: each gets the demo password and an authenticator application,
whose ``otpauth://`` URI is printed by the seed.

With the demo's past year (:mod:`hospiconnect.devtools.seed_history`), :func:`pair_past_professionals` also gives
the directory's other professionals with an RPPS number a past of pairings, so that the RSSI's trajectory shows
« associées à Pro Santé Connect » growing month by month since pairing was offered
(:data:`PAIRING_OPENED_DAYS` ago) rather than jumping on the day of the demo. Those links stand for people the
simulator does not know: nobody can sign in with them through the simulator.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import uuid
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from hospiconnect.audit import service as audit
from hospiconnect.audit import tags
from hospiconnect.authenticators import services as mie_services
from hospiconnect.authenticators.models import MieTransition, Notification
from hospiconnect.crypto import InstanceKeys
from hospiconnect.devtools import psc_simulator
from hospiconnect.devtools.backdate import journal_dated
from hospiconnect.devtools.seed import ACTOR as SEED_ACTOR
from hospiconnect.devtools.seed import DEMO_PASSWORD, EMAIL_DOMAIN, ESTABLISHMENTS, TOTP_LABEL, _demo_identity_ids
from hospiconnect.directory import services
from hospiconnect.directory.models import Identity
from hospiconnect.enrollment import national, psc
from hospiconnect.enrollment.models import NationalLink
from hospiconnect.settings import Settings

if TYPE_CHECKING:
    from hospiconnect.devtools.seed_history import PastDirectory

#: (simulator key, payroll number, user name, birth date, gender, directory holds the RPPS)
#: Their own actor: the demo seed finds its demo accounts again by the actor that set their password
#: (hospiconnect.devtools.seed._demo_identity_ids), and these people are not among those accounts.
ACTOR = SEED_ACTOR + "-psc"
#: Directory role per PSC profession code (médecin, infirmier, pharmacien).
_ROLES = {"10": "medecin", "60": "ide", "21": "pharmacien"}
PSC_DEMO_PEOPLE: tuple[tuple[str, str, str, dt.date, str, bool], ...] = (
    ("medecin-cps", "MAT-PSC-0001", "helene.vasseur-nguyen", dt.date(1979, 3, 12), "F", True),
    ("infirmier-ecps", "MAT-PSC-0002", "yanis.belkacem", dt.date(1990, 6, 2), "M", True),
    ("pharmacienne-ecps", "MAT-PSC-0003", "maelys.le-goff", dt.date(1986, 11, 23), "F", False),
)


def ensure_psc_demo_people(session: Session, keys: InstanceKeys, settings: Settings) -> list[str]:
    """Create the directory identities of the simulator's three professionals of this establishment, each with
    the demo password and an active authenticator application; return one French line per person created
    (user name and ``otpauth://`` URI). Idempotent (by payroll number); nothing is committed here."""
    lines: list[str] = []
    for key, external_id, user_name, birth_date, gender, with_rpps in PSC_DEMO_PEOPLE:
        if session.scalar(select(Identity.id).where(Identity.external_id == external_id)) is not None:
            continue
        pro = psc_simulator.TEST_IDENTITIES[key]
        data = services.validate_identity({
            "birth_family_name": pro.family_name, "given_names": pro.given_name, "birth_date": birth_date,
            "birth_country": "99100", "birth_place": "75056", "gender": gender, "user_name": user_name,
            "email": f"{user_name}@{EMAIL_DOMAIN}", "external_id": external_id, "contract_type": "permanent",
            "start_date": dt.date(2024, 9, 2), "establishments": [pro.finess if pro.finess in
                                                                  {f for f, _ in ESTABLISHMENTS}
                                                                  else ESTABLISHMENTS[0][0]],
            "units": [], "roles": [_ROLES.get(pro.profession, "medecin")], "rpps": pro.rpps if with_rpps else None})
        identity = services.create_identity(session, data, actor=ACTOR)
        if identity.status == "pending":
            services.change_status(session, identity, "active", actor=ACTOR, reason="démonstration")
        mie_services.set_password(session, identity, DEMO_PASSWORD, actor=ACTOR,
                                  establishment_name=settings.establishment_name)
        mie, uri, _svg = mie_services.begin_totp(session, identity, label=TOTP_LABEL, actor=ACTOR, keys=keys,
                                                 issuer=settings.establishment_name)
        mie_services.transition(session, mie, "active", actor=ACTOR, reason="démonstration : application préconfigurée")
        mie.proofing_method = "face_to_face"
        session.flush()
        lines.append(f"{user_name} ({pro.description}) : {uri}")
    return lines


#: Pairing with Pro Santé Connect was offered this many days before the demo's today.
PAIRING_OPENED_DAYS = 180
#: Share of the professionals with an RPPS number, active today, paired by today.
PAIRED_SHARE = 0.4
#: Share of the paired who sign in to PSC with a CPS card (the others with the e-CPS application).
CPS_SHARE = 0.6
_PAIRING_SEED = 20260128


def pair_past_professionals(session: Session, settings: Settings, past: PastDirectory) -> int:
    """Pair about :data:`PAIRED_SHARE` of the active identities with an RPPS number of the demo's past (neither
    the demo accounts nor the simulator's professionals, who pair themselves) with their national identity,
    each on a past day after pairing was offered and after their arrival, more of them as time goes on; return
    how many. What :func:`hospiconnect.enrollment.national.complete_pairing` records — the link, the national MIE
    proofed by the ANS, the journal — dated that day (the MIE rows and journal entries backdated, as the rest
    of the demo's past); messages about that past are dropped. Works in the caller's transaction."""
    rnd = random.Random(_PAIRING_SEED)
    issuer = psc_simulator.issuer(settings)
    opened = past.today - dt.timedelta(days=PAIRING_OPENED_DAYS)
    accounts = _demo_identity_ids(session)
    last_notification = session.scalar(select(func.max(Notification.id))) or 0
    paired = 0
    candidates = session.scalars(select(Identity).where(Identity.status == "active", Identity.rpps.is_not(None),
                                                        Identity.id.in_(list(past.lives)))
                                 .order_by(Identity.id)).all()
    for identity in candidates:
        life = past.lives[identity.id]
        first = max(opened, life.since)
        if identity.id in accounts or life.until is not None or first > past.today:
            continue
        if rnd.random() >= PAIRED_SHARE:
            continue
        # The square root of a uniform draw: more pairings each month than the month before.
        day = first + dt.timedelta(days=math.floor(((past.today - first).days + 1) * math.sqrt(rnd.random())))
        mie_type = psc.MIE_CPS if rnd.random() < CPS_SHARE else psc.MIE_E_CPS
        _pair(session, identity, issuer, mie_type, past.clock.during(min(day, past.today)))
        paired += 1
    session.flush()
    session.execute(delete(Notification).where(Notification.id > last_notification))
    return paired


def _pair(session: Session, identity: Identity, issuer: str, mie_type: str, at: dt.datetime) -> None:
    """Record a pairing by RPPS at ``at`` (see :func:`pair_past_professionals`)."""
    actor = identity.user_name
    with journal_dated(session, at):
        link = NationalLink(public_id=str(uuid.uuid4()), identity_id=identity.id, issuer=issuer,
                            sub=f"psc-8{identity.rpps}", rpps=identity.rpps, method=national.METHOD_RPPS,
                            linked_at=at, linked_by=actor)
        session.add(link)
        session.flush()
        mie = national.ensure_national_mie(session, identity, mie_type, actor=actor, now=at)
        assert mie is not None
        mie.created_at = mie.activated_at = at
        for transition in session.scalars(select(MieTransition).where(MieTransition.mie_id == mie.id)):
            transition.at = at
        audit.record(session, tags.NATIONAL_LINK_CREATED, actor=actor, subject=identity.public_id,
                     details={"link": link.public_id, "issuer": issuer, "method": national.METHOD_RPPS,
                              "rpps": identity.rpps, "acr": "eidas1",
                              "amr": list(psc_simulator.AMR_BY_MIE[mie_type]), "mie_type": mie_type})


def psc_demo_summary(session: Session, keys: InstanceKeys, settings: Settings,
                     past: PastDirectory | None = None) -> list[str]:
    """For :func:`hospiconnect.devtools.seed.seed_demo`: the PSC demo people, when the simulator stands in for
    PSC in a demo or development environment, and — with the demo's past (``past``) — the pairings of that past;
    the French summary parts."""
    if settings.env not in ("demo", "development") or not settings.psc_simulator_enabled:
        return []
    parts: list[str] = []
    lines = ensure_psc_demo_people(session, keys, settings)
    if lines:
        parts.append(f"{len(lines)} professionnel(s) pour l'appairage Pro Santé Connect (mot de passe "
                     f"{DEMO_PASSWORD}) : " + " ; ".join(lines))
    if past is not None:
        paired = pair_past_professionals(session, settings, past)
        parts.append(f"{paired} professionnel(s) associé(s) à Pro Santé Connect depuis "
                     f"{PAIRING_OPENED_DAYS} jours")
    return parts
