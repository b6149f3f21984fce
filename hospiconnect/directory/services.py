"""Directory services: create, change and end identities. Each function works inside the caller's
session (one transaction per operation) and journals what it changes in that same transaction."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from typing import Any, Iterable, Mapping

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from hospiconnect.audit import service as audit
from hospiconnect.audit import tags
from hospiconnect.db import utcnow
from hospiconnect.directory import validation as v
from hospiconnect.directory.models import (
    Establishment,
    Identity,
    IdentityEstablishment,
    IdentityRole,
    IdentityUnit,
    OrgUnit,
)
from hospiconnect.directory.normalize import first_given_name, normalize_name
from hospiconnect.errors import Conflict, NotFound, PreconditionFailed, ValidationError

ROLE_RE = re.compile(r"^[a-z0-9_\-.]{1,50}$")
UNIT_RE = re.compile(r"^[A-Za-z0-9_\-.]{1,50}$")


class DuplicateIdentity(Conflict):
    """An identity with the same birth name, first given name and birth date exists."""

    code = "duplicate"

    def __init__(self, candidates: list[Identity]) -> None:
        names = ", ".join(f"{c.display_name} ({c.user_name})" for c in candidates)
        super().__init__(
            f"Une identité existe déjà avec le même nom de naissance, le même premier prénom et la même "
            f"date de naissance : {names}. S'il s'agit d'un homonyme, confirmez-le explicitement.",
        )
        self.candidates = candidates


class RppsTaken(Conflict):
    code = "rpps_taken"


class InvalidTransition(Conflict):
    code = "invalid_transition"


@dataclasses.dataclass
class IdentityData:
    """The validated fields of an identity (what a form, an API call or an HR row provides)."""

    birth_family_name: str
    given_names: str
    birth_date: dt.date
    birth_country: str
    gender: str
    contract_type: str
    birth_place: str | None = None
    usage_name: str | None = None
    email: str | None = None
    rpps: str | None = None
    external_id: str | None = None
    user_name: str | None = None
    start_date: dt.date | None = None
    end_date: dt.date | None = None
    establishments: list[str] = dataclasses.field(default_factory=list)
    units: list[str] = dataclasses.field(default_factory=list)
    roles: list[str] = dataclasses.field(default_factory=list)


FIELDS = [f.name for f in dataclasses.fields(IdentityData)]
_REQUIRED_LABELS = {
    "birth_family_name": "Le nom de naissance",
    "given_names": "Les prénoms",
    "birth_date": "La date de naissance",
    "birth_country": "Le pays de naissance",
    "gender": "Le genre",
    "contract_type": "Le type de contrat",
}


def _split_list(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [p.strip() for p in re.split(r"[|,]", value) if p.strip()]
    return [str(p).strip() for p in value if str(p).strip()]


def validate_identity(raw: Mapping[str, Any], *, today: dt.date | None = None) -> IdentityData:
    """Return validated :class:`IdentityData` from raw values (strings or dates).

    Raises :class:`ValidationError` whose ``errors`` maps every bad field to a French message.
    """
    today = today or dt.date.today()
    errors: dict[str, str] = {}
    out: dict[str, Any] = {}

    def attempt(field: str, fn: Any) -> None:
        try:
            out[field] = fn()
        except ValidationError as exc:
            errors[exc.field or field] = exc.message

    for field, label in _REQUIRED_LABELS.items():
        if raw.get(field) in (None, ""):
            errors[field] = f"{label} {'sont obligatoires' if field == 'given_names' else 'est obligatoire'}."

    if "birth_family_name" not in errors:
        attempt("birth_family_name", lambda: v.check_name(raw["birth_family_name"], "birth_family_name",
                                                          "Le nom de naissance"))
    if "given_names" not in errors:
        attempt("given_names", lambda: v.check_name(raw["given_names"], "given_names", "Les prénoms"))
    attempt("usage_name", lambda: v.check_name(raw.get("usage_name") or "", "usage_name", "Le nom d'usage",
                                               required=False) or None)

    def date_of(field: str, label: str) -> dt.date | None:
        value = raw.get(field)
        if value in (None, ""):
            return None
        if isinstance(value, dt.date):
            return value
        return v.parse_date(str(value), field, label)

    if "birth_date" not in errors:
        attempt("birth_date", lambda: v.check_birth_date(date_of("birth_date", "Date de naissance"), today))
    attempt("start_date", lambda: date_of("start_date", "Date d'arrivée"))
    attempt("end_date", lambda: date_of("end_date", "Date de fin"))
    if out.get("start_date") and out.get("end_date") and out["end_date"] < out["start_date"]:
        errors["end_date"] = "La date de fin précède la date d'arrivée."
    if "birth_country" not in errors:
        try:
            out["birth_place"], out["birth_country"] = v.check_birth_place(raw.get("birth_place"),
                                                                           str(raw["birth_country"]))
        except ValidationError as exc:
            errors[exc.field or "birth_place"] = exc.message
    if "gender" not in errors:
        attempt("gender", lambda: v.check_gender(str(raw["gender"])))
    if "contract_type" not in errors:
        attempt("contract_type", lambda: v.check_contract_type(str(raw["contract_type"])))
    if raw.get("email"):
        attempt("email", lambda: v.check_email(str(raw["email"])))
    if raw.get("rpps"):
        attempt("rpps", lambda: v.check_rpps(str(raw["rpps"])))
    for field in ("external_id", "user_name"):
        value = raw.get(field)
        if value not in (None, ""):
            text = str(value).strip()
            if len(text) > 100 or (field == "user_name" and not re.match(r"^[a-z0-9][a-z0-9._\-]*$", text)):
                errors[field] = ("Identifiant de connexion invalide (minuscules, chiffres, « . », « - », « _ »)."
                                 if field == "user_name" else "Identifiant externe trop long.")
            else:
                out[field] = text
    try:
        out["establishments"] = sorted({v.check_finess(f) for f in _split_list(raw.get("establishments"))})
    except ValidationError as exc:
        errors["establishments"] = exc.message
    units = _split_list(raw.get("units"))
    bad_units = [u for u in units if not UNIT_RE.match(u)]
    if bad_units:
        errors["units"] = f"Code d'unité invalide : {bad_units[0]!r}."
    out["units"] = sorted(set(units))
    roles = [r.lower() for r in _split_list(raw.get("roles"))]
    bad_roles = [r for r in roles if not ROLE_RE.match(r)]
    if bad_roles:
        errors["roles"] = f"Rôle invalide : {bad_roles[0]!r}."
    out["roles"] = sorted(set(roles))

    if errors:
        first = next(iter(errors.values()))
        raise ValidationError(first, errors=errors)
    return IdentityData(**{k: out[k] for k in FIELDS if k in out})


def identity_as_dict(identity: Identity) -> dict[str, Any]:
    """Return a JSON-friendly view of an identity (used by the CLI and the API)."""
    return {
        "id": identity.public_id,
        "user_name": identity.user_name,
        "external_id": identity.external_id,
        "birth_family_name": identity.birth_family_name,
        "usage_name": identity.usage_name,
        "given_names": identity.given_names,
        "birth_date": identity.birth_date.isoformat(),
        "birth_place": identity.birth_place,
        "birth_country": identity.birth_country,
        "gender": identity.gender,
        "email": identity.email,
        "rpps": identity.rpps,
        "population": identity.population,
        "contract_type": identity.contract_type,
        "start_date": identity.start_date.isoformat() if identity.start_date else None,
        "end_date": identity.end_date.isoformat() if identity.end_date else None,
        "status": identity.status,
        "status_reason": identity.status_reason,
        "establishments": identity.finess_numbers,
        "units": identity.unit_codes,
        "roles": identity.role_names,
        "version": identity.version,
        "created_at": identity.created_at.isoformat(),
        "updated_at": identity.updated_at.isoformat(),
    }


# --- lookups -------------------------------------------------------------------------------------------

def get_identity(session: Session, key: str | int) -> Identity:
    """Return the identity whose public id, user name, external id or RPPS is ``key``; raise NotFound."""
    if isinstance(key, int):
        identity = session.get(Identity, key)
    else:
        identity = session.scalar(
            select(Identity).where(
                or_(Identity.public_id == key, Identity.user_name == key, Identity.external_id == key,
                    Identity.rpps == key)
            ).limit(1)
        )
    if identity is None:
        raise NotFound(f"Aucune identité ne correspond à {key!r}.")
    return identity


def find_duplicates(session: Session, birth_family_name: str, given_names: str, birth_date: dt.date,
                    *, exclude_id: int | None = None) -> list[Identity]:
    stmt = select(Identity).where(
        Identity.birth_family_name_norm == normalize_name(birth_family_name),
        Identity.first_given_name_norm == normalize_name(first_given_name(given_names)),
        Identity.birth_date == birth_date,
    )
    if exclude_id is not None:
        stmt = stmt.where(Identity.id != exclude_id)
    return list(session.scalars(stmt))


def list_identities(session: Session, *, status: str | None = None, search: str | None = None,
                    population: str | None = None, limit: int = 50, offset: int = 0) -> tuple[int, list[Identity]]:
    stmt = select(Identity)
    if status:
        stmt = stmt.where(Identity.status == status)
    if population:
        stmt = stmt.where(Identity.population == population)
    if search:
        key = normalize_name(search)
        stmt = stmt.where(or_(
            Identity.birth_family_name_norm.startswith(key),
            Identity.usage_name_norm.startswith(key),
            Identity.first_given_name_norm.startswith(key),
            Identity.user_name.startswith(search.lower()),
            Identity.rpps == search,
            Identity.email == search.lower(),
        ))
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = session.scalars(
        stmt.order_by(Identity.birth_family_name_norm, Identity.first_given_name_norm, Identity.id)
        .limit(limit).offset(offset)
    ).all()
    return total, list(rows)


# --- writes --------------------------------------------------------------------------------------------

def _suggest_user_name(session: Session, data: IdentityData) -> str:
    family = normalize_name(data.usage_name or data.birth_family_name).replace(" ", "")
    initial = normalize_name(first_given_name(data.given_names))[:1]
    base = re.sub(r"[^a-z0-9]", "", f"{initial}{family}")[:40] or "utilisateur"
    taken = set(session.scalars(
        select(Identity.user_name).where(or_(Identity.user_name == base, Identity.user_name.like(f"{base}%")))
    ))
    if base not in taken:
        return base
    n = 2
    while f"{base}{n}" in taken:
        n += 1
    return f"{base}{n}"


def _ensure_references(session: Session, data: IdentityData) -> None:
    for finess in data.establishments:
        if session.scalar(select(Establishment.id).where(Establishment.finess == finess)) is None:
            session.add(Establishment(finess=finess, name=""))
    for code in data.units:
        if session.scalar(select(OrgUnit.id).where(OrgUnit.code == code)) is None:
            session.add(OrgUnit(code=code, name=code))


def _apply(identity: Identity, data: IdentityData) -> None:
    identity.birth_family_name = data.birth_family_name
    identity.usage_name = data.usage_name
    identity.given_names = data.given_names
    identity.birth_date = data.birth_date
    identity.birth_place = data.birth_place
    identity.birth_country = data.birth_country
    identity.gender = data.gender
    identity.email = data.email
    identity.rpps = data.rpps
    identity.population = "rpps" if data.rpps else "local"
    identity.contract_type = data.contract_type
    identity.start_date = data.start_date
    identity.end_date = data.end_date
    if data.external_id is not None:
        identity.external_id = data.external_id
    identity.birth_family_name_norm = normalize_name(data.birth_family_name)
    identity.usage_name_norm = normalize_name(data.usage_name) if data.usage_name else None
    identity.first_given_name_norm = normalize_name(first_given_name(data.given_names))
    current = {link.finess: link for link in identity.establishments}
    identity.establishments = [current.get(f) or IdentityEstablishment(finess=f) for f in data.establishments]
    current_units = {link.unit_code: link for link in identity.units}
    identity.units = [current_units.get(u) or IdentityUnit(unit_code=u) for u in data.units]
    current_roles = {link.role: link for link in identity.roles}
    identity.roles = [current_roles.get(r) or IdentityRole(role=r) for r in data.roles]


def _check_unique(session: Session, data: IdentityData, exclude_id: int | None) -> None:
    if data.rpps:
        other = session.scalar(select(Identity).where(Identity.rpps == data.rpps))
        if other is not None and other.id != exclude_id:
            raise RppsTaken(f"Le numéro RPPS {data.rpps} est déjà attribué à {other.display_name}.")
    if data.external_id:
        other = session.scalar(select(Identity).where(Identity.external_id == data.external_id))
        if other is not None and other.id != exclude_id:
            raise Conflict(f"L'identifiant externe {data.external_id} est déjà attribué à {other.display_name}.",
                           code="external_id_taken")
    if data.user_name:
        other = session.scalar(select(Identity).where(Identity.user_name == data.user_name))
        if other is not None and other.id != exclude_id:
            raise Conflict(f"L'identifiant de connexion {data.user_name} est déjà pris.", code="user_name_taken")


def create_identity(session: Session, data: IdentityData, *, actor: str, client_ip: str | None = None,
                    confirm_homonym: bool = False, today: dt.date | None = None) -> Identity:
    """Create an identity and return it.

    The status is ``active`` when the start date has arrived (or is unknown), ``pending`` otherwise.
    Raises :class:`DuplicateIdentity` unless ``confirm_homonym``; :class:`RppsTaken`; :class:`Conflict`.
    """
    today = today or dt.date.today()
    _check_unique(session, data, None)
    duplicates = find_duplicates(session, data.birth_family_name, data.given_names, data.birth_date)
    if duplicates and not confirm_homonym:
        raise DuplicateIdentity(duplicates)
    _ensure_references(session, data)
    identity = Identity(user_name=data.user_name or _suggest_user_name(session, data))
    _apply(identity, data)
    now = utcnow()
    identity.status = "pending" if data.start_date and data.start_date > today else "active"
    identity.status_changed_at = now
    identity.created_at = identity.updated_at = now
    identity.version = 1
    session.add(identity)
    session.flush()
    audit.record(session, tags.DIRECTORY_IDENTITY_CREATED, actor=actor, subject=identity.public_id,
                 client_ip=client_ip, details={"user_name": identity.user_name, "status": identity.status,
                                               "population": identity.population})
    if duplicates:
        audit.record(session, tags.DIRECTORY_IDENTITY_HOMONYM_CONFIRMED, actor=actor, subject=identity.public_id,
                     client_ip=client_ip, details={"homonyms": [d.public_id for d in duplicates]})
    return identity


def changed_fields(identity: Identity, data: IdentityData) -> list[str]:
    before = identity_as_dict(identity)
    after = dataclasses.asdict(data)
    changed = []
    for field in FIELDS:
        if field in ("user_name",):
            continue
        old = before.get(field)
        new = after.get(field)
        if isinstance(new, dt.date):
            new = new.isoformat()
        if field == "external_id" and new is None:
            continue
        if (old or None) != (new or None):
            changed.append(field)
    return changed


def update_identity(session: Session, identity: Identity, data: IdentityData, *, actor: str,
                    client_ip: str | None = None, expected_version: int | None = None,
                    confirm_homonym: bool = False) -> list[str]:
    """Replace the identity's fields with ``data``; return the names of the fields that changed.

    Raises :class:`PreconditionFailed` when ``expected_version`` is stale.
    """
    if expected_version is not None and expected_version != identity.version:
        raise PreconditionFailed("L'identité a été modifiée entre-temps ; rechargez-la.")
    changed = changed_fields(identity, data)
    if data.user_name and data.user_name != identity.user_name:
        changed.append("user_name")
    if not changed:
        return []
    _check_unique(session, data, identity.id)
    if {"birth_family_name", "given_names", "birth_date"} & set(changed):
        duplicates = find_duplicates(session, data.birth_family_name, data.given_names, data.birth_date,
                                     exclude_id=identity.id)
        if duplicates and not confirm_homonym:
            raise DuplicateIdentity(duplicates)
    _ensure_references(session, data)
    _apply(identity, data)
    if data.user_name:
        identity.user_name = data.user_name
    identity.version += 1
    identity.updated_at = utcnow()
    session.flush()
    audit.record(session, tags.DIRECTORY_IDENTITY_UPDATED, actor=actor, subject=identity.public_id,
                 client_ip=client_ip, details={"fields": changed})
    return changed


# --- lifecycle -----------------------------------------------------------------------------------------

# The allowed status changes; everything else is refused with InvalidTransition.
TRANSITIONS: dict[tuple[str, str], str] = {
    ("pending", "active"): tags.DIRECTORY_IDENTITY_ACTIVATED,
    ("pending", "suspended"): tags.DIRECTORY_IDENTITY_SUSPENDED,
    ("active", "suspended"): tags.DIRECTORY_IDENTITY_SUSPENDED,
    ("suspended", "active"): tags.DIRECTORY_IDENTITY_REACTIVATED,
    ("suspended", "departed"): tags.DIRECTORY_IDENTITY_DEPARTED,
    ("pending", "departed"): tags.DIRECTORY_IDENTITY_DEPARTED,
    ("active", "departed"): tags.DIRECTORY_IDENTITY_DEPARTED,
}


def change_status(session: Session, identity: Identity, new_status: str, *, actor: str, reason: str,
                  client_ip: str | None = None) -> None:
    """Move an identity to ``new_status``; raise :class:`InvalidTransition` when not allowed."""
    tag = TRANSITIONS.get((identity.status, new_status))
    if tag is None:
        raise InvalidTransition(
            f"Impossible de passer de « {v.STATUSES.get(identity.status, identity.status)} » à "
            f"« {v.STATUSES.get(new_status, new_status)} »."
        )
    old = identity.status
    identity.status = new_status
    identity.status_reason = reason[:200] if reason else None
    identity.status_changed_at = identity.updated_at = utcnow()
    identity.version += 1
    session.flush()
    audit.record(session, tag, actor=actor, subject=identity.public_id, client_ip=client_ip,
                 details={"from": old, "to": new_status, "reason": reason})


def suspend(session: Session, identity: Identity, *, actor: str, reason: str, client_ip: str | None = None) -> None:
    change_status(session, identity, "suspended", actor=actor, reason=reason, client_ip=client_ip)


def reactivate(session: Session, identity: Identity, *, actor: str, reason: str = "",
               client_ip: str | None = None, today: dt.date | None = None) -> None:
    today = today or dt.date.today()
    if identity.end_date is not None and identity.end_date < today:
        raise InvalidTransition("La date de fin est passée : prolongez-la avant de réactiver l'identité.")
    change_status(session, identity, "active", actor=actor, reason=reason or "réactivation", client_ip=client_ip)


def end(session: Session, identity: Identity, *, actor: str, end_date: dt.date | None = None,
        reason: str = "fin de contrat", client_ip: str | None = None, today: dt.date | None = None) -> None:
    """Set the end date; when it has arrived, suspend the identity now (departed after the grace period)."""
    today = today or dt.date.today()
    end_date = end_date or today
    if identity.status == "departed":
        raise InvalidTransition("Cette identité est déjà partie.")
    if identity.start_date and end_date < identity.start_date:
        raise ValidationError("La date de fin précède la date d'arrivée.", field="end_date")
    identity.end_date = end_date
    identity.version += 1
    identity.updated_at = utcnow()
    session.flush()
    audit.record(session, tags.DIRECTORY_IDENTITY_ENDED, actor=actor, subject=identity.public_id,
                 client_ip=client_ip, details={"end_date": end_date.isoformat(), "reason": reason})
    if end_date <= today and identity.status in ("active", "pending"):
        change_status(session, identity, "suspended", actor=actor, reason=reason, client_ip=client_ip)


@dataclasses.dataclass
class LifecycleReport:
    activated: list[str] = dataclasses.field(default_factory=list)
    suspended: list[str] = dataclasses.field(default_factory=list)
    departed: list[str] = dataclasses.field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: len(val) for k, val in dataclasses.asdict(self).items()} | {
            "identities": dataclasses.asdict(self)}


def run_lifecycle(session: Session, *, today: dt.date, grace_days: int, actor: str = "system:jobs") -> LifecycleReport:
    """Apply start and end dates: activate arrivals, suspend ended contracts, mark departures after
    ``grace_days``. Idempotent: a second run on the same day changes nothing."""
    report = LifecycleReport()
    arrivals = session.scalars(select(Identity).where(
        Identity.status == "pending", or_(Identity.start_date.is_(None), Identity.start_date <= today),
        or_(Identity.end_date.is_(None), Identity.end_date >= today),
    )).all()
    for identity in arrivals:
        change_status(session, identity, "active", actor=actor, reason="date d'arrivée atteinte")
        report.activated.append(identity.public_id)
    ended = session.scalars(select(Identity).where(
        Identity.status.in_(("active", "pending")), Identity.end_date.is_not(None), Identity.end_date < today,
    )).all()
    for identity in ended:
        change_status(session, identity, "suspended", actor=actor, reason="date de fin dépassée")
        report.suspended.append(identity.public_id)
    limit = today - dt.timedelta(days=grace_days)
    leaving = session.scalars(select(Identity).where(
        Identity.status == "suspended", Identity.end_date.is_not(None), Identity.end_date < limit,
    )).all()
    for identity in leaving:
        change_status(session, identity, "departed", actor=actor,
                      reason=f"départ : fin de contrat depuis plus de {grace_days} jours")
        report.departed.append(identity.public_id)
    return report


def upsert_establishments(session: Session, items: Iterable[tuple[str, str]]) -> None:
    for finess, name in items:
        finess = v.check_finess(finess)
        row = session.scalar(select(Establishment).where(Establishment.finess == finess))
        if row is None:
            session.add(Establishment(finess=finess, name=name))
        else:
            row.name = name
