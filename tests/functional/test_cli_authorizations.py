"""``hospiconnect exception …`` and ``hospiconnect emergency …``: human and --json output, French errors on
stderr with nothing changed, the code printed once."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from zoneinfo import ZoneInfo

from click.testing import CliRunner
from sqlalchemy import func, select

from hospiconnect.audit import tags
from hospiconnect.audit.models import AuditEvent
from hospiconnect.authenticators.models import EmergencyCredential
from hospiconnect.authorizations.models import PolicyException
from hospiconnect.cli import main
from hospiconnect.runtime import Runtime
from tests.factories import create_identity

JUSTIFICATION = "Intérimaires de cardiologie sans téléphone professionnel"


def run(rt, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, list(args), obj=rt)


def until(days: int = 30) -> str:
    return (dt.date.today() + dt.timedelta(days=days)).isoformat()


def rows(session, model) -> int:  # type: ignore[no-untyped-def]
    return session.scalar(select(func.count()).select_from(model))


def test_exception_grant_list_revoke(rt, session) -> None:  # type: ignore[no-untyped-def]
    person = create_identity(session, contract_type="interim")
    result = run(rt, "exception", "grant", "--identity", person.user_name, "--class", "standard",
                 "--allow", "single-factor", "--allow", "network:192.0.2.0/24", "--allow", "max-auth-age:16h",
                 "--until", until(), "--justification", JUSTIFICATION, "--json")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    data = json.loads(result.stdout)
    assert (data["user_name"], data["class"], data["state"], data["granted_by"]) == (
        person.user_name, "standard", "active", "cli")
    assert data["relaxation"] == {"allow_single_factor": True, "networks": ["192.0.2.0/24"], "max_auth_age": 57600}
    # --until is excluded, like "until" in the policy file: the day at 00:00 in the policy's time zone.
    ends = dt.datetime.fromisoformat(data["ends_at"]).astimezone(ZoneInfo("Europe/Paris"))
    assert (ends.date().isoformat(), ends.hour, ends.minute) == (until(), 0, 0)
    population = run(rt, "exception", "grant", "--population", "interim", "--unit", "CARDIO", "--class", "standard",
                     "--allow", "max-auth-age:1d", "--until", until(10), "--justification", JUSTIFICATION)
    assert population.exit_code == 0, population.stderr
    assert "Dérogation accordée" in population.stdout and "population interim (CARDIO)" in population.stdout

    listed = json.loads(run(rt, "exception", "list", "--json").stdout)
    assert [d["id"] for d in listed][1] == data["id"] and len(listed) == 2
    assert data["id"] in run(rt, "exception", "list").stdout

    missing_reason = run(rt, "exception", "revoke", data["id"])
    assert missing_reason.exit_code == 1 and "motif" in missing_reason.stderr
    revoked = run(rt, "exception", "revoke", data["id"], "--reason", "fin de mission", "--json")
    assert revoked.exit_code == 0 and json.loads(revoked.stdout)["state"] == "revoked"
    assert len(json.loads(run(rt, "exception", "list", "--json").stdout)) == 1
    assert len(json.loads(run(rt, "exception", "list", "--all", "--json").stdout)) == 2
    again = run(rt, "exception", "revoke", data["id"], "--reason", "encore")
    assert again.exit_code == 1 and "déjà révoquée" in again.stderr


def test_exception_bad_input_is_a_french_error_and_changes_nothing(rt, session) -> None:  # type: ignore[no-untyped-def]
    person = create_identity(session)
    base = ("exception", "grant", "--identity", person.user_name, "--class", "standard", "--allow", "single-factor")
    cases = [
        (base + ("--until", until()), "justification est obligatoire"),
        (base + ("--justification", JUSTIFICATION), "date de fin est obligatoire"),
        (base + ("--until", until(400), "--justification", JUSTIFICATION), "au plus 180 jours"),
        (base + ("--until", "2020-01-01", "--justification", JUSTIFICATION), "dans le futur"),
        (base + ("--until", "demain", "--justification", JUSTIFICATION), "date invalide"),
        (("exception", "grant", "--identity", person.user_name, "--class", "health-data", "--allow", "single-factor",
          "--until", until(), "--justification", JUSTIFICATION), "exige deux facteurs"),
        (("exception", "grant", "--class", "standard", "--allow", "single-factor", "--until", until(),
          "--justification", JUSTIFICATION), "une cible et une seule"),
        (("exception", "grant", "--identity", person.user_name, "--class", "standard", "--allow", "everything",
          "--until", until(), "--justification", JUSTIFICATION), "valeur inconnue"),
        (("exception", "grant", "--identity", person.user_name, "--class", "standard", "--allow", "mie-type:carte",
          "--until", until(), "--justification", JUSTIFICATION), "Type de MIE inconnu"),
    ]
    for args, message in cases:
        result = run(rt, *args)
        assert result.exit_code == 1, args
        assert result.stderr.startswith("Erreur : ") and message in result.stderr, (args, result.stderr)
        assert result.stdout == ""
    assert rows(session, PolicyException) == 0


def test_the_cap_follows_the_setting(rt, session) -> None:  # type: ignore[no-untyped-def]
    person = create_identity(session)
    short = Runtime(dataclasses.replace(rt.settings, exception_max_days=7))
    try:
        result = run(short, "exception", "grant", "--identity", person.user_name, "--class", "standard",
                     "--allow", "single-factor", "--until", until(10), "--justification", JUSTIFICATION)
        assert result.exit_code == 1 and "au plus 7 jours" in result.stderr
    finally:
        short.db.dispose()


def test_emergency_issue_list_review(rt, session) -> None:  # type: ignore[no-untyped-def]
    nurse = create_identity(session)
    officer = create_identity(session, roles="emergency_officer")
    rssi = create_identity(session, roles="rssi")
    issued = run(rt, "emergency", "issue", "--identity", nurse.user_name, "--officer", officer.user_name,
                 "--reason", "Téléphone perdu en garde de nuit", "--hours", "4")
    assert issued.exit_code == 0, issued.stderr
    code = issued.stdout.splitlines()[0]
    assert len(code) == 24 and code.count("-") == 4 and "ne sera plus affiché" in issued.stdout
    assert code not in run(rt, "emergency", "list").stdout

    listed = json.loads(run(rt, "emergency", "list", "--to-review", "--json").stdout)
    [entry] = listed
    assert (entry["person"]["user_name"], entry["officer"]["user_name"], entry["state"]) == (
        nurse.user_name, officer.user_name, "live")
    assert entry["networks"] == ["internal"] and "code" not in entry
    events = session.scalars(select(AuditEvent).where(AuditEvent.tag == tags.EMERGENCY_ISSUED)).all()
    assert len(events) == 1 and events[0].actor == "cli" and code not in events[0].details

    no_comment = run(rt, "emergency", "review", entry["id"], "--reviewer", rssi.user_name)
    assert no_comment.exit_code == 1 and "commentaire est obligatoire" in no_comment.stderr
    live = run(rt, "emergency", "review", entry["id"], "--reviewer", rssi.user_name, "--comment", "vu, ok")
    assert live.exit_code == 1 and "encore utilisable" in live.stderr
    assert run(rt, "emergency", "revoke", entry["id"], "--reason", "MIE retrouvé").exit_code == 0
    reviewed = run(rt, "emergency", "review", entry["id"], "--reviewer", rssi.user_name, "--comment",
                   "Appel du cadre de nuit confirmé", "--json")
    assert reviewed.exit_code == 0, reviewed.stderr
    assert json.loads(reviewed.stdout)["review_comment"] == "Appel du cadre de nuit confirmé"
    assert json.loads(run(rt, "emergency", "list", "--to-review", "--json").stdout) == []
    assert len(json.loads(run(rt, "emergency", "list", "--json").stdout)) == 1


def test_emergency_refusals(rt, session) -> None:  # type: ignore[no-untyped-def]
    nurse = create_identity(session)
    officer = create_identity(session, roles="emergency_officer")
    self_issue = run(rt, "emergency", "issue", "--identity", officer.user_name, "--officer", officer.user_name,
                     "--reason", "Téléphone perdu en garde de nuit")
    assert self_issue.exit_code == 1 and "lui-même" in self_issue.stderr and self_issue.stdout == ""
    no_role = run(rt, "emergency", "issue", "--identity", officer.user_name, "--officer", nurse.user_name,
                  "--reason", "Téléphone perdu en garde de nuit")
    assert no_role.exit_code == 1 and "emergency_officer" in no_role.stderr
    no_reason = run(rt, "emergency", "issue", "--identity", nurse.user_name, "--officer", officer.user_name)
    assert no_reason.exit_code == 1 and "motif est obligatoire" in no_reason.stderr
    bad_network = run(rt, "emergency", "issue", "--identity", nurse.user_name, "--officer", officer.user_name,
                      "--reason", "Téléphone perdu en garde de nuit", "--network", "pharmacie")
    assert bad_network.exit_code == 1 and "Réseau inconnu" in bad_network.stderr
    too_long = run(rt, "emergency", "issue", "--identity", nurse.user_name, "--officer", officer.user_name,
                   "--reason", "Téléphone perdu en garde de nuit", "--hours", "9")
    assert too_long.exit_code == 1 and "de 1 à 8 heures" in too_long.stderr
    assert rows(session, EmergencyCredential) == 0
    refused = session.scalars(select(AuditEvent).where(AuditEvent.tag == tags.EMERGENCY_REFUSED)
                             .order_by(AuditEvent.seq)).all()
    assert [json.loads(e.details)["reason"] for e in refused] == ["self_issue", "not_officer"]
