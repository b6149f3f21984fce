"""MIE (with their transitions and secrets) and enrollment cases (with theirs): a password for everyone, second
factors along the adoption curve, each change with its journal event as the product's services record it."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import math
import random
from typing import Any

from benchmarks.synthetic.plan import Person, Plan
from benchmarks.synthetic.reference import (
    AAGUIDS,
    ADOPTION,
    CASE_DAYS,
    HR_ACTOR,
    JOBS_ACTOR,
    PASSWORD,
    WEBAUTHN_LABELS,
)
from hospiconnect import crypto
from hospiconnect.authenticators import password as pw
from hospiconnect.authenticators import totp


class _Mies:
    """Writes MIE rows, their transitions, secrets and journal events."""

    def __init__(self, plan: Plan, keys: crypto.InstanceKeys) -> None:
        self.plan, self.keys = plan, keys
        self.password_hash = pw.hash_password(PASSWORD)  # one argon2 hash for every synthetic account

    def create(self, person: Person, kind: str, at: dt.datetime, actor: str, *, proofing: tuple[str, dt.datetime] | None
               = None, uv: bool = True) -> dict[str, Any]:
        """Create an MIE (``password``, ``totp``, ``webauthn:platform``, ``webauthn:cross-platform``), pending."""
        plan = self.plan
        mie_type, _, attachment = kind.partition(":")
        mie_id = plan.next_id("mies")
        secret_row: list[Any] | None = None
        if mie_type == "password":
            label, amr = "Mot de passe", ["pwd"]
            plan.rows["password_credentials"].append((mie_id, self.password_hash, at))
        elif mie_type == "totp":
            label, amr = "Application d'authentification", ["otp"]
            secret = crypto.encrypt(self.keys, totp.new_seed().encode("ascii"), f"totp:{mie_id}".encode())
            secret_row = [mie_id, secret, None]
            plan.rows["totp_credentials"].append(secret_row)  # type: ignore[arg-type]
        else:
            label = plan.rnd.choice(WEBAUTHN_LABELS[attachment])
            amr = ["hwk", "mfa", "pin"] if uv else ["hwk", "user"]
            credential = hashlib.sha256(f"{mie_id}:{plan.rnd.random()}".encode()).digest()
            plan.rows["webauthn_credentials"].append((
                mie_id, _b64(credential + credential[:8]), b"\xa5\x01\x02\x03&" + credential, 0,
                plan.rnd.choice(AAGUIDS[attachment]), "none" if attachment == "platform" else "packed",
                "internal,hybrid" if attachment == "platform" else "usb,nfc", uv, attachment,
                attachment == "platform"))
        mie = {"id": mie_id, "public_id": plan.uuid(), "identity_id": person.id, "type": mie_type, "label": label,
               "status": "pending", "amr_json": json.dumps(sorted(amr)), "proofing_method": None,
               "proofing_at": None, "created_at": at, "activated_at": None, "revoked_at": None,
               "last_used_at": None, "kind": kind, "uv": uv, "person": person, "secret_row": secret_row}
        if proofing is not None:
            mie["proofing_method"], mie["proofing_at"] = proofing
        self._transition(mie, None, "pending", at, actor, "création")
        plan.event(at, f"mie:{mie_type}:created", actor, person.public_id,
                   {"mie": mie["public_id"], "type": mie_type, "label": label})
        plan.mies.append(mie)
        return mie

    def _transition(self, mie: dict[str, Any], old: str | None, new: str, at: dt.datetime, actor: str,
                    reason: str) -> None:
        self.plan.rows["mie_transitions"].append(
            (self.plan.next_id("mie_transitions"), mie["id"], old, new, at, actor[:200], reason))

    def move(self, mie: dict[str, Any], new: str, at: dt.datetime, actor: str, reason: str) -> None:
        """Change the status (pending→active, active→suspended, suspended→active, any→revoked)."""
        plan, old = self.plan, mie["status"]
        action = {("pending", "active"): "activated", ("active", "suspended"): "suspended",
                  ("suspended", "active"): "reactivated"}.get((old, new), "revoked")
        mie["status"] = new
        if new == "active" and mie["activated_at"] is None:
            mie["activated_at"] = at
        if new == "revoked":
            mie["revoked_at"] = at
            if mie["secret_row"] is not None:  # as the product does: a revoked TOTP's seed is erased
                mie["secret_row"][1] = ""
        self._transition(mie, old, new, at, actor, reason)
        person: Person = mie["person"]
        plan.event(at, f"mie:{mie['type']}:{action}", actor, person.public_id,
                   {"mie": mie["public_id"], "type": mie["type"], "from": old, "to": new, "reason": reason})
        if mie["type"] != "password":
            variant = self.variant(mie)
            day = plan.day_of(at)
            if new == "active":  # usable from the next day on (sign-ins are placed by day)
                plan.twofa_changes[day + 1].append((person.index, variant, 1))
            elif old == "active":
                plan.twofa_changes[day].append((person.index, variant, -1))

    @staticmethod
    def variant(mie: dict[str, Any]) -> str:
        proofed = "+" if mie["proofing_method"] else "-"
        if mie["type"] == "totp":
            return "totp" + proofed
        return ("webauthn_uv" if mie["uv"] else "webauthn_up") + proofed


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class _Cases:
    """Enrollment cases and their transitions."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan

    def open(self, person: Person, kind: str, at: dt.datetime, officer: Person | None) -> dict[str, Any]:
        plan = self.plan
        actor = f"officer:{officer.user_name}" if officer else JOBS_ACTOR
        case = {"id": plan.next_id("enrollment_cases"), "public_id": plan.uuid(), "identity_id": person.id,
                "kind": kind, "state": "opened", "opened_by_identity_id": officer.id if officer else None,
                "opened_by": actor, "opened_at": at, "expires_at": at + dt.timedelta(days=CASE_DAYS),
                "identity_check_method": None, "identity_checked_at": None, "identity_check_officer_id": None,
                "identity_check_place": None, "document_type": None, "document_issuing_country": None,
                "document_expiry_date": None, "document_last4": None, "replaced_mie_id": None,
                "activated_mie_id": None, "rejection_reasons_json": None, "fcplus_issuer": None, "fcplus_sub": None,
                "identity_verified_at": None, "mie_issued_at": None, "activated_at": None, "closed_at": None,
                "updated_at": at, "person": person, "actor": actor}
        self._transition(case, "open", None, "opened", at, actor)
        plan.event(at, "enrollment:case:opened", actor, person.public_id,
                   {"case": case["public_id"], "kind": kind, "state": "opened",
                    "officer": officer.id if officer else None, "expires_at": case["expires_at"].isoformat()})
        plan.cases.append(case)
        return case

    def _transition(self, case: dict[str, Any], event: str, old: str | None, new: str, at: dt.datetime,
                    actor: str) -> None:
        self.plan.rows["enrollment_transitions"].append(
            (self.plan.next_id("enrollment_transitions"), case["id"], event, old, new, at, actor[:200]))
        case["state"], case["updated_at"] = new, at

    def verify(self, case: dict[str, Any], at: dt.datetime, method: str, officer: Person | None) -> None:
        rnd, person = self.plan.rnd, case["person"]
        case["identity_check_method"], case["identity_checked_at"], case["identity_verified_at"] = method, at, at
        if method == "face_to_face":
            assert officer is not None
            case["identity_check_officer_id"] = officer.id
            case["identity_check_place"] = "Guichet d'enrôlement, hall A"
            case["document_type"] = rnd.choice(("cni", "cni", "passport", "residence_permit"))
            case["document_issuing_country"] = "FRA"
            case["document_expiry_date"] = at.date() + dt.timedelta(days=rnd.randint(200, 3000))
            case["document_last4"] = f"{rnd.randrange(10000):04d}"
            actor = f"officer:{officer.user_name}"
        else:
            case["fcplus_issuer"] = "https://fcp.integ01.dev-franceconnect.fr/api/v1"
            case["fcplus_sub"] = hashlib.sha256(person.public_id.encode()).hexdigest()
            actor = person.public_id
        self._transition(case, "verify_identity", case["state"], "identity_verified", at, actor)
        self.plan.event(at, "enrollment:identity:verified", actor, person.public_id,
                        {"case": case["public_id"], "kind": case["kind"], "state": "identity_verified",
                         "method": method})

    def issue(self, case: dict[str, Any], at: dt.datetime, actor: str) -> None:
        case["mie_issued_at"] = at
        self._transition(case, "issue_mie", case["state"], "mie_issued", at, actor)
        self.plan.event(at, "enrollment:mie:issued", actor, case["person"].public_id,
                        {"case": case["public_id"], "kind": case["kind"], "state": "mie_issued"})

    def activate(self, case: dict[str, Any], mie: dict[str, Any], at: dt.datetime) -> None:
        person = case["person"]
        case["activated_at"], case["activated_mie_id"] = at, mie["id"]
        self._transition(case, "activate", case["state"], "activated", at, person.public_id)
        self.plan.event(at, "enrollment:case:activated", person.public_id, person.public_id,
                        {"case": case["public_id"], "kind": case["kind"], "state": "activated", "mie": mie["public_id"],
                         "type": mie["type"], "proofing_method": case["identity_check_method"]})

    def close(self, case: dict[str, Any], state: str, at: dt.datetime, actor: str, **details: Any) -> None:
        event = {"expired": "expire", "cancelled": "cancel", "rejected": "reject"}[state]
        case["closed_at"] = at
        if state == "rejected":
            case["rejection_reasons_json"] = json.dumps([{"code": "document_expired",
                                                          "message": "Pièce d'identité expirée."}])
        self._transition(case, event, case["state"], state, at, actor)
        self.plan.event(at, f"enrollment:case:{state}", actor, case["person"].public_id,
                        {"case": case["public_id"], "kind": case["kind"], "state": state, **details})


