"""Writing the plan's rows, table by table, in foreign-key order."""

from __future__ import annotations

import datetime as dt
from typing import Any

from benchmarks.synthetic.journal import insert_rows, reset_sequences
from benchmarks.synthetic.plan import Plan
from hospiconnect.authenticators.models import (
    EmergencyCredential,
    Mie,
    MieTransition,
    PasswordCredential,
    TotpCredential,
    WebAuthnCredential,
)
from hospiconnect.authorizations.models import PolicyException
from hospiconnect.devtools.hrfile import FAMILY_NAMES, FEMALE_NAMES, MALE_NAMES
from hospiconnect.directory.models import (
    Establishment,
    Identity,
    IdentityEstablishment,
    IdentityRole,
    IdentityUnit,
    OrgUnit,
)
from hospiconnect.directory.normalize import normalize_name
from hospiconnect.enrollment.models import EnrollmentCase, EnrollmentTransition



def _identity_rows(plan: Plan) -> list[tuple[Any, ...]]:
    rnd = plan.rnd
    rows = []
    for person, (family, first, female) in zip(plan.people, plan.names):
        given = first if rnd.random() < 0.6 else f"{first} {rnd.choice(FEMALE_NAMES if female else MALE_NAMES)}"
        usage = rnd.choice(FAMILY_NAMES) if female and rnd.random() < 0.2 else None
        birth = plan.clock.today - dt.timedelta(days=rnd.randint(20 * 365, 64 * 365))
        abroad = rnd.random() < 0.08
        rows.append((
            person.id, person.public_id, person.user_name,
            None if person.contract in ("interim", "contractor") else f"MAT{person.id:07d}",
            family, usage, given, birth, None if abroad else "75056", "99350" if abroad else "99100",
            "F" if female else "M", f"{person.user_name}@chu-valmont.example", person.rpps,
            "rpps" if person.rpps else "local", person.contract, person.start_date, person.end_date, person.status,
            person.status_reason, person.status_changed_at, normalize_name(family),
            normalize_name(usage) if usage else None, normalize_name(first), person.version, person.created_at,
            person.updated_at))
    return rows


IDENTITY_COLUMNS = ("id", "public_id", "user_name", "external_id", "birth_family_name", "usage_name", "given_names",
                    "birth_date", "birth_place", "birth_country", "gender", "email", "rpps", "population",
                    "contract_type", "start_date", "end_date", "status", "status_reason", "status_changed_at",
                    "birth_family_name_norm", "usage_name_norm", "first_given_name_norm", "version", "created_at",
                    "updated_at")
MIE_COLUMNS = ("id", "public_id", "identity_id", "type", "label", "status", "amr_json", "proofing_method",
               "proofing_at", "created_at", "activated_at", "revoked_at", "last_used_at")
CASE_COLUMNS = tuple(c.name for c in EnrollmentCase.__table__.columns)
EXCEPTION_COLUMNS = tuple(c.name for c in PolicyException.__table__.columns)
EMERGENCY_COLUMNS = tuple(c.name for c in EmergencyCredential.__table__.columns)


def write_tables(conn: Any, plan: Plan) -> dict[str, int]:
    counts: dict[str, int] = {}

    def put(table: Any, columns: tuple[str, ...], rows: Any) -> None:
        counts[table.name] = counts.get(table.name, 0) + insert_rows(conn, table, columns, rows)

    put(Establishment.__table__, ("id", "finess", "name", "legal_finess"), plan.rows["establishments"])
    put(OrgUnit.__table__, ("id", "code", "name", "kind", "parent_id"), plan.rows["org_units"])
    put(Identity.__table__, IDENTITY_COLUMNS, _identity_rows(plan))
    link_ids = {name: plan.ids.get(name, 0) for name in ("identity_establishments", "identity_units", "identity_roles")}

    def links(attribute: str, table: str) -> Any:
        for person in plan.people:
            for value in getattr(person, attribute):
                link_ids[table] += 1
                yield link_ids[table], person.id, value

    put(IdentityEstablishment.__table__, ("id", "identity_id", "finess"),
        links("establishments", "identity_establishments"))
    put(IdentityUnit.__table__, ("id", "identity_id", "unit_code"), links("units", "identity_units"))
    put(IdentityRole.__table__, ("id", "identity_id", "role"), links("roles", "identity_roles"))
    put(Mie.__table__, MIE_COLUMNS, (tuple(m[c] for c in MIE_COLUMNS) for m in plan.mies))
    put(MieTransition.__table__, ("id", "mie_id", "from_status", "to_status", "at", "actor", "reason"),
        plan.rows["mie_transitions"])
    put(PasswordCredential.__table__, ("mie_id", "hash", "changed_at"), plan.rows["password_credentials"])
    put(TotpCredential.__table__, ("mie_id", "secret_enc", "last_step"), plan.rows["totp_credentials"])
    put(WebAuthnCredential.__table__, ("mie_id", "credential_id", "public_key", "sign_count", "aaguid",
                                       "attestation_format", "transports", "user_verified_at_registration",
                                       "attachment", "backup_eligible"), plan.rows["webauthn_credentials"])
    put(EnrollmentCase.__table__, CASE_COLUMNS, (tuple(c[k] for k in CASE_COLUMNS) for c in plan.cases))
    put(EnrollmentTransition.__table__, ("id", "case_id", "event", "from_state", "to_state", "at", "actor"),
        plan.rows["enrollment_transitions"])
    put(PolicyException.__table__, EXCEPTION_COLUMNS,
        (tuple(r[k] for k in EXCEPTION_COLUMNS) for r in plan.exceptions))
    put(EmergencyCredential.__table__, EMERGENCY_COLUMNS,
        (tuple(r[k] for k in EMERGENCY_COLUMNS) for r in plan.emergency))
    reset_sequences(conn, [Establishment.__table__, OrgUnit.__table__, Identity.__table__,
                           IdentityEstablishment.__table__, IdentityUnit.__table__, IdentityRole.__table__,
                           Mie.__table__, MieTransition.__table__, EnrollmentCase.__table__,
                           EnrollmentTransition.__table__, PolicyException.__table__, EmergencyCredential.__table__])
    return counts

