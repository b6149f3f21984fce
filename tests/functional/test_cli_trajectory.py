"""``hospiconnect trajectory …``: snapshots (idempotent), backfill with progress on stderr, the report in JSON,
CSV and printable HTML, the RSSI's targets; French errors on stderr with nothing written."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from html import unescape
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import func, select

from hospiconnect.audit.models import AuditEvent
from hospiconnect.authenticators.models import Mie
from hospiconnect.cli import main
from hospiconnect.db import utcnow
from hospiconnect.enrollment.models import NationalLink
from hospiconnect.policies import DEFAULT_POLICY_PATH, load_policy
from hospiconnect.trajectory.models import TrajectoryPersonStatus, TrajectorySnapshot, TrajectoryTarget
from tests.factories import create_identity

ACTIVATED = dt.datetime(2025, 9, 1, 9, tzinfo=dt.timezone.utc)


def run(rt, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, list(args), obj=rt)


def today() -> dt.date:
    return load_policy(DEFAULT_POLICY_PATH).local_day(utcnow())


def give(session, identity, *types: str, proofed: bool = True) -> None:  # type: ignore[no-untyped-def]
    for mie_type in types:
        session.add(Mie(identity_id=identity.id, type=mie_type, status="active", label=mie_type,
                        activated_at=ACTIVATED, proofing_method="face_to_face" if proofed else None,
                        proofing_at=ACTIVATED if proofed else None))
    session.commit()


def establishment(session) -> dict:  # type: ignore[no-untyped-def,type-arg]
    """Four active people: two compliant (TOTP; security key with RPPS), one with a password only (interim, in
    CARDIO and URG), one without any MIE (URG)."""
    people = {
        "totp": create_identity(session, units="POLE-MED|CARDIO"),
        "doctor": create_identity(session, with_rpps=True, units="POLE-MED|CARDIO"),
        "password": create_identity(session, contract_type="interim", units="CARDIO|URG"),
        "nothing": create_identity(session, units="URG"),
    }
    give(session, people["totp"], "password", "totp")
    give(session, people["doctor"], "webauthn")
    give(session, people["password"], "password")
    return people


def stored(session) -> set[tuple[str, str, str, int]]:  # type: ignore[no-untyped-def]
    session.expire_all()
    return {(r.indicator, r.dimension, r.value, r.count) for r in session.scalars(select(TrajectorySnapshot))}


def count(session, model) -> int:  # type: ignore[no-untyped-def]
    return session.scalar(select(func.count()).select_from(model))


def test_snapshot_twice_gives_the_same_rows(rt, session) -> None:  # type: ignore[no-untyped-def]
    establishment(session)
    first = run(rt, "trajectory", "snapshot", "--json")
    assert first.exit_code == 0, (first.stdout, first.stderr)
    data = json.loads(first.stdout)
    assert (data["day"], data["active"], data["compliant"], data["non_compliant"]) == (today().isoformat(), 4, 2, 2)
    rows = stored(session)
    assert ("compliant", "unit", "CARDIO", 2) in rows and ("non_compliant", "unit", "URG", 2) in rows
    statuses = {(r.identity_id, r.status, r.reason) for r in session.scalars(select(TrajectoryPersonStatus))}
    assert len(statuses) == 4

    again = run(rt, "trajectory", "snapshot")
    assert again.exit_code == 0, again.stderr
    assert again.stdout.startswith(f"Relevé du {today():%d/%m/%Y} enregistré (")
    assert "4 identité(s) active(s), 2 conforme(s) (50,0 %)" in again.stdout
    assert stored(session) == rows
    assert count(session, TrajectorySnapshot) == len(rows)
    assert {(r.identity_id, r.status, r.reason) for r in session.scalars(select(TrajectoryPersonStatus))} == statuses


def test_snapshot_of_a_given_day_and_a_bad_day(rt, session) -> None:  # type: ignore[no-untyped-def]
    establishment(session)
    past = today() - dt.timedelta(days=2)
    result = run(rt, "trajectory", "snapshot", "--day", past.isoformat(), "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["day"] == past.isoformat()
    assert session.scalar(select(func.max(TrajectorySnapshot.day))) == past
    rows = stored(session)
    bad = run(rt, "trajectory", "snapshot", "--day", "hier")
    assert bad.exit_code == 1 and bad.stdout == ""
    assert bad.stderr == "Erreur : day : date invalide « hier » (attendu AAAA-MM-JJ).\n"
    tomorrow = today() + dt.timedelta(days=1)
    future = run(rt, "trajectory", "snapshot", "--day", tomorrow.isoformat())
    assert future.exit_code == 1 and f"le {tomorrow:%d/%m/%Y} n'est pas encore arrivé" in future.stderr
    assert stored(session) == rows


def test_backfill_shows_progress_on_stderr(rt, session) -> None:  # type: ignore[no-untyped-def]
    establishment(session)
    start = today() - dt.timedelta(days=3)
    result = run(rt, "trajectory", "backfill", "--from", start.isoformat(), "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["from"], data["to"], data["days"]) == (start.isoformat(), today().isoformat(), 4)
    # Not a terminal: whole lines (a cron log), the last day always reported.
    assert result.stderr.splitlines()[-1] == "Reconstitution : 4/4 jour(s) (100 %)"
    days = set(session.scalars(select(TrajectorySnapshot.day).distinct()))
    assert days == {start + dt.timedelta(days=i) for i in range(4)}
    human = run(rt, "trajectory", "backfill", "--from", start.isoformat(), "--to", start.isoformat())
    assert human.exit_code == 0, human.stderr
    assert human.stdout.startswith(f"Relevés reconstitués du {start:%d/%m/%Y} au {start:%d/%m/%Y} (1 jour(s)")
    before = stored(session)
    for args, message in [
        (("--from", today().isoformat(), "--to", start.isoformat()), "La période est vide"),
        (("--from", start.isoformat(), "--to", (today() + dt.timedelta(days=1)).isoformat()), "pas encore arrivé"),
        (("--from", "01/01/2026"), "from : date invalide"),
    ]:
        bad = run(rt, "trajectory", "backfill", *args)
        assert bad.exit_code == 1 and bad.stderr.startswith("Erreur : ") and message in bad.stderr, bad.stderr
    assert stored(session) == before
    missing = run(rt, "trajectory", "backfill")
    assert missing.exit_code == 2 and "--from" in missing.stderr


def test_report_json_has_the_figures(rt, session) -> None:  # type: ignore[no-untyped-def]
    establishment(session)
    assert run(rt, "trajectory", "snapshot").exit_code == 0
    result = run(rt, "trajectory", "report", "--format", "json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["day"] == data["as_of"] == today().isoformat()
    head = data["headline"]
    assert (head["active"], head["compliant"], head["compliant_share"], head["non_compliant"]) == (4, 2, 50.0, 2)
    assert (head["password_only"], head["rpps_linked"], head["rpps_share"]) == (1, 1, 25.0)
    assert [(s["status"], s["count"]) for s in data["statuses"]] == [
        ("compliant", 2), ("exempt", 0), ("pending", 0), ("non_compliant", 2)]
    rie = next(t for t in data["targets"] if t["id"] == "rie-2026-couverture")
    assert (rie["source"], rie["percent"], rie["current_share"], rie["gap"], rie["met"], rie["overdue"]) == (
        "policy", 100, 50.0, 50.0, False, True)
    assert rie["people_missing"] == 2
    gaps = {g["value"]: (g["active"], g["compliant"], g["missing"]) for g in data["largest_gaps"]}
    assert gaps == {"URG": (2, 0, 2), "CARDIO": (3, 2, 1)}
    assert [g["value"] for g in data["largest_gaps"]] == ["URG", "CARDIO"]
    everyone = data["projections"][0]
    assert (everyone["dimension"], everyone["current_share"]) == ("all", 50.0)
    assert everyone["projection"]["computable"] is False  # one day of history
    assert [(p["day"], p["share"]) for p in data["coverage_weekly"]] == [(today().isoformat(), 50.0)]
    assert {m["kind"]: m["count"] for m in data["mie_types"]}["totp"] == 1
    figure = next(f for f in data["figures"] if (f["indicator"], f["dimension"], f["value"]) ==
                  ("compliant", "unit", "CARDIO"))
    assert (figure["count"], round(figure["share"], 1)) == (2, 66.7)
    # Before any snapshot: no figures, said on stderr.
    early = run(rt, "trajectory", "report", "--as-of", "2020-01-01")
    assert early.exit_code == 0 and json.loads(early.stdout)["day"] is None
    assert "aucun relevé au 01/01/2020" in early.stderr


def test_report_csv_opens_with_semicolons(rt, session, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    establishment(session)
    assert run(rt, "trajectory", "snapshot").exit_code == 0
    result = run(rt, "trajectory", "report", "--format", "csv")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("\ufeff")
    table = list(csv.DictReader(io.StringIO(result.stdout[1:], newline=""), delimiter=";"))
    row = next(r for r in table if (r["indicateur"], r["dimension"], r["valeur"]) == ("compliant", "all", ""))
    assert (row["jour"], row["nombre"], row["part des actives (%)"], row["libellé"]) == (
        today().isoformat(), "2", "50,0", "Avec un MIE conforme")
    out = tmp_path / "rapport.csv"
    written = run(rt, "trajectory", "report", "--format", "csv", "--output", str(out))
    assert written.exit_code == 0 and written.stdout == ""
    assert out.read_bytes().startswith(b"\xef\xbb\xbf") and out.read_text(encoding="utf-8-sig") == result.stdout[1:]


def test_report_html_is_printable_with_the_figures(rt, session) -> None:  # type: ignore[no-untyped-def]
    establishment(session)
    assert run(rt, "trajectory", "snapshot").exit_code == 0
    result = run(rt, "trajectory", "report", "--format", "html", "--as-of", today().isoformat())
    assert result.exit_code == 0, result.stderr
    html = unescape(result.stdout)
    assert html.startswith("<!doctype html>") and "@media print" in html and "@page" in html
    assert f"Situation au <strong>{today():%d/%m/%Y}</strong>" in html
    assert "50,0 %" in html and "des 4 identités actives ont un MIE conforme (2)" in html
    assert "Tous les professionnels accédant aux données de santé disposent d'un MIE conforme" in html
    assert "en retard" in html and "URG" in html
    # The same charts as the report page: SVG drawn on the server, no script.
    assert html.count("<svg") == 2 and "<script" not in html


def test_the_report_counts_pairings_with_pro_sante_connect(rt, session) -> None:  # type: ignore[no-untyped-def]
    people = establishment(session)
    now = utcnow()
    # The doctor is paired; the interim worker was, until an officer ended the link.
    session.add_all([
        NationalLink(identity_id=people["doctor"].id, issuer="https://psc.example", sub="psc-doctor",
                     rpps=people["doctor"].rpps, method="rpps", linked_at=now - dt.timedelta(hours=1),
                     linked_by="doctor"),
        NationalLink(identity_id=people["password"].id, issuer="https://psc.example", sub="psc-interim",
                     method="names", linked_at=now - dt.timedelta(days=2), linked_by="interim",
                     unlinked_at=now - dt.timedelta(minutes=5), unlinked_by="agent", unlink_reason="erreur")])
    session.commit()
    assert run(rt, "trajectory", "snapshot").exit_code == 0
    head = json.loads(run(rt, "trajectory", "report", "--format", "json").stdout)["headline"]
    assert (head["psc_paired"], head["psc_share"]) == (1, 25.0)
    result = run(rt, "trajectory", "report", "--format", "csv")
    table = list(csv.DictReader(io.StringIO(result.stdout[1:], newline=""), delimiter=";"))
    rows = {(r["dimension"], r["valeur"]): r for r in table if r["indicateur"] == "psc_paired"}
    assert (rows[("all", "")]["nombre"], rows[("all", "")]["part des actives (%)"], rows[("all", "")]["libellé"]) \
        == ("1", "25,0", "Associées à Pro Santé Connect")
    assert (rows[("rpps", "with")]["nombre"], rows[("contract_type", "interim")]["nombre"]) == ("1", "0")
    html = unescape(run(rt, "trajectory", "report", "--format", "html").stdout)
    assert "associées à leur identité nationale Pro Santé Connect (1)" in html
    # A target on pairing: 80 % of the identities with an RPPS.
    due = (today() + dt.timedelta(days=90)).isoformat()
    added = run(rt, "trajectory", "target", "add", "--label", "Médecins associés à PSC", "--percent", "80", "--due",
                due, "--dimension", "rpps", "--value", "with", "--indicator", "psc_paired", "--json")
    assert added.exit_code == 0, added.stderr
    mine = json.loads(run(rt, "trajectory", "target", "list", "--json").stdout)[-1]
    assert (mine["indicator"], mine["scope_fr"], mine["current_share"], mine["met"]) == (
        "psc_paired", "identité associée à Pro Santé Connect — avec RPPS", 100.0, True)


def test_targets_add_list_remove(rt, session) -> None:  # type: ignore[no-untyped-def]
    establishment(session)
    assert run(rt, "trajectory", "snapshot").exit_code == 0
    due = (today() + dt.timedelta(days=120)).isoformat()
    added = run(rt, "trajectory", "target", "add", "--label", "Intérimaires équipés", "--percent", "100", "--due",
                due, "--dimension", "contract_type", "--value", "interim", "--json")
    assert added.exit_code == 0, added.stderr
    target = json.loads(added.stdout)
    assert (target["label"], target["percent"], target["due"], target["dimension"], target["value"],
            target["created_by"]) == ("Intérimaires équipés", 100, due, "contract_type", "interim", "cli")
    listed = json.loads(run(rt, "trajectory", "target", "list", "--json").stdout)
    assert [t["source"] for t in listed] == ["policy", "policy", "rssi"]
    mine = listed[-1]
    assert (mine["id"], mine["current_share"], mine["gap"], mine["met"], mine["overdue"]) == (
        target["id"], 0.0, 100.0, False, False)
    text = run(rt, "trajectory", "target", "list").stdout
    assert f"{target['id']}  [RSSI, en cours]  100 % au {dt.date.fromisoformat(due):%d/%m/%Y}" in text
    assert "rie-2026-couverture  [politique, en retard]" in text

    removed = run(rt, "trajectory", "target", "remove", target["id"])
    assert removed.exit_code == 0 and removed.stdout == f"Objectif {target['id']} retiré.\n"
    assert [t["source"] for t in json.loads(run(rt, "trajectory", "target", "list", "--json").stdout)] == [
        "policy", "policy"]
    again = run(rt, "trajectory", "target", "remove", target["id"])
    assert again.exit_code == 1 and again.stderr == "Erreur : Cet objectif a déjà été retiré.\n"
    policy_target = run(rt, "trajectory", "target", "remove", "rie-2026-couverture")
    assert policy_target.exit_code == 1 and "fichier de politique" in policy_target.stderr
    unknown = run(rt, "trajectory", "target", "remove", "nope")
    assert unknown.exit_code == 1 and unknown.stderr == "Erreur : Objectif introuvable.\n"


def test_target_bad_input_is_a_french_error_and_writes_nothing(rt, session) -> None:  # type: ignore[no-untyped-def]
    due = (today() + dt.timedelta(days=30)).isoformat()
    base = ("trajectory", "target", "add")
    cases = [
        (base + ("--percent", "80", "--due", due), "Le libellé de l'objectif est obligatoire."),
        (base + ("--label", "Tous", "--due", due), "Le pourcentage doit être un nombre entier de 1 à 100."),
        (base + ("--label", "Tous", "--percent", "150", "--due", due), "nombre entier de 1 à 100"),
        (base + ("--label", "Tous", "--percent", "80"), "L'échéance est obligatoire"),
        (base + ("--label", "Tous", "--percent", "80", "--due", "31/03/2027"), "Échéance invalide"),
        (base + ("--label", "Tous", "--percent", "80", "--due", "2020-01-01"), "ou plus tard"),
        (base + ("--label", "Tous", "--percent", "80", "--due", due, "--dimension", "service", "--value", "X"),
         "Dimension inconnue « service »"),
        (base + ("--label", "Tous", "--percent", "80", "--due", due, "--dimension", "unit"),
         "La valeur est obligatoire pour la dimension « unit »"),
        (base + ("--label", "Tous", "--percent", "80", "--due", due, "--dimension", "unit", "--value", "NOPE"),
         "Unité inconnue de l'annuaire « NOPE »"),
        (base + ("--label", "Tous", "--percent", "80", "--due", due, "--indicator", "signins"),
         "Indicateur inconnu"),
    ]
    for args, message in cases:
        result = run(rt, *args)
        assert result.exit_code == 1, args
        assert result.stderr.startswith("Erreur : ") and message in result.stderr, (args, result.stderr)
        assert result.stdout == ""
    everything = run(rt, *base, "--dimension", "unit")
    assert all(m in everything.stderr for m in ("libellé", "pourcentage", "échéance", "valeur"))
    assert count(session, TrajectoryTarget) == 0
    assert session.scalar(select(func.count()).select_from(AuditEvent)
                          .where(AuditEvent.tag.like("admin:trajectory_target:%"))) == 0
    assert json.loads(run(rt, "trajectory", "target", "list", "--json").stdout)[0]["current_share"] is None
