"""Demo people for the pairing with Pro Santé Connect: the directory's side of the PSC simulator's professionals.

The PSC simulator (:mod:`hospiconnect.devtools.psc_simulator`) signs in three fictional professionals of this
establishment; for the pairing (« Associer mon identité nationale » on ``/mes-moyens``) to succeed, the
directory must hold them. ``medecin-cps`` and ``infirmier-ecps`` are created with their RPPS number (pairing
by RPPS); ``pharmacienne-ecps`` without one (pairing by names: the RPPS number is filled in). The fourth
professional, ``sage-femme-inconnue``, deliberately has no directory entry: pairing with her is refused.

Pairing needs a session with two factors: each gets the demo password and an authenticator application,
whose ``otpauth://`` URI is printed by the seed.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from hospiconnect.authenticators import services as mie_services
from hospiconnect.crypto import InstanceKeys
from hospiconnect.devtools import psc_simulator
from hospiconnect.devtools.seed import ACTOR as SEED_ACTOR
from hospiconnect.devtools.seed import DEMO_PASSWORD, EMAIL_DOMAIN, ESTABLISHMENTS, TOTP_LABEL
from hospiconnect.directory import services
from hospiconnect.directory.models import Identity
from hospiconnect.settings import Settings

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


def psc_demo_summary(session: Session, keys: InstanceKeys, settings: Settings) -> list[str]:
    """For :func:`hospiconnect.devtools.seed.seed_demo`: the PSC demo people, when the simulator stands in for
    PSC in a demo or development environment; the French summary parts."""
    if settings.env not in ("demo", "development") or not settings.psc_simulator_enabled:
        return []
    lines = ensure_psc_demo_people(session, keys, settings)
    if not lines:
        return []
    return [f"{len(lines)} professionnel(s) pour l'appairage Pro Santé Connect (mot de passe {DEMO_PASSWORD}) : "
            + " ; ".join(lines)]
