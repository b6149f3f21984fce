"""Demo data: a small fictional GHT with its pôles, services and a few hundred professionals.

Everything is fictional: the FINESS numbers use department 99, which does not exist, the names are
drawn from common French names, the e-mail addresses use the reserved ``.example`` domain. Identities
are created through the directory services, so the audit journal records them like real ones.
The data are the same at every run (one seeded random generator); only dates follow the calendar.

With the settings at hand, the seed also prepares what ``hospiconnect demo`` shows in a browser: two
demo relying parties (« DPI (démo) », class health-data, and « Intranet (démo) », class standard, served
by :mod:`hospiconnect.devtools.demo_rp`) whose client secrets are kept in ``demo-clients.json`` in the
instance folder, and seven demo accounts with a known password — six of them with an authenticator
application (TOTP) whose seed :func:`demo_credentials` reads back for the start-up banner, among them a
registration officer (role ``enrollment_officer``) who can open the enrollment desk (/guichet), an RSSI
(role ``rssi``, /securite) and an on-call officer (role ``emergency_officer``, /bris-de-glace).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import random
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hospiconnect.apitokens import services as token_services
from hospiconnect.apitokens.models import ApiToken
from hospiconnect.audit import service as audit
from hospiconnect.authenticators import emergency
from hospiconnect.authenticators import services as mie_services
from hospiconnect.authenticators import totp
from hospiconnect.authenticators.interfaces import PasswordRejected
from hospiconnect.authenticators.models import Mie, MieTransition, TotpCredential
from hospiconnect.crypto import InstanceKeys
from hospiconnect.db import utcnow
from hospiconnect.directory import services
from hospiconnect.directory.models import Establishment, Identity, IdentityRole, OrgUnit
from hospiconnect.directory.normalize import normalize_name
from hospiconnect.directory.validation import luhn_complete
from hospiconnect.errors import Forbidden
from hospiconnect.idp import clients as client_services
from hospiconnect.idp.models import Client
from hospiconnect.settings import Settings

if TYPE_CHECKING:
    from hospiconnect.devtools.seed_history import PastDirectory

ACTOR = "system:demo_seed"
SCIM_TOKEN_NAME = "demo-scim"
DEFAULT_SEED = 2026
EMAIL_DOMAIN = "ght-val-de-loire.example"


def _finess(prefix: str) -> str:
    # Nine digits, the last one a Luhn key like real FINESS numbers; department 99 keeps them fictional.
    return luhn_complete(prefix)


LEGAL_FINESS = _finess("99000001")
ESTABLISHMENTS: list[tuple[str, str]] = [
    (_finess("99000010"), "Centre hospitalier de Valmont (support du GHT, fictif)"),
    (_finess("99000020"), "Centre hospitalier de Saint-Aubin-sur-Loire (fictif)"),
    (_finess("99000030"), "Hôpital de proximité de Bellerive (fictif)"),
]
# (code, name, kind, parent code)
UNITS: list[tuple[str, str, str, str | None]] = [
    ("POLE-MED", "Pôle médecine", "pole", None),
    ("CARDIO", "Cardiologie", "service", "POLE-MED"),
    ("PNEUMO", "Pneumologie", "service", "POLE-MED"),
    ("MED-INT", "Médecine interne", "service", "POLE-MED"),
    ("GERIATRIE", "Gériatrie", "service", "POLE-MED"),
    ("POLE-URG", "Pôle urgences et soins critiques", "pole", None),
    ("URGENCES", "Urgences adultes", "service", "POLE-URG"),
    ("REA", "Réanimation", "service", "POLE-URG"),
    ("POLE-CHIR", "Pôle chirurgie", "pole", None),
    ("CHIR-ORTHO", "Chirurgie orthopédique", "service", "POLE-CHIR"),
    ("CHIR-VISC", "Chirurgie viscérale", "service", "POLE-CHIR"),
    ("BLOC", "Bloc opératoire", "service", "POLE-CHIR"),
    ("POLE-FEM", "Pôle femme-enfant", "pole", None),
    ("MATERNITE", "Maternité", "service", "POLE-FEM"),
    ("PEDIATRIE", "Pédiatrie", "service", "POLE-FEM"),
    ("POLE-MT", "Pôle médico-technique", "pole", None),
    ("PHARMACIE", "Pharmacie à usage intérieur", "service", "POLE-MT"),
    ("LABO", "Laboratoire de biologie médicale", "service", "POLE-MT"),
    ("IMAGERIE", "Imagerie médicale", "service", "POLE-MT"),
    ("POLE-ADM", "Pôle administration et logistique", "pole", None),
    ("DRH", "Direction des ressources humaines", "service", "POLE-ADM"),
    ("DSN", "Direction du numérique", "service", "POLE-ADM"),
    ("ADMISSIONS", "Bureau des admissions", "service", "POLE-ADM"),
    ("LOGISTIQUE", "Services techniques et logistique", "service", "POLE-ADM"),
    ("BIOMED", "Ingénierie biomédicale", "service", "POLE-ADM"),
]
CARE_UNITS = ["CARDIO", "PNEUMO", "MED-INT", "GERIATRIE", "URGENCES", "REA", "CHIR-ORTHO", "CHIR-VISC", "BLOC",
              "MATERNITE", "PEDIATRIE"]


@dataclasses.dataclass(frozen=True)
class Profile:
    """A kind of professional: how many of them, with or without RPPS, where they work, which contracts."""

    key: str
    share: float
    role: str
    rpps: bool
    units: tuple[str, ...]
    contracts: tuple[tuple[str, int], ...]
    # Fixed-term kinds (students, interns, interim staff, vendors) always have an end date.
    always_ends: bool = False


PROFILES: tuple[Profile, ...] = (
    # With RPPS: 45 % of the staff.
    Profile("medecin", .12, "medecin", True, tuple(CARE_UNITS) + ("IMAGERIE", "LABO"),
            (("permanent", 6), ("vacataire", 2), ("replacement", 2), ("fixed_term", 1))),
    Profile("pharmacien", .03, "pharmacien", True, ("PHARMACIE", "LABO"), (("permanent", 3), ("fixed_term", 1))),
    Profile("sage_femme", .04, "sage_femme", True, ("MATERNITE",),
            (("permanent", 4), ("fixed_term", 1), ("replacement", 1))),
    Profile("infirmier", .20, "ide", True, tuple(CARE_UNITS),
            (("permanent", 6), ("fixed_term", 2), ("replacement", 1), ("interim", 1))),
    Profile("interne", .06, "interne", True, tuple(CARE_UNITS) + ("PHARMACIE",), (("fixed_term", 1),),
            always_ends=True),
    # Without RPPS.
    Profile("aide_soignant", .18, "aide_soignant", False, tuple(CARE_UNITS),
            (("permanent", 6), ("fixed_term", 2), ("replacement", 1))),
    Profile("administratif", .12, "administratif", False, ("DRH", "DSN", "ADMISSIONS"),
            (("permanent", 5), ("fixed_term", 2), ("vacataire", 1))),
    Profile("technicien", .08, "technicien", False, ("LOGISTIQUE", "BIOMED", "IMAGERIE", "LABO", "DSN"),
            (("permanent", 4), ("fixed_term", 1))),
    Profile("etudiant", .06, "etudiant", False, tuple(CARE_UNITS), (("trainee", 1),), always_ends=True),
    Profile("interimaire", .06, "interimaire", False, tuple(CARE_UNITS) + ("ADMISSIONS", "LOGISTIQUE"),
            (("interim", 1),), always_ends=True),
    Profile("prestataire", .05, "prestataire", False, ("DSN", "BIOMED", "LOGISTIQUE"), (("contractor", 1),),
            always_ends=True),
)

FEMALE_NAMES = ["Camille", "Léa", "Manon", "Chloé", "Emma", "Inès", "Sarah", "Julie", "Clara", "Anaïs", "Lucie",
                "Marie", "Pauline", "Mathilde", "Céline", "Nadia", "Sophie", "Élodie", "Amandine", "Aurélie",
                "Fatima", "Leïla", "Hélène", "Sandrine", "Nathalie", "Isabelle", "Claire", "Agathe", "Yasmine",
                "Océane"]
MALE_NAMES = ["Lucas", "Hugo", "Louis", "Thomas", "Nicolas", "Julien", "Maxime", "Antoine", "Karim", "Mehdi",
              "Pierre", "Olivier", "Sébastien", "Mathieu", "Romain", "Alexandre", "Guillaume", "Benoît", "Yanis",
              "Théo", "François", "Jérôme", "Laurent", "Samuel", "Adrien", "Bastien", "Cédric", "Damien",
              "Étienne", "Rayan"]
SECOND_FEMALE_NAMES = ["Marie", "Anne", "Louise", "Jeanne", "Élise", "Françoise", "Hélène"]
SECOND_MALE_NAMES = ["Jean", "Paul", "Joseph", "Michel", "André", "Pierre", "Louis"]
FAMILY_NAMES = ["Martin", "Bernard", "Thomas", "Petit", "Robert", "Richard", "Durand", "Dubois", "Moreau",
                "Laurent", "Simon", "Michel", "Lefèvre", "Leroy", "Roux", "David", "Bertrand", "Morel", "Fournier",
                "Girard", "Bonnet", "Dupont", "Lambert", "Fontaine", "Rousseau", "Vincent", "Muller", "Lefebvre",
                "Faure", "André", "Mercier", "Blanc", "Guérin", "Boyer", "Garnier", "Chevalier", "François",
                "Legrand", "Gauthier", "Garcia", "Perrin", "Robin", "Clément", "Morin", "Nicolas", "Henry",
                "Roussel", "Mathieu", "Gautier", "Masson", "Marchand", "Duval", "Denis", "Dumont", "Marie",
                "Lemaire", "Noël", "Meyer", "Dufour", "Meunier", "Brun", "Blanchard", "Giraud", "Joly", "Rivière",
                "Lucas", "Brunet", "Gaillard", "Barbier", "Arnaud", "Martinez", "Gérard", "Roche", "Renard",
                "Schmitt", "Roy", "Leroux", "Colin", "Vidal", "Caron", "Picard", "Roger", "Fabre", "Aubert",
                "Lemoine", "Renaud", "Dumas", "Lacroix", "Olivier", "Philippe", "Bourgeois", "Pierre", "Benoît",
                "Rey", "Leclerc", "Payet", "Rolland", "Leclercq", "Guillaume", "Lecomte", "Benali", "Haddad",
                "Nguyen", "Diallo", "Da Silva", "Ferreira", "Le Gall", "Le Goff", "Kerbrat", "N'Diaye",
                "Saint-Martin", "Bouchard-Lemaire"]
# INSEE commune codes (Paris, Lyon, Marseille, Toulouse, Nantes, Bordeaux, Lille, Strasbourg, Rennes,
# Orléans, Tours, Blois, Ajaccio, Saint-Denis de La Réunion).
FRENCH_COMMUNES = ["75056", "69123", "13055", "31555", "44109", "33063", "59350", "67482", "35238", "45234",
                   "37261", "41018", "2A004", "97411"]
# INSEE country codes: Maroc, Algérie, Tunisie, Espagne, Portugal, Italie, Belgique, Allemagne, Roumanie,
# Sénégal, Liban, Viêt Nam.
FOREIGN_COUNTRIES = ["99350", "99352", "99351", "99134", "99139", "99127", "99131", "99109", "99114", "99341",
                     "99205", "99243"]


def _refuse_in_production(settings: Settings | None) -> None:
    env = settings.env if settings is not None else os.environ.get("HOSPICONNECT_ENV", "development")
    if env == "production":
        raise Forbidden("Les données de démonstration ne peuvent pas être créées en production.",
                        code="demo_refused")


def _allocate(count: int) -> list[Profile]:
    """Return ``count`` profiles in the PROFILES proportions (largest remainder), in a stable order."""
    exact = [p.share * count for p in PROFILES]
    numbers = [int(x) for x in exact]
    order = sorted(range(len(PROFILES)), key=lambda i: exact[i] - numbers[i], reverse=True)
    for i in order[: count - sum(numbers)]:
        numbers[i] += 1
    return [p for p, n in zip(PROFILES, numbers) for _ in range(n)]


def _weighted(rnd: random.Random, choices: tuple[tuple[str, int], ...]) -> str:
    return rnd.choices([c for c, _ in choices], weights=[w for _, w in choices])[0]


def _ensure_references(session: Session) -> tuple[int, int]:
    """Create the establishments and units that are missing; return how many were added."""
    added_est = added_units = 0
    for finess, name in ESTABLISHMENTS:
        if session.scalar(select(Establishment.id).where(Establishment.finess == finess)) is None:
            session.add(Establishment(finess=finess, name=name, legal_finess=LEGAL_FINESS))
            added_est += 1
    by_code = {u.code: u for u in session.scalars(select(OrgUnit))}
    for code, name, kind, parent in UNITS:
        if code not in by_code:
            unit = OrgUnit(code=code, name=name, kind=kind, parent_id=by_code[parent].id if parent else None)
            session.add(unit)
            session.flush()  # the children below need the parent's id
            by_code[code] = unit
            added_units += 1
    return added_est, added_units


class _People:
    """Draws fictional people; never the same (birth name, first given name, birth date) twice by accident."""

    def __init__(self, rnd: random.Random, today: dt.date) -> None:
        self.rnd = rnd
        self.today = today
        self.seen: set[tuple[str, str, dt.date]] = set()
        self.rpps: set[str] = set()
        self.emails: set[str] = set()
        self.serial = 0

    def new_rpps(self) -> str:
        while True:
            number = luhn_complete("10" + "".join(self.rnd.choice("0123456789") for _ in range(8)))
            if number not in self.rpps:
                self.rpps.add(number)
                return number

    def email(self, first: str, family: str) -> str:
        """Return ``prénom.nom@domain``, with a number only when that address is already taken."""
        local = f"{normalize_name(first)}.{normalize_name(family)}".replace(" ", "-")
        candidate, n = local, 1
        while f"{candidate}@{EMAIL_DOMAIN}" in self.emails:
            n += 1
            candidate = f"{local}{n}"
        self.emails.add(f"{candidate}@{EMAIL_DOMAIN}")
        return f"{candidate}@{EMAIL_DOMAIN}"

    def raw(self, profile: Profile) -> dict[str, Any]:
        rnd = self.rnd
        self.serial += 1
        while True:
            female = rnd.random() < (0.85 if profile.key in ("sage_femme", "infirmier", "aide_soignant") else 0.55)
            first = rnd.choice(FEMALE_NAMES if female else MALE_NAMES)
            family = rnd.choice(FAMILY_NAMES)
            young = profile.key in ("interne", "etudiant")
            age = rnd.randint(21, 29) if young else rnd.randint(23, 64)
            birth = self.today - dt.timedelta(days=age * 365 + rnd.randint(0, 364))
            if (family, first, birth) not in self.seen:
                self.seen.add((family, first, birth))
                break
        seconds = [n for n in (SECOND_FEMALE_NAMES if female else SECOND_MALE_NAMES) if n != first]
        given = first if rnd.random() < 0.5 else f"{first} {rnd.choice(seconds)}"
        usage = rnd.choice(FAMILY_NAMES) if female and rnd.random() < 0.2 else ""
        abroad = rnd.random() < 0.12
        contract = _weighted(rnd, profile.contracts)
        start = self.today - dt.timedelta(days=rnd.randint(30, 20 * 365 if contract == "permanent" else 700))
        # Nobody starts working before 20.
        start = max(start, birth + dt.timedelta(days=20 * 365))
        end = None
        if profile.always_ends or contract in ("fixed_term", "replacement", "interim"):
            end = self.today + dt.timedelta(days=rnd.randint(20, 300))
        units = [rnd.choice(profile.units)]
        if rnd.random() < 0.1:
            units.append(rnd.choice(profile.units))
        establishments = [ESTABLISHMENTS[0][0] if rnd.random() < 0.6 else rnd.choice(ESTABLISHMENTS)[0]]
        if profile.key == "medecin" and rnd.random() < 0.25:
            # Shared posts between the GHT's sites are common for doctors.
            establishments.append(rnd.choice(ESTABLISHMENTS)[0])
        email = self.email(first, usage or family)
        return {
            "birth_family_name": family,
            "usage_name": usage,
            "given_names": given,
            "birth_date": birth,
            "birth_country": rnd.choice(FOREIGN_COUNTRIES) if abroad else "99100",
            "birth_place": "" if abroad else rnd.choice(FRENCH_COMMUNES),
            "gender": "F" if female else "M",
            # Half of the vendors' engineers have no address in the establishment.
            "email": "" if profile.key == "prestataire" and rnd.random() < 0.5 else email,
            "rpps": self.new_rpps() if profile.rpps else "",
            "external_id": "" if contract in ("contractor", "interim") else f"MAT{100000 + self.serial}",
            "contract_type": contract,
            "start_date": start,
            "end_date": end,
            "establishments": establishments,
            "units": units,
            "roles": [profile.role],
        }


@dataclasses.dataclass
class _Tally:
    created: int = 0
    with_rpps: int = 0
    pending: int = 0
    suspended: int = 0
    departed: int = 0
    homonyms: int = 0


def _create(session: Session, raw: dict[str, Any], tally: _Tally, today: dt.date, *,
            confirm_homonym: bool = False) -> Identity:
    data = services.validate_identity(raw, today=today)
    identity = services.create_identity(session, data, actor=ACTOR, confirm_homonym=confirm_homonym, today=today)
    tally.created += 1
    tally.with_rpps += int(identity.rpps is not None)
    return identity


class Directory:
    """How the seed writes each person's arrival, departure and suspension: all of it today (this class), or
    spread over the past year (:class:`hospiconnect.devtools.seed_history.PastDirectory`)."""

    def create(self, session: Session, raw: dict[str, Any], tally: _Tally, today: dt.date, *,
               confirm_homonym: bool = False) -> Identity:
        return _create(session, raw, tally, today, confirm_homonym=confirm_homonym)

    def depart(self, session: Session, identity: Identity, left: dt.date, today: dt.date) -> None:
        """The contract ended on ``left`` (in the past) and the person has left."""
        services.end(session, identity, actor=ACTOR, end_date=left, reason="fin de contrat", today=today)
        services.change_status(session, identity, "departed", actor=ACTOR,
                               reason="départ : fin de contrat depuis plus de 30 jours")

    def suspend(self, session: Session, identity: Identity, reason: str, today: dt.date) -> None:
        services.suspend(session, identity, actor=ACTOR, reason=reason)


def _seed_identities(session: Session, count: int, rnd: random.Random, today: dt.date,
                     directory: Directory | None = None) -> _Tally:
    directory = directory or Directory()
    people = _People(rnd, today)
    tally = _Tally()
    # The confirmed homonyms are part of ``count``: they are added after the others.
    homonym_pairs = 2 if count >= 60 else (1 if count >= 10 else 0)
    profiles = _allocate(count - homonym_pairs)
    # Decide the special cases by position so that each exists even in a small demo.
    n = len(profiles)
    pending_every = 33 if n >= 33 else max(n, 1)
    suspended_every, departed_every = 25, 37
    homonym_sources: list[dict[str, Any]] = []
    for index, profile in enumerate(profiles):
        raw = people.raw(profile)
        if index % pending_every == 5 % pending_every:
            # Arrives in a few days: created "pending", activated by the daily job.
            raw["start_date"] = today + dt.timedelta(days=rnd.randint(3, 30))
            if raw["end_date"] is not None and raw["end_date"] <= raw["start_date"]:
                raw["end_date"] = raw["start_date"] + dt.timedelta(days=180)
            identity = directory.create(session, raw, tally, today)
            tally.pending += 1
            continue
        if homonym_pairs and index in (7, 41)[:homonym_pairs] and index + 1 < n:
            homonym_sources.append(raw)
        identity = directory.create(session, raw, tally, today)
        if index % departed_every == 11:
            left = today - dt.timedelta(days=rnd.randint(45, 200))
            if identity.start_date and left < identity.start_date:
                left = identity.start_date
            directory.depart(session, identity, left, today)
            tally.departed += 1
        elif index % suspended_every == 13:
            reason = rnd.choice(["absence de longue durée", "suspicion de compromission du compte",
                                 "demande du cadre de santé", "fin de contrat en cours de régularisation"])
            directory.suspend(session, identity, reason, today)
            tally.suspended += 1
    for source in homonym_sources:
        # Same birth name, first given name and birth date as an existing person, but someone else.
        raw = people.raw(PROFILES[5])
        raw.update(birth_family_name=source["birth_family_name"], given_names=source["given_names"],
                   birth_date=source["birth_date"], gender=source["gender"], usage_name="",
                   birth_country="99100", birth_place=rnd.choice(FRENCH_COMMUNES),
                   email=people.email(source["given_names"].split()[0], source["birth_family_name"]))
        directory.create(session, raw, tally, today, confirm_homonym=True)
        tally.homonyms += 1
    return tally


# --- demo relying parties and demo accounts ------------------------------------------------------------

#: The password of every demo account: memorable, and accepted by the password policy.
DEMO_PASSWORD = "Démo-HospiConnect-2026"
#: File of the instance folder where the demo relying parties find their client secrets (mode 0600).
DEMO_CLIENTS_FILE = "demo-clients.json"
TOTP_LABEL = "Application d'authentification (démo)"
TAG_CLIENT_UPDATED = "admin:client:updated"


@dataclasses.dataclass(frozen=True)
class DemoApp:
    """A demo relying party served by :mod:`hospiconnect.devtools.demo_rp` under ``/demo/<key>``."""

    key: str
    client_id: str
    name: str
    sensitivity: str
    scopes: str
    description: str

    def redirect_uri(self, settings: Settings) -> str:
        return f"{settings.issuer.rstrip('/')}/demo/{self.key}/callback"

    def home_uri(self, settings: Settings) -> str:
        """The app's page, also its registered ``post_logout_redirect_uri``."""
        return f"{settings.issuer.rstrip('/')}/demo/{self.key}"


