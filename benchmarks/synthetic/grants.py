"""Exceptions (dérogations) to people and populations, and emergency credentials (bris de glace) with their use
and review, as the product's services record them."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

from benchmarks.synthetic.plan import Person, Plan
from benchmarks.synthetic.reference import CLIENTS, JOBS_ACTOR
from hospiconnect.policies.relaxations import Relaxation


def add_exceptions(plan: Plan) -> None:
    rnd, clock, days, policy = plan.rnd, plan.clock, plan.clock.days, plan.policy
    rssi = plan.rssi[0]
    actor = f"officer:{rssi.user_name}"
    grants: list[tuple[Person | None, str | None, list[str], str, Relaxation, str]] = []
    # Exceptions to the compliance class go mostly to people who hold no compliant MIE yet (the RSSI's reason to
    # grant them); the others to IT staff on call.
    covered = {m["identity_id"] for m in plan.mies if m["proofing_method"]}
    waiting = [p for p in plan.people if p.intervals and p.id not in covered]
    count = max(3, len(plan.people) // 2000)
    for person in rnd.sample(waiting, min(len(waiting), count * 7 // 10)):
        grants.append((person, None, [], "health-data", Relaxation(max_auth_age=dt.timedelta(hours=14)),
                       "Gardes de 14 heures en attendant le rendez-vous d'enrôlement"))
    for person in rnd.sample([p for p in plan.people if p.intervals], count - count * 7 // 10):
        grants.append((person, None, [], "administration", Relaxation(networks=("192.0.2.0/24",)),
                       "Astreinte informatique depuis le domicile"))
    grants.append((None, "interim", ["URG-AD", "URG-PED", "SAMU"], "health-data",
                   Relaxation(max_auth_age=dt.timedelta(hours=14)), "Intérimaires des urgences : gardes de 14 heures"))
    grants.append((None, "contractor", [], "administration", Relaxation(networks=("198.51.100.0/24",)),
                   "Prestataire de tierce maintenance applicative, réseau du prestataire"))
    grants.append((None, "trainee", ["MATER", "SALLE-NAI"], "health-data",
                   Relaxation(max_auth_age=dt.timedelta(hours=13)), "Étudiants sages-femmes : gardes de 13 heures"))
    for person, population, units, app_class, relaxation, justification in grants:
        # Half of them granted in the last three months: some are in force today.
        start_day = rnd.randrange(0, days) if rnd.random() < 0.5 else rnd.randrange(max(0, days - 90), days)
        if person is not None:
            active_day = person.next_active(start_day)
            if active_day is None or active_day >= days:
                continue
            start_day = active_day
        granted = plan.work_time(start_day)
        ends = granted + dt.timedelta(days=rnd.randint(14, 180))
        revoked = granted + dt.timedelta(days=rnd.randint(2, 13)) if rnd.random() < 0.1 else None
        if revoked is not None and plan.day_of(revoked) >= days:
            revoked = None
        row = {"id": plan.next_id("policy_exceptions"), "public_id": plan.uuid(),
               "identity_id": person.id if person else None, "population": population,
               "units_json": json.dumps(units), "app_class": app_class,
               "relaxation_json": json.dumps(relaxation.as_json()), "justification": justification,
               "starts_at": granted, "ends_at": ends, "granted_by": actor, "granted_at": granted,
               "policy_digest": policy.digest, "revoked_at": revoked, "revoked_by": actor if revoked else None,
               "revoke_reason": "fin anticipée" if revoked else None, "last_used_at": None, "use_count": 0,
               "expiry_reported_at": None}
        subject = person.public_id if person else f"population:{population}"
        details = {"exception": row["public_id"], "class": app_class,
                   "target": "identity" if person else "population", "identity": person.public_id if person else None,
                   "population": population, "units": units, "relaxation": relaxation.as_json(),
                   "starts_at": granted.isoformat(), "ends_at": ends.isoformat()}
        plan.event(granted, "admin:policy_exception:granted", actor, subject,
                   {**details, "justification": justification, "policy": policy.digest})
        if revoked is not None:
            plan.event(revoked, "admin:policy_exception:revoked", actor, subject,
                       {**details, "reason": "fin anticipée", "use_count": 0})
        elif plan.day_of(ends) + 1 < days:
            reported = clock.at(plan.day_of(ends) + 1, 3 * 3600)
            row["expiry_reported_at"] = reported
            plan.event(reported, "system:policy_exception:expired", JOBS_ACTOR, subject,
                       {"exception": row["public_id"], "class": app_class, "ends_at": ends.isoformat(),
                        "use_count": 0}, outcome="info")
        plan.exceptions.append(row)


def add_emergency(plan: Plan) -> None:
    rnd, days = plan.rnd, plan.clock.days
    reviewer = plan.rssi[0]
    internal = [str(n) for n in plan.policy.network_sets.get("internal", ())]
    health = [i for i, c in enumerate(CLIENTS) if c[2] == "health-data"]
    for _ in range(max(3, len(plan.people) // 1500)):
        person = rnd.choice(plan.people)
        day = rnd.randrange(0, days)
        if person.officer or not person.active_on(day):
            continue
        officer = rnd.choice(plan.emergency_officers)
        issued = plan.clock.at(day, rnd.uniform(0, 86000))
        expires = issued + dt.timedelta(hours=8)
        actor = f"officer:{officer.user_name}"
        row = {"id": plan.next_id("emergency_credentials"), "public_id": plan.uuid(), "identity_id": person.id,
               "issued_by_identity_id": officer.id, "issued_by": actor, "issued_at": issued, "expires_at": expires,
               "selector": "".join(rnd.choice("0123456789ABCDEFGHJKMNPQRSTVWXYZ") for _ in range(4)),
               "code_hash": hashlib.sha256(f"{person.public_id}:{rnd.random()}".encode()).hexdigest(),
               "failed_attempts": 0, "networks_json": json.dumps(["internal"]),
               "cidrs_json": json.dumps(sorted(internal)),
               "reason": "Téléphone oublié pendant la garde de nuit, identité vérifiée par rappel du poste",
               "used_at": None, "used_from_ip": None, "revoked_at": None, "revoked_by": None, "revoke_reason": None,
               "reviewed_at": None, "reviewed_by_identity_id": None, "review_comment": None}
        plan.event(issued, "admin:emergency:issued", actor, person.public_id,
                   {"credential": row["public_id"], "selector": row["selector"], "officer": officer.public_id,
                    "expires_at": expires.isoformat(), "hours": 8, "networks": ["internal"],
                    "classes": ["health-data"], "reason": row["reason"], "replaced": []})
        roll = rnd.random()
        last = issued
        if roll < 0.85 and plan.day_of(issued + dt.timedelta(minutes=30)) < days:
            used = issued + dt.timedelta(minutes=rnd.randint(2, 30))
            ip = f"10.{rnd.randint(1, 3)}.{rnd.randint(0, 255)}.{rnd.randint(1, 254)}"
            row["used_at"], row["used_from_ip"], last = used, ip, used
            plan.event(used, "authn:emergency:used", person.user_name, person.public_id,
                       {"credential": row["public_id"], "officer": officer.public_id, "factor": "emergency",
                        "amr": ["emergency", "pwd"], "acr": "eidas1", "classes": ["health-data"],
                        "expires_at": expires.isoformat()}, ip=ip)
            for k in range(rnd.randint(1, 3)):
                at = used + dt.timedelta(minutes=1 + 20 * k)
                if plan.day_of(at) < days:
                    client = CLIENTS[rnd.choice(health)]
                    plan.event(at, "oidc:code:issued", person.public_id, person.public_id,
                               {"client_id": client[0], "class": client[2], "scope": client[4], "acr": "eidas1",
                                "amr": ["emergency", "pwd"], "sid": f"{rnd.getrandbits(128):032x}"}, ip=ip)
        elif roll < 0.90 and plan.day_of(issued + dt.timedelta(minutes=30)) < days:
            revoked = issued + dt.timedelta(minutes=20)
            row["revoked_at"], row["revoked_by"], row["revoke_reason"] = revoked, actor, "téléphone retrouvé"
            last = revoked
            plan.event(revoked, "admin:emergency:revoked", actor, person.public_id,
                       {"credential": row["public_id"], "reason": "téléphone retrouvé"})
        reviewed = last + dt.timedelta(days=rnd.randint(1, 6), hours=rnd.randint(1, 8))
        if plan.day_of(reviewed) < days and rnd.random() < (0.85 if days - day > 7 else 0.3):
            comment = "Vérifié avec le cadre de santé : usage conforme."
            row["reviewed_at"], row["reviewed_by_identity_id"], row["review_comment"] = reviewed, reviewer.id, comment
            state = "used" if row["used_at"] else ("revoked" if row["revoked_at"] else "expired")
            plan.event(reviewed, "admin:emergency:reviewed", f"officer:{reviewer.user_name}", person.public_id,
                       {"credential": row["public_id"], "reviewer": reviewer.public_id, "state": state,
                        "comment": comment})
        plan.emergency.append(row)

