"""The trajectory benchmark's generator (``benchmarks/synthetic``) in smoke mode against the test database: what it
writes is consistent — counts, every MIE with its transitions, cases and identity statuses that follow their
histories, sign-in events that parse, an intact journal chain — and has the variety the indicators need."""

from __future__ import annotations

import json

from sqlalchemy import text

from benchmarks.synthetic import SMOKE, generate
from benchmarks.synthetic.check import check
from hospiconnect.directory.validation import CONTRACT_TYPES


def test_smoke_establishment_is_consistent(rt, today):  # type: ignore[no-untyped-def]
    report = generate(rt, SMOKE, today=today, seed=3)

    assert check(rt, report, verify_chain=True) == []
    assert report.rows["identities"] == SMOKE.identities
    assert report.signin_events == SMOKE.events
    with rt.db.engine.connect() as conn:
        rows = lambda sql: conn.execute(text(sql)).all()  # noqa: E731
        assert {r[0] for r in rows("SELECT DISTINCT contract_type FROM identities")} == set(CONTRACT_TYPES)
        with_rpps, total = rows("SELECT count(rpps), count(*) FROM identities")[0]
        assert 0.30 < with_rpps / total < 0.40
        assert {r[0] for r in rows("SELECT DISTINCT status FROM identities")} >= {"active", "suspended", "pending"}
        assert rows("SELECT count(*) FROM org_units WHERE kind = 'service'")[0][0] == 120
        assert {r[0] for r in rows("SELECT DISTINCT finess FROM identity_establishments")} == {
            r[0] for r in rows("SELECT finess FROM establishments")}
        assert {r[0] for r in rows("SELECT DISTINCT attachment FROM webauthn_credentials")} == {
            "platform", "cross-platform"}
        assert {r[0] for r in rows("SELECT DISTINCT proofing_method FROM mies")} == {None, "face_to_face", "fcplus"}
        assert {r[0] for r in rows("SELECT DISTINCT state FROM enrollment_cases")} >= {
            "activated", "opened", "identity_verified", "mie_issued"}
        assert {r[0] for r in rows("SELECT DISTINCT role FROM identity_roles")} >= {
            "rssi", "enrollment_officer", "emergency_officer"}
        assert rows("SELECT count(*) FROM policy_exceptions")[0][0] > 0
        assert rows("SELECT count(*) FROM emergency_credentials")[0][0] > 0
        # Activations spread over the period, not bunched on one day.
        days = {r[0][:10] for r in rows("SELECT CAST(activated_at AS VARCHAR(40)) FROM mies "
                                        "WHERE type <> 'password' AND activated_at IS NOT NULL")}
        assert len(days) > SMOKE.days // 2
        signins = [json.loads(r[0]) for r in rows(
            "SELECT details FROM audit_events WHERE tag = 'oidc:code:issued' ORDER BY seq LIMIT 5000")]
    assert {s["class"] for s in signins} == {"health-data", "standard", "administration"}
    assert any(s["amr"] == ["pwd"] for s in signins)
    assert any("mfa" in s["amr"] for s in signins)