DEMO_APPS: tuple[DemoApp, ...] = (
    DemoApp("dpi", "demo-dpi", "DPI (démo)", "health-data", "openid profile rpps organization",
            "Dossier patient informatisé fictif : il donne accès à des données de santé."),
    DemoApp("intranet", "demo-intranet", "Intranet (démo)", "standard", "openid profile email organization",
            "Intranet fictif de l'établissement : actualités, annuaire interne, menus du self."),
)


def demo_app(key: str) -> DemoApp | None:
    """Return the demo app whose URL segment is ``key``, or None."""
    return next((app for app in DEMO_APPS if app.key == key), None)


@dataclasses.dataclass(frozen=True)
class DemoAccountSpec:
    """Who plays which part in the demo: a role, with or without RPPS, with or without TOTP.

    ``drawn_from``: the role of the people the account is chosen among when that differs from ``role``;
    the seed then grants ``role`` to the person chosen (e.g. an administrative agent made registration
    officer)."""

    role: str
    label: str
    rpps: bool
    totp: bool
    drawn_from: str | None = None


#: The directory role that opens the enrollment desk (/guichet).
OFFICER_ROLE = "enrollment_officer"
#: The directory roles that open the RSSI's pages (/securite) and the emergency access desk (/bris-de-glace).
RSSI_ROLE = "rssi"
EMERGENCY_OFFICER_ROLE = emergency.OFFICER_ROLE