def _logistic(rnd: random.Random, mid: float, scale: float) -> float:
    u = min(max(rnd.random(), 1e-9), 1 - 1e-9)
    return mid + scale * math.log(u / (1 - u))


def _adoption_day(rnd: random.Random, days: int, deadline: int | None) -> float:
    """A day drawn from the adoption curve: 60 % of the adopters rush in the weeks before the policy stops
    tolerating one factor for the compliance class (``deadline``, a day of the period, else at 10 % of it), the
    others follow a slower S-curve (midpoint at a third of the period, 10 → 90 % over 40 % of it)."""
    if rnd.random() < 0.6:
        return _logistic(rnd, deadline - 8 if deadline is not None else 0.1 * days, max(1.0, days / 60))
    return _logistic(rnd, days / 3, days / 11)


def _enroll(plan: Plan, mies: _Mies, cases: _Cases, person: Person, day: int, kind: str, case_kind: str,
            proofed: bool, *, replaced: dict[str, Any] | None = None, opened_day: int | None = None
            ) -> dict[str, Any] | None:
    """Bind a second factor to ``person`` on ``day``: through a case opened on ``opened_day`` (default: up to a
    week before) when ``proofed``, by self-service otherwise. Return the MIE, or None when ``day`` is today or
    later: the case stays open (the person is "pending")."""
    rnd, days = plan.rnd, plan.clock.days
    uv = kind != "webauthn:cross-platform" or rnd.random() < 0.85
    if not proofed:  # self-service without an identity check: an MIE, not a compliant one
        activation = plan.work_time(day)
        mie = mies.create(person, kind, activation - dt.timedelta(minutes=2), person.public_id, uv=uv)
        mies.move(mie, "active", activation, person.public_id, "activation en libre-service")
        return mie
    officer = rnd.choice(plan.officers)
    method = "face_to_face" if rnd.random() < 0.7 else "fcplus"
    if opened_day is None:
        back = person.next_active(max(person.intervals[0][0], day - rnd.randint(0, 7)))
        opened_day = min(back if back is not None else day, day)
    activation = plan.work_time(day) if day < days else None
    if activation is not None and opened_day == day:
        opened = activation - dt.timedelta(minutes=40)
    else:
        opened = plan.work_time(opened_day)
    case = cases.open(person, case_kind, opened, officer if method == "face_to_face" or replaced else None)
    if replaced is not None:
        case["replaced_mie_id"] = replaced["id"]
        mies.move(replaced, "revoked", opened, case["actor"], "perte ou vol déclaré")
        plan.event(opened, "enrollment:lost_mie:revoked", case["actor"], person.public_id,
                   {"case": case["public_id"], "kind": case_kind, "state": "opened", "mie": replaced["public_id"],
                    "type": replaced["type"]})
    if activation is None:
        return None
    checked = opened + dt.timedelta(minutes=10)
    cases.verify(case, checked, method, officer if method == "face_to_face" else None)
    issuer = case["actor"] if method == "face_to_face" else person.public_id
    cases.issue(case, checked + dt.timedelta(minutes=5), issuer)
    mie = mies.create(person, kind, activation - dt.timedelta(minutes=2), person.public_id,
                      proofing=(method, checked), uv=uv)
    mies.move(mie, "active", activation, person.public_id, "enrôlement")
    cases.activate(case, mie, activation)
    return mie


