"""``hospiconnect directory …``: import, add, show, list, suspend, reactivate, end — human and --json output,
exit codes, errors on stderr."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

import hospiconnect.cli
from hospiconnect.audit import tags
from hospiconnect.audit.models import AuditEvent
from hospiconnect.directory.models import Identity
from tests.factories import create_identity, make_rpps

HEADER = ("matricule;nom_naissance;nom_usage;prenoms;date_naissance;commune_naissance;pays_naissance;sexe;email;"
          "rpps;finess;unites;roles;contrat;date_debut;date_fin")


def line(matricule: str, family: str, *, birth: str = "1980-05-04", rpps: str = "", contract: str = "CDI",
         end: str = "", email: str = "") -> str:
    return (f"{matricule};{family};;Claire;{birth};75056;99100;F;{email};{rpps};750712184;POLE-MED|CARDIO;ide;"
            f"{contract};2020-01-01;{end}")


@pytest.fixture()
def run(rt):
    runner = CliRunner()

    def invoke(*args: str):  # type: ignore[no-untyped-def]
        return runner.invoke(hospiconnect.cli.main, list(args), obj=rt)

    return invoke


@pytest.fixture()
def hrfile(tmp_path: Path):
    def write(*lines: str, name: str = "agents.csv", raw: bytes | None = None) -> str:
        path = tmp_path / name
        path.write_bytes(raw if raw is not None else ("\ufeff" + "\r\n".join((HEADER, *lines)) + "\r\n").encode())
        return str(path)

    return write


def counts(rt) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    with rt.db.session() as s:
        return (s.scalar(select(func.count()).select_from(Identity)) or 0,
                s.scalar(select(func.count()).select_from(AuditEvent)) or 0)


def ok_json(result):  # type: ignore[no-untyped-def]
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return json.loads(result.stdout)


ADD = ("directory", "add", "--birth-name", "Lefèvre", "--given-names", "Anne Sophie", "--birth-date", "1979-03-08",
       "--birth-place", "69123", "--gender", "F", "--contract", "CDD", "--start-date", "2025-01-01",
       "--end-date", "2030-12-31", "--email", "Anne.Lefevre@chu-exemple.fr", "--external-id", "M42",
       "--finess", "750712184", "--finess", "690781810", "--unit", "POLE-MED", "--unit", "CARDIO",
       "--role", "ide", "--role", "cadre")


# --- import --------------------------------------------------------------------------------------------

def test_import_human_report(run, rt, hrfile):
    result = run("directory", "import", hrfile(line("M1", "Martin"), line("M2", "Durand", rpps=make_rpps(1))),
                 "--today", "2026-11-27")
    assert result.exit_code == 0, result.output
    assert "2 ligne(s) lue(s) : 2 création(s)" in result.stdout
    assert "ligne 2  M1  création  cmartin" in result.stdout
    assert "Import enregistré" in result.stdout
    assert counts(rt)[0] == 2
    with rt.db.session() as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.tag == tags.DIRECTORY_IMPORT_APPLIED)).one()
    assert event.actor == "import:agents.csv"


def test_import_json_report_and_reimport(run, rt, hrfile):
    path = hrfile(line("M1", "Martin"), line("M2", "Durand"))
    data = ok_json(run("directory", "import", path, "--json", "--today", "2026-11-27"))
    assert data["applied"] is True and data["counts"]["created"] == 2 and data["exit_code"] == 0
    assert [(a["matricule"], a["action"]) for a in data["actions"]] == [("M1", "created"), ("M2", "created")]
    again = ok_json(run("directory", "import", path, "--json", "--today", "2026-11-27"))
    assert again["counts"]["unchanged"] == 2 and again["actions"] == [] and again["journal_events"] == 0


def test_import_with_rejected_rows_writes_nothing_and_exits_1(run, rt, hrfile):
    path = hrfile(line("M1", "Martin"), line("M2", "Durand", rpps="10000000001"), line("M1", "Petit"))
    result = run("directory", "import", path, "--today", "2026-11-27")
    assert result.exit_code == 1
    assert "ligne 3 (matricule M2) : rpps : La clé de contrôle du numéro RPPS est fausse." in result.stdout
    assert "ligne 4 (matricule M1) : matricule : le matricule M1 figure déjà ligne 2." in result.stdout
    assert "Aucune modification enregistrée" in result.stdout and "--partial" in result.stdout
    assert counts(rt) == (0, 0)
    data = json.loads(run("directory", "import", path, "--json", "--today", "2026-11-27").stdout)
    assert data["applied"] is False and [r["line"] for r in data["rejected"]] == [3, 4]


def test_import_partial_and_dry_run(run, rt, hrfile):
    path = hrfile(line("M1", "Martin"), line("M2", "Durand", birth="1980-02-30"))
    dry = run("directory", "import", path, "--dry-run", "--today", "2026-11-27")
    assert dry.exit_code == 1 and "Ce qui serait fait" in dry.stdout and "Simulation" in dry.stdout
    assert counts(rt) == (0, 0)
    partial = run("directory", "import", path, "--partial", "--json", "--today", "2026-11-27")
    assert partial.exit_code == 1
    data = json.loads(partial.stdout)
    assert data["applied"] is True and data["counts"]["created"] == 1 and data["rejected"][0]["line"] == 3
    assert counts(rt)[0] == 1


def test_import_ends_passed_contracts(run, rt, hrfile):
    run("directory", "import", hrfile(line("M1", "Martin", contract="CDD", end="2027-01-31")), "--today", "2026-11-27")
    result = run("directory", "import", hrfile(line("M1", "Martin", contract="CDD", end="2026-11-26")),
                 "--today", "2026-11-27", "--json")
    data = ok_json(result)
    assert data["counts"]["ended"] == 1 and data["actions"][0]["end_date"] == "2026-11-26"
    assert ok_json(run("directory", "show", "M1", "--json"))["status"] == "suspended"


@pytest.mark.parametrize("raw, message", [
    (b"", "le fichier est vide"),
    ("matricule;nom\r\nM1;Martin\r\n".encode(), "colonne(s) obligatoire(s) absente(s)"),
    ((HEADER + "\r\n" + line("M1", "Lefèvre") + "\r\n").encode("latin-1"), "pas encodé en UTF-8"),
])
def test_import_unusable_file_exits_2(run, rt, hrfile, raw, message):
    path = hrfile(raw=raw)
    result = run("directory", "import", path)
    assert result.exit_code == 2
    assert result.stderr.startswith("Erreur : fichier inutilisable : ") and message in result.stderr
    assert "Traceback" not in result.output
    as_json = run("directory", "import", path, "--json")
    assert as_json.exit_code == 2 and message in json.loads(as_json.stdout)["error"]
    assert counts(rt) == (0, 0)


def test_import_missing_file_exits_2(run, tmp_path):
    result = run("directory", "import", str(tmp_path / "absent.csv"))
    assert result.exit_code == 2 and "introuvable" in result.stderr


def test_import_bad_today_option(run, hrfile):
    result = run("directory", "import", hrfile(line("M1", "Martin")), "--today", "27/11/2026")
    assert result.exit_code == 2 and "date invalide" in result.stderr


# --- add -----------------------------------------------------------------------------------------------

def test_add_json(run, rt):
    data = ok_json(run(*ADD, "--json"))
    assert data["user_name"] == "alefevre" and data["external_id"] == "M42"
    assert data["contract_type"] == "fixed_term" and data["email"] == "anne.lefevre@chu-exemple.fr"
    assert data["establishments"] == ["690781810", "750712184"] and data["units"] == ["CARDIO", "POLE-MED"]
    assert data["roles"] == ["cadre", "ide"] and data["status"] == "active" and data["birth_country"] == "99100"
    with rt.db.session() as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.tag == tags.DIRECTORY_IDENTITY_CREATED)).one()
    assert event.actor == "cli" and event.subject == data["id"]


def test_add_human(run):
    result = run(*ADD)
    assert result.exit_code == 0 and result.stdout.startswith("Identité créée : alefevre (")


def test_add_lists_every_bad_field(run, rt):
    result = run("directory", "add", "--birth-name", "123", "--given-names", "Anne", "--birth-date", "2099-01-01",
                 "--birth-place", "75056", "--gender", "Z", "--contract", "saisonnier", "--rpps", "12345678901",
                 "--email", "pas-un-mail", "--json")
    assert result.exit_code == 1 and result.stdout == ""
    for option in ("--birth-name", "--birth-date", "--gender", "--contract", "--rpps", "--email"):
        assert f"  {option} : " in result.stderr
    assert "La clé de contrôle du numéro RPPS est fausse." in result.stderr
    assert counts(rt) == (0, 0)


def test_add_duplicate_shows_candidates_and_confirm_homonym(run, rt):
    first = ok_json(run(*ADD, "--json"))
    again = [a for a in ADD]
    again[again.index("M42")] = "M43"
    result = run(*again)
    assert result.exit_code == 1
    assert "Anne Lefèvre — alefevre — né(e) le 1979-03-08" in result.stderr and first["id"] in result.stderr
    assert "--confirm-homonym" in result.stderr
    assert counts(rt)[0] == 1
    confirmed = ok_json(run(*again, "--confirm-homonym", "--json"))
    assert confirmed["user_name"] == "alefevre2"
    with rt.db.session() as s:
        assert s.scalar(select(func.count()).select_from(AuditEvent)
                        .where(AuditEvent.tag == tags.DIRECTORY_IDENTITY_HOMONYM_CONFIRMED)) == 1


def test_add_rpps_taken(run, session):
    rpps = make_rpps(3)
    create_identity(session, with_rpps=True, rpps=rpps)
    result = run("directory", "add", "--birth-name", "Roux", "--given-names", "Paul", "--birth-date", "1970-01-01",
                 "--birth-place", "75056", "--gender", "M", "--contract", "permanent", "--rpps", rpps)
    assert result.exit_code == 1 and result.stderr.startswith("Erreur : Le numéro RPPS")


# --- show / list ---------------------------------------------------------------------------------------

def test_show_by_every_key(run, session):
    rpps = make_rpps(4)
    identity = create_identity(session, with_rpps=True, rpps=rpps, external_id="M7")
    for key in (identity.public_id, identity.user_name, "M7", rpps):
        data = ok_json(run("directory", "show", key, "--json"))
        assert data["id"] == identity.public_id
    human = run("directory", "show", "M7")
    assert human.exit_code == 0 and f"identifiant     : {identity.user_name}" in human.stdout
    assert "statut          : Actif" in human.stdout and f"RPPS            : {rpps}" in human.stdout


def test_show_unknown(run):
    result = run("directory", "show", "personne", "--json")
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.strip() == "Erreur : Aucune identité ne correspond à 'personne'."


def test_list_filters_and_pagination(run, session):
    for i in range(5):
        create_identity(session, birth_family_name=f"Morel{chr(65 + i)}", external_id=f"L{i}")
    create_identity(session, with_rpps=True, birth_family_name="Zola")
    data = ok_json(run("directory", "list", "--json", "--limit", "2", "--offset", "1"))
    assert data["total"] == 6 and data["limit"] == 2 and data["offset"] == 1
    assert [i["birth_family_name"] for i in data["items"]] == ["MorelB", "MorelC"]
    rpps_only = ok_json(run("directory", "list", "--population", "rpps", "--json"))
    assert rpps_only["total"] == 1 and rpps_only["items"][0]["birth_family_name"] == "Zola"
    found = ok_json(run("directory", "list", "--search", "zol", "--json"))
    assert [i["birth_family_name"] for i in found["items"]] == ["Zola"]
    assert ok_json(run("directory", "list", "--status", "suspended", "--json"))["total"] == 0
    human = run("directory", "list", "--limit", "3")
    assert human.exit_code == 0 and "3 identité(s) sur 6" in human.stdout
    assert run("directory", "list", "--search", "personne").stdout.strip() == "Aucune identité ne correspond."


def test_list_rejects_a_bad_status(run):
    assert run("directory", "list", "--status", "perdu").exit_code == 2


# --- lifecycle -----------------------------------------------------------------------------------------

def test_suspend_reactivate_end(run, rt, session):
    identity = create_identity(session, external_id="M9")
    suspended = ok_json(run("directory", "suspend", "M9", "--reason", "poste vacant", "--json"))
    assert suspended["status"] == "suspended" and suspended["status_reason"] == "poste vacant"
    again = run("directory", "suspend", "M9", "--reason", "encore")
    assert again.exit_code == 1 and again.stderr.startswith("Erreur : Impossible de passer de « Suspendu »")
    reactivated = run("directory", "reactivate", identity.user_name)
    assert reactivated.exit_code == 0 and "réactivée : statut Actif" in reactivated.stdout
    future = ok_json(run("directory", "end", "M9", "--date", "2099-12-31", "--json"))
    assert future["status"] == "active" and future["end_date"] == "2099-12-31"
    ended = ok_json(run("directory", "end", "M9", "--json"))
    assert ended["status"] == "suspended" and ended["end_date"] is not None
    with rt.db.session() as s:
        tags_seen = list(s.scalars(select(AuditEvent.tag).where(AuditEvent.subject == identity.public_id)
                                   .order_by(AuditEvent.seq)))
    assert tags_seen == [tags.DIRECTORY_IDENTITY_CREATED, tags.DIRECTORY_IDENTITY_SUSPENDED,
                         tags.DIRECTORY_IDENTITY_REACTIVATED, tags.DIRECTORY_IDENTITY_ENDED,
                         tags.DIRECTORY_IDENTITY_ENDED, tags.DIRECTORY_IDENTITY_SUSPENDED]


def test_suspend_requires_a_reason(run, session):
    create_identity(session, external_id="M9")
    result = run("directory", "suspend", "M9")
    assert result.exit_code == 2 and "--reason" in result.stderr


def test_end_before_start_is_refused(run, session):
    create_identity(session, external_id="M9", start_date="2020-01-01")
    result = run("directory", "end", "M9", "--date", "2019-12-31")
    assert result.exit_code == 1 and "précède la date d'arrivée" in result.stderr


def test_lifecycle_on_unknown_identity(run):
    for args in (("suspend", "X", "--reason", "r"), ("reactivate", "X"), ("end", "X")):
        result = run("directory", *args)
        assert result.exit_code == 1 and "Aucune identité" in result.stderr


def test_import_with_invite_sends_an_invitation_to_each_new_identity(run, rt, hrfile):
    from hospiconnect.authenticators.models import Notification
    from hospiconnect.enrollment.models import EnrollmentCase, Invitation

    existing = hrfile(line("M0", "Ancien", email="ancien@chu-exemple.fr"), name="before.csv")
    ok_json(run("directory", "import", existing, "--json"))
    path = hrfile(line("M0", "Ancien", email="ancien@chu-exemple.fr"),
                  line("M1", "Martin", email="claire.martin@chu-exemple.fr"), line("M2", "Durand"))
    data = ok_json(run("directory", "import", path, "--invite", "--json"))
    assert data["counts"]["created"] == 2
    invitations = data["invitations"]
    assert invitations["sent"] == 1
    [missed] = invitations["not_sent"]
    assert missed["reason"] == "no_email" and missed["user_name"].endswith("durand")
    with rt.db.session() as s:
        [invitation] = s.scalars(select(Invitation)).all()
        assert invitation.email == "claire.martin@chu-exemple.fr" and invitation.sent_by == "cli"
        case = s.get(EnrollmentCase, invitation.case_id)
        assert (case.kind, case.state, case.opened_by) == ("first_mie", "opened", "cli")
        assert s.scalar(select(func.count()).select_from(Notification)) == 1
        # Nobody already in the directory is invited, and the refusal is journaled.
        assert s.scalar(select(func.count()).select_from(EnrollmentCase)) == 1
        assert s.scalar(select(func.count()).select_from(AuditEvent)
                        .where(AuditEvent.tag == "enrollment:invitation:not_sent")) == 1
    human = run("directory", "import", hrfile(line("M3", "Petit", email="p@chu-exemple.fr"), name="c.csv"),
                "--invite")
    assert human.exit_code == 0 and "Invitations FranceConnect+ : 1 envoyée(s)" in human.stdout


def test_import_without_invite_sends_nothing(run, rt, hrfile):
    from hospiconnect.enrollment.models import Invitation

    data = ok_json(run("directory", "import", hrfile(line("M1", "Martin", email="c.m@chu-exemple.fr")), "--json"))
    assert "invitations" not in data
    with rt.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Invitation)) == 0