DEMO_ACCOUNTS: tuple[DemoAccountSpec, ...] = (
    DemoAccountSpec("medecin", "Médecin (avec RPPS)", True, True),
    DemoAccountSpec("ide", "Infirmier ou infirmière (avec RPPS)", True, True),
    DemoAccountSpec("aide_soignant", "Aide-soignant ou aide-soignante (sans RPPS)", False, True),
    DemoAccountSpec("administratif", "Agent administratif (mot de passe seul)", False, False),
    DemoAccountSpec(OFFICER_ROLE, "Agent d'enrôlement (guichet, sans RPPS)", False, True,
                    drawn_from="administratif"),
    DemoAccountSpec(RSSI_ROLE, "Responsable de la sécurité (RSSI)", False, True, drawn_from="administratif"),
    DemoAccountSpec(EMERGENCY_OFFICER_ROLE, "Agent d'astreinte (accès d'urgence)", False, True,
                    drawn_from="administratif"),
)


def demo_clients_path(settings: Settings) -> Path:
    """Return the path of ``demo-clients.json`` in the instance folder."""
    return Path(settings.instance_path) / DEMO_CLIENTS_FILE


def read_demo_clients(settings: Settings) -> dict[str, str]:
    """Return ``{client_id: client secret}`` from ``demo-clients.json``; empty when missing or unreadable."""
    try:
        data = json.loads(demo_clients_path(settings).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    found = data.get("clients") if isinstance(data, dict) else None
    if not isinstance(found, dict):
        return {}
    return {k: v["client_secret"] for k, v in found.items()
            if isinstance(v, dict) and isinstance(v.get("client_secret"), str)}


def _write_demo_clients(settings: Settings, secrets_by_client: dict[str, str]) -> None:
    """Write the secrets readable by the owner only, atomically: a reader never sees half a file."""
    path = demo_clients_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"issuer": settings.issuer,
            "note": "Secrets des applications de démonstration (hospiconnect demo) ; jamais en production.",
            "clients": {cid: {"client_secret": secret} for cid, secret in sorted(secrets_by_client.items())}}
    # mkstemp creates the file with mode 0600 before anything is written into it.
    fd, tmp = tempfile.mkstemp(prefix=".demo-clients-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(body, handle, ensure_ascii=False, indent=2)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _add_missing_uris(session: Session, client: Client, redirect_uri: str, logout_uri: str) -> bool:
    """Register the URIs of the current port too (the demo may be served on another port than the first
    time); return True when something was added. The URIs already registered stay valid."""
    redirects, logouts = client.redirect_uris, client.post_logout_redirect_uris
    if redirect_uri in redirects and logout_uri in logouts:
        return False
    client_services.validate_uri(redirect_uri)
    client_services.validate_uri(logout_uri, field="post_logout_redirect_uri")
    if redirect_uri not in redirects:
        redirects.append(redirect_uri)
    if logout_uri not in logouts:
        logouts.append(logout_uri)
    client.redirect_uris_json = json.dumps(redirects)
    client.post_logout_redirect_uris_json = json.dumps(logouts)
    session.flush()
    audit.record(session, TAG_CLIENT_UPDATED, actor=ACTOR, subject=f"client:{client.client_id}",
                 details={"redirect_uris": redirects, "post_logout_redirect_uris": logouts})
    return True


def _ensure_demo_clients(session: Session, keys: InstanceKeys, settings: Settings) -> list[str]:
    """Register the demo relying parties that are missing and keep ``demo-clients.json`` in step with the
    database; return the names of the clients created or changed (empty when all was ready)."""
    known = read_demo_clients(settings)
    secrets_by_client = dict(known)
    changed: list[str] = []
    for app in DEMO_APPS:
        redirect_uri, logout_uri = app.redirect_uri(settings), app.home_uri(settings)
        client = client_services.get_client(session, app.client_id)
        if client is None:
            _, secret = client_services.add_client(
                session, keys, name=app.name, redirect_uris=[redirect_uri], sensitivity=app.sensitivity,
                auth_method="client_secret_basic", post_logout_redirect_uris=[logout_uri], scopes=app.scopes,
                client_id=app.client_id, actor=ACTOR)
            assert secret is not None  # client_secret_basic always has one
            secrets_by_client[app.client_id] = secret
            changed.append(app.name)
            continue
        updated = _add_missing_uris(session, client, redirect_uri, logout_uri)
        secret = known.get(app.client_id)
        if client.disabled_at is None and (secret is None or not client_services.check_secret(keys, client, secret)):
            # Only the keyed hash is in the database: a lost or stale file is fixed with a new secret.
            secrets_by_client[app.client_id] = client_services.rotate_secret(session, keys, app.client_id,
                                                                             actor=ACTOR)
            updated = True
        if updated:
            changed.append(app.name)
    if secrets_by_client != known:
        _write_demo_clients(settings, secrets_by_client)
    return changed


@dataclasses.dataclass(frozen=True)
class DemoAccount:
    """A demo account as printed at start-up (the TOTP seed and URI only for accounts that have one)."""

    label: str
    role: str
    user_name: str
    name: str
    rpps: str | None
    password: str
    totp_seed: str | None
    otpauth_uri: str | None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _demo_identity_ids(session: Session) -> set[int]:
    """Return the identities whose password the demo seed set (the first transition of their password MIE
    was made by :data:`ACTOR`): that is how the demo accounts are found again at the next start-up."""
    return set(session.scalars(
        select(Mie.identity_id).join(MieTransition, MieTransition.mie_id == Mie.id)
        .where(Mie.type == "password", Mie.status != "revoked", MieTransition.from_status.is_(None),
               MieTransition.actor == ACTOR)))


def _with_role(session: Session, role: str) -> list[Identity]:
    return list(session.scalars(select(Identity).join(IdentityRole, IdentityRole.identity_id == Identity.id)
                                .where(IdentityRole.role == role).order_by(Identity.id)))


def _demo_totp(session: Session, identity: Identity) -> Mie | None:
    """Return the active TOTP MIE that the demo seed created for ``identity``, or None."""
    return session.scalar(
        select(Mie).join(MieTransition, MieTransition.mie_id == Mie.id)
        .where(Mie.identity_id == identity.id, Mie.type == "totp", Mie.status == "active",
               MieTransition.from_status.is_(None), MieTransition.actor == ACTOR)
        .order_by(Mie.id.desc()).limit(1))


def _find_demo_identity(session: Session, spec: DemoAccountSpec, marked: set[int]) -> Identity | None:
    # A role granted to another demo account (the registration officer is also an administrative agent)
    # marks that account: it is not this one.
    others = {s.role for s in DEMO_ACCOUNTS if s.drawn_from and s.role != spec.role}
    return next((i for i in _with_role(session, spec.role)
                 if i.id in marked and i.is_active and not others & set(i.role_names)), None)


def _candidates(session: Session, spec: DemoAccountSpec, taken: set[int]) -> list[Identity]:
    """Active people of the role, without any MIE yet (nobody's own credentials are touched), those
    without an end date first so that the account does not expire in the middle of a demo."""
    with_mie = set(session.scalars(select(Mie.identity_id).distinct()))
    found = [i for i in _with_role(session, spec.drawn_from or spec.role)
             if i.is_active and bool(i.rpps) == spec.rpps and i.id not in with_mie and i.id not in taken]
    return sorted(found, key=lambda i: (i.end_date is not None, i.contract_type != "permanent", i.id))


def _add_demo_totp(session: Session, keys: InstanceKeys, settings: Settings, identity: Identity) -> None:
    """Give ``identity`` an active TOTP MIE with a fresh seed, as if enrolled at the desk."""
    mie, _, _ = mie_services.begin_totp(session, identity, label=TOTP_LABEL, actor=ACTOR, keys=keys,
                                        issuer=settings.establishment_name)
    # Activated without a code: confirm_totp would consume the current time step, and the newcomer who
    # signs in within the same 30 seconds would see the code refused as already used.
    mie_services.transition(session, mie, "active", actor=ACTOR,
                            reason="démonstration : application préconfigurée")
    # The enrollment workflow records the identity check made at the desk; the demo simulates it so that
    # the acr reached with this MIE is the one of a real, proofed deployment.
    mie.proofing_method = "face_to_face"
    mie.proofing_at = utcnow()
    session.flush()


def _grant_role(session: Session, identity: Identity, role: str) -> None:
    """Add ``role`` to ``identity`` through the directory service (journaled as an update)."""
    if role in identity.role_names:
        return
    raw = {**services.identity_as_dict(identity), "roles": [*identity.role_names, role]}
    services.update_identity(session, identity, services.validate_identity(raw), actor=ACTOR)


def _ensure_demo_accounts(session: Session, keys: InstanceKeys, settings: Settings) -> tuple[int, int]:
    """Prepare the demo accounts that are missing; return ``(accounts created, TOTP MIE created)``."""
    marked = _demo_identity_ids(session)
    taken: set[int] = set()
    accounts = totps = 0
    for spec in DEMO_ACCOUNTS:
        identity = _find_demo_identity(session, spec, marked - taken)
        if identity is None:
            for candidate in _candidates(session, spec, taken | marked):
                try:
                    mie_services.set_password(session, candidate, DEMO_PASSWORD, actor=ACTOR,
                                              establishment_name=settings.establishment_name)
                except PasswordRejected:
                    continue  # the password contains this person's name: take the next one
                identity = candidate
                accounts += 1
                break
        if identity is None:
            continue  # a directory too small for this part
        if spec.drawn_from:
            _grant_role(session, identity, spec.role)
        taken.add(identity.id)
        if spec.totp and _demo_totp(session, identity) is None:
            _add_demo_totp(session, keys, settings, identity)
            totps += 1
    return accounts, totps


def demo_credentials(session: Session, keys: InstanceKeys, *, settings: Settings | None = None) -> list[DemoAccount]:
    """Return the demo accounts prepared by :func:`seed_demo` — user name, password, TOTP seed and
    ``otpauth://`` URI — in the order of :data:`DEMO_ACCOUNTS`, for the start-up banner of
    ``hospiconnect demo``. Changes nothing.

    Raises :class:`Forbidden` in production (same rule as :func:`seed_demo`): seeds are never shown there.
    """
    _refuse_in_production(settings)
    issuer = settings.establishment_name if settings is not None else Settings.establishment_name
    marked = _demo_identity_ids(session)
    taken: set[int] = set()
    found: list[DemoAccount] = []
    for spec in DEMO_ACCOUNTS:
        identity = _find_demo_identity(session, spec, marked - taken)
        if identity is None:
            continue
        taken.add(identity.id)
        seed = uri = None
        mie = _demo_totp(session, identity) if spec.totp else None
        credential = session.get(TotpCredential, mie.id) if mie is not None else None
        if credential is not None and credential.secret_enc:
            # Demo only: the seed is read back to be printed; the service keeps it encrypted at rest.
            seed = mie_services._seed_of(keys, credential)
            uri = totp.provisioning_uri(seed, account=identity.user_name, issuer=issuer)
        found.append(DemoAccount(label=spec.label, role=spec.role, user_name=identity.user_name,
                                 name=identity.display_name, rpps=identity.rpps, password=DEMO_PASSWORD,
                                 totp_seed=seed, otpauth_uri=uri))
    return found


#: The pages a demo account's role opens, as the banner names them.
_DESKS = {OFFICER_ROLE: ("le guichet d'enrôlement", "/guichet"),
          RSSI_ROLE: ("les pages de sécurité (trajectoire de sécurisation des MIE, revue des accès d'urgence, "
                      "dérogations)", "/securite"),
          EMERGENCY_OFFICER_ROLE: ("l'accès d'urgence (bris de glace)", "/bris-de-glace")}


def credentials_banner(accounts: list[DemoAccount], settings: Settings) -> list[str]:
    """Return the French lines that ``hospiconnect demo`` prints about the demo accounts and apps."""
    base = settings.issuer.rstrip("/")
    lines = ["Comptes de démonstration (identifiant / mot de passe / graine TOTP à saisir dans FreeOTP ou "
             "Google Authenticator) :"]
    if not accounts:
        lines.append("  (aucun : l'annuaire ne contient personne pour ces rôles)")
    for account in accounts:
        lines.append(f"  • {account.label} — {account.name}")
        lines.append(f"      identifiant : {account.user_name}   mot de passe : {account.password}")
        if account.totp_seed:
            lines.append(f"      graine TOTP : {account.totp_seed}")
            lines.append(f"      {account.otpauth_uri}")
        else:
            lines.append("      pas de second facteur : le DPI (démo) lui refusera l'accès")
        if account.role in _DESKS:
            name, path = _DESKS[account.role]
            lines.append(f"      ouvre {name} {base}{path} une fois connecté(e) avec deux facteurs (par exemple au "
                         "DPI (démo))")
    lines.append("Applications de démonstration :")
    for app in DEMO_APPS:
        need = "deux facteurs exigés" if app.sensitivity == "health-data" else "un facteur suffit"
        lines.append(f"  • {app.name} ({need}) : {base}/demo/{app.key}")
    lines.append("Enrôlement en face à face :")
    lines.append(f"  • guichet d'enrôlement (agent d'enrôlement connecté avec deux facteurs) : {base}/guichet")
    lines.append(f"  • activation d'un moyen d'identification avec le code de la fiche d'activation : "
                 f"{base}/activation")
    if settings.fcplus_simulator_enabled:
        lines.append("Enrôlement à distance (simulateur FranceConnect+, identités fictives) :")
        lines.append("  • au guichet, cherchez « Camille », ouvrez un dossier et envoyez une invitation "
                     "FranceConnect+ : le guichet affiche le lien (aucun e-mail ne part d'une démonstration)")
    return lines


def seed_demo(session: Session, keys: InstanceKeys, count: int = 300, *, seed: int = DEFAULT_SEED,
              today: dt.date | None = None, settings: Settings | None = None, history_days: int = 0) -> str:
    """Fill an empty directory with a fictional GHT and return a one-line French summary.

    Idempotent: when identities already exist no identity is added; missing reference rows and the
    ``demo-scim`` API token are still created. The token's plaintext appears in the summary only when it
    is created. Works in the caller's transaction (nothing is committed here).

    With ``settings`` (they give the issuer, hence the redirect URIs, and the instance folder), also: the
    demo relying parties ``demo-dpi`` and ``demo-intranet`` (secrets written to ``demo-clients.json``,
    mode 0600) and the demo accounts of :data:`DEMO_ACCOUNTS` — again only what is missing, so a second
    run creates nothing and keeps the TOTP seeds. :func:`demo_credentials` returns the accounts.

    With ``history_days`` (``hospiconnect demo``: 365; needs ``settings``), the identities created get a past of
    that many days — arrivals, departures, MIE, enrollment cases, exceptions, emergency accesses, sign-ins
    (:mod:`hospiconnect.devtools.seed_history`, :mod:`hospiconnect.devtools.seed_activity`) — and the
    trajectory's days missing among them are rebuilt from it, with today's snapshot: the RSSI's dashboard has
    that history on first start. A second run adds nothing.

    Raises :class:`Forbidden` when ``settings`` (or ``HOSPICONNECT_ENV`` when no settings are given)
    designate production.
    """
    _refuse_in_production(settings)
    if count < 0:
        raise ValueError("count must be positive")
    if history_days < 0 or (history_days and settings is None):
        raise ValueError("history_days must be positive and needs the settings")
    today = today or dt.date.today()
    rnd = random.Random(seed)
    added_est, added_units = _ensure_references(session)
    session.flush()
    existing = session.scalar(select(func.count(Identity.id))) or 0
    parts: list[str] = []
    past: PastDirectory | None = None
    if existing:
        parts.append(f"annuaire déjà peuplé ({existing} identités), aucune identité ajoutée")
    else:
        if history_days:
            assert settings is not None
            from hospiconnect.devtools.seed_history import PastDirectory  # local: it imports this module

            past = PastDirectory(settings, today=today, days=history_days, seed=seed)
        tally = _seed_identities(session, count, rnd, today, past)
        parts.append(
            f"{len(ESTABLISHMENTS)} établissements, {len(UNITS)} pôles et services, {tally.created} identités "
            f"({tally.with_rpps} avec RPPS, {tally.pending} en attente, {tally.suspended} suspendues, "
            f"{tally.departed} parties, {tally.homonyms} homonymes confirmés)"
        )
    if existing and (added_est or added_units):
        parts.append(f"{added_est} établissement(s) et {added_units} unité(s) ajoutés")
    if session.scalar(select(ApiToken.id).where(ApiToken.name == SCIM_TOKEN_NAME)) is None:
        _, plaintext = token_services.create_token(session, keys, name=SCIM_TOKEN_NAME, scopes=["scim"],
                                                   actor=ACTOR)
        parts.append(f"jeton SCIM « {SCIM_TOKEN_NAME} » : {plaintext} (affiché cette fois seulement)")
    else:
        parts.append(f"jeton SCIM « {SCIM_TOKEN_NAME} » déjà créé")
    if settings is not None:
        changed = _ensure_demo_clients(session, keys, settings)
        if changed:
            names = " et ".join(f"« {name} »" for name in changed)
            parts.append(f"application(s) de démonstration {names} enregistrée(s), secrets dans "
                         f"{demo_clients_path(settings)}")
        else:
            parts.append("applications de démonstration déjà enregistrées")
        accounts, totps = _ensure_demo_accounts(session, keys, settings)
        if accounts or totps:
            parts.append(f"{accounts} compte(s) de démonstration et {totps} application(s) "
                         "d'authentification préparés")
        else:
            parts.append("comptes de démonstration déjà prêts")
        if past is not None:
            # After the demo accounts: they keep their own MIE (created today), and their roles are there for
            # the past's enrollment cases, exceptions and emergency accesses.
            from hospiconnect.devtools.seed_activity import add_history

            parts.append(add_history(session, keys, settings, past))
        from hospiconnect.devtools.seed_remote import remote_demo_summary  # local: it imports this module

        parts.extend(remote_demo_summary(session, settings))
        from hospiconnect.devtools.seed_psc import psc_demo_summary  # local: it imports this module

        parts.extend(psc_demo_summary(session, keys, settings, past))
        if history_days:
            from hospiconnect.devtools.seed_history import ensure_trajectory

            parts.append(ensure_trajectory(session, settings, today=today, days=history_days))
    session.flush()
    return " ; ".join(parts) + "."