def _mie_kind(rnd: random.Random) -> str:
    roll = rnd.random()
    return "totp" if roll < 0.55 else ("webauthn:platform" if roll < 0.71 else "webauthn:cross-platform")


def add_mies_and_cases(plan: Plan, keys: crypto.InstanceKeys) -> None:
    rnd, clock, days = plan.rnd, plan.clock, plan.clock.days
    mies, cases = _Mies(plan, keys), _Cases(plan)
    deadline = plan.deadline()
    for person in plan.people:
        if not person.intervals:
            continue  # arrives after today: nothing yet
        start = person.intervals[0][0]
        # The password: migrated from the former directory on day 0, set at arrival for newcomers.
        at = clock.at(start, 2 * 3600 + 60 + person.index * 0.01) if start == 0 else plan.work_time(start)
        actor = HR_ACTOR if start == 0 else person.public_id
        password = mies.create(person, "password", at, actor)
        mies.move(password, "active", at + dt.timedelta(seconds=1), actor,
                  "reprise de l'annuaire" if start == 0 else "première connexion")
        # A second factor?
        adopt = person.officer or rnd.random() < ADOPTION[person.contract]
        if not adopt:
            _no_second_factor(plan, mies, cases, person)
            continue
        if person.officer:
            day = rnd.uniform(0, min(10, days - 1))
        elif start == 0:
            day = _adoption_day(rnd, days, deadline)
            if day < 0:
                day = rnd.uniform(0, min(15, days - 1))  # the pilot's first weeks
        else:
            day = start + rnd.expovariate(1 / 12)
        first_day = person.next_active(int(day))
        if first_day is None or first_day >= days:
            _no_second_factor(plan, mies, cases, person)
            continue
        kind = _mie_kind(rnd)
        proofed = person.officer or rnd.random() < 0.92
        mie = _enroll(plan, mies, cases, person, first_day, kind, "first_mie", proofed)
        if mie is None:
            continue
        last = first_day
        if rnd.random() < 0.10:  # a second MIE of another type
            extra_day = person.next_active(last + rnd.randint(10, 120))
            if extra_day is not None and extra_day < days:
                other = "totp" if kind != "totp" else rnd.choice(("webauthn:platform", "webauthn:cross-platform"))
                _enroll(plan, mies, cases, person, extra_day, other, "additional_mie", True)
                last = extra_day
        if rnd.random() < 0.03:  # lost or stolen, then replaced
            lost_day = person.next_active(last + rnd.randint(10, 200))
            if lost_day is not None and lost_day < days and mie["status"] == "active":
                _enroll(plan, mies, cases, person, lost_day + rnd.randint(0, 6), _mie_kind(rnd), "replacement",
                        True, replaced=mie, opened_day=lost_day)
        elif mie["type"] == "totp" and rnd.random() < 0.005:  # suspended a while (phone under repair)
            off = person.next_active(last + rnd.randint(5, 60))
            if off is not None and off < days - 1:
                mies.move(mie, "suspended", plan.work_time(off), "cli", "téléphone en réparation")
                back = off + rnd.randint(3, 20)
                if back < days:
                    mies.move(mie, "active", plan.work_time(back), "cli", "téléphone rendu")


