"""Consistency checks of a generated establishment (the tests and ``--check`` run them)."""

from __future__ import annotations

import json

from sqlalchemy import text

from benchmarks.synthetic import Report
from benchmarks.synthetic.reference import POLES
from hospiconnect.audit import service as audit
from hospiconnect.policies.loader import load_policy
from hospiconnect.runtime import Runtime


def check(rt: Runtime, report: Report, *, verify_chain: bool | None = None) -> list[str]:
    """Return what is inconsistent in the generated data (empty when all is well).

    Counts against the plan; every MIE has its transitions and its status is the last one's; every case's state
    is its last transition's; every identity's status is the one its journal events lead to; sign-in events
    parse and name a declared class; the journal's chain verifies (by default only up to a million events:
    the full chain of the benchmark takes minutes to walk)."""
    problems: list[str] = []
    policy = load_policy(rt.settings.policy_file)

    def expect(label: str, got: object, wanted: object) -> None:
        if got != wanted:
            problems.append(f"{label}: {got} instead of {wanted}")

    with rt.db.engine.connect() as conn:
        count = lambda sql: int(conn.scalar(text(sql)) or 0)  # noqa: E731
        expect("identities", count("SELECT count(*) FROM identities"), report.expected["identities"])
        expect("active identities today", count("SELECT count(*) FROM identities WHERE status = 'active'"),
               report.expected["active_today"])
        expect("MIE", count("SELECT count(*) FROM mies"), report.expected["mies"])
        expect("enrollment cases", count("SELECT count(*) FROM enrollment_cases"), report.expected["cases"])
        expect("exceptions", count("SELECT count(*) FROM policy_exceptions"), report.expected["exceptions"])
        expect("emergency credentials", count("SELECT count(*) FROM emergency_credentials"),
               report.expected["emergency"])
        expect("pôles", count("SELECT count(*) FROM org_units WHERE kind = 'pole'"), len(POLES))
        expect("services without their pôle", count(
            "SELECT count(*) FROM org_units u LEFT JOIN org_units p ON p.id = u.parent_id "
            "WHERE u.kind = 'service' AND (p.id IS NULL OR p.kind <> 'pole')"), 0)
        expect("MIE without transitions", count(
            "SELECT count(*) FROM mies m WHERE NOT EXISTS (SELECT 1 FROM mie_transitions t WHERE t.mie_id = m.id)"), 0)
        expect("MIE whose status is not their last transition's", count(
            "SELECT count(*) FROM mies m WHERE m.status <> (SELECT t.to_status FROM mie_transitions t "
            "WHERE t.mie_id = m.id ORDER BY t.at DESC, t.id DESC LIMIT 1)"), 0)
        expect("MIE activated without an activation date", count(
            "SELECT count(*) FROM mies WHERE status IN ('active', 'suspended') AND activated_at IS NULL"), 0)
        expect("second-factor MIE without their secret", count(
            "SELECT count(*) FROM mies m WHERE (m.type = 'totp' AND NOT EXISTS (SELECT 1 FROM totp_credentials c "
            "WHERE c.mie_id = m.id)) OR (m.type = 'webauthn' AND NOT EXISTS (SELECT 1 FROM webauthn_credentials c "
            "WHERE c.mie_id = m.id))"), 0)
        expect("cases whose state is not their last transition's", count(
            "SELECT count(*) FROM enrollment_cases c WHERE c.state <> (SELECT t.to_state FROM enrollment_transitions t "
            "WHERE t.case_id = c.id ORDER BY t.at DESC, t.id DESC LIMIT 1)"), 0)
        expect("activated cases without their MIE", count(
            "SELECT count(*) FROM enrollment_cases c LEFT JOIN mies m ON m.id = c.activated_mie_id "
            "WHERE c.state = 'activated' AND (m.id IS NULL OR m.proofing_method IS NULL)"), 0)
        expect("webauthn attachments", {r[0] for r in conn.execute(text(
            "SELECT DISTINCT attachment FROM webauthn_credentials"))} <= {"platform", "cross-platform"}, True)
        # Each identity's status, replayed from its journal events.
        status = {r[0]: r[1] for r in conn.execute(text("SELECT public_id, status FROM identities"))}
        replayed: dict[str, str] = {}
        for subject, tag, details in conn.execute(text(
                "SELECT subject, tag, details FROM audit_events WHERE tag LIKE 'directory:identity:%' ORDER BY seq")):
            data = json.loads(details)
            replayed[subject] = data["status"] if tag == "directory:identity:created" else data["to"]
        expect("identities whose status differs from their journal", sum(
            1 for public_id, value in status.items() if replayed.get(public_id) != value), 0)
        # Sign-ins: all of them in a smoke run, a sample of 200,000 otherwise.
        signins = count("SELECT count(*) FROM audit_events WHERE tag = 'oidc:code:issued'")
        expect("sign-in events", signins, report.signin_events)
        bad = 0
        for (details,) in conn.execute(text(
                "SELECT details FROM audit_events WHERE tag = 'oidc:code:issued' ORDER BY seq LIMIT 200000")):
            data = json.loads(details)
            if set(data) != {"client_id", "class", "acr", "amr", "sid", "scope"} or data["class"] not in \
                    policy.classes or not isinstance(data["amr"], list) or \
                    data["acr"] not in ("eidas1", "eidas2", "eidas3"):
                bad += 1
        expect("malformed sign-in events", bad, 0)
        day_of = "CAST(occurred_at AS DATE)" if conn.dialect.name == "postgresql" else "date(occurred_at)"
        days = count(f"SELECT count(DISTINCT {day_of}) FROM audit_events WHERE tag = 'oidc:code:issued'")
        if days < report.sizes.days - 1:
            problems.append(f"sign-ins on {days} days only (period of {report.sizes.days} days)")
    with rt.db.session() as session:
        head = session.execute(text("SELECT seq FROM audit_head WHERE id = 1")).scalar() or 0
        events = session.execute(text("SELECT count(*) FROM audit_events")).scalar() or 0
        expect("journal head", head, events)
        if verify_chain if verify_chain is not None else events <= 1_000_000:
            chain = audit.verify(session)
            if not chain.ok:
                problems.append(f"journal chain broken at {chain.broken_at_seq}: {chain.reason}")
    return problems