def _no_second_factor(plan: Plan, mies: _Mies, cases: _Cases, person: Person) -> None:
    """People without a second factor: some abandoned a TOTP binding; some had a case opened on a day of the period
    — still under way today when opened in the last month, else expired, cancelled or rejected."""
    rnd, days = plan.rnd, plan.clock.days
    roll = rnd.random()
    start = person.intervals[0][0]
    if roll < 0.02:  # began binding an authenticator application, never confirmed it
        day = person.next_active(rnd.randrange(start, days))
        if day is not None and day < days:
            mies.create(person, "totp", plan.work_time(day), person.public_id)
        return
    if roll >= 0.16:
        return
    day = person.next_active(rnd.randrange(start, days))
    if day is None or day >= days:
        return
    officer = rnd.choice(plan.officers)
    case = cases.open(person, "first_mie", plan.work_time(day), officer)
    if day > days - CASE_DAYS:  # under way today (not expired yet): opened, identity checked, or code handed out
        step = rnd.random()
        if step < 0.4:
            checked = case["opened_at"] + dt.timedelta(minutes=10)
            cases.verify(case, checked, "face_to_face", officer)
            if step < 0.3:
                cases.issue(case, checked + dt.timedelta(minutes=5), case["actor"])
        return
    outcome = rnd.random()
    if outcome < 0.7 and day + CASE_DAYS + 1 < days:  # the daily job closes it the night after its expiry
        cases.close(case, "expired", plan.clock.at(day + CASE_DAYS + 1, 3 * 3600), JOBS_ACTOR)
    elif outcome < 0.9:
        cases.close(case, "cancelled", case["opened_at"] + dt.timedelta(days=rnd.randint(1, min(20, days - 1 - day))),
                    case["actor"], reason="rendez-vous non honoré")
    else:
        cases.close(case, "rejected", case["opened_at"] + dt.timedelta(minutes=15), case["actor"])
