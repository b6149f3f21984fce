"""HR import: file parsing, row validation, planning against the directory, bulk writes and the journal."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from hospiconnect.audit import service as audit
from hospiconnect.audit import tags
from hospiconnect.audit.models import AuditEvent
from hospiconnect.devtools.hrfile import CONTRACTS, generate_hr_csv, generate_hr_rows
from hospiconnect.directory import importer, services
from hospiconnect.directory.models import (
    Establishment,
    Identity,
    IdentityEstablishment,
    IdentityRole,
    IdentityUnit,
    OrgUnit,
)
from hospiconnect.errors import Conflict
from tests.factories import create_identity, make_rpps

TODAY = dt.date(2026, 11, 27)
HEADER = ["matricule", "nom_naissance", "nom_usage", "prenoms", "date_naissance", "commune_naissance",
          "pays_naissance", "sexe", "email", "rpps", "finess", "unites", "roles", "contrat", "date_debut",
          "date_fin"]
FAMILIES = ["Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy", "Moreau",
            "Simon", "Laurent", "Lefèvre", "Michel", "Garcia", "David"]


def person(n: int, **overrides: str) -> dict[str, str]:
    """A valid HR row; ``n`` makes the matricule, the name and the e-mail distinct."""
    row = {
        "matricule": f"M{n:04d}", "nom_naissance": FAMILIES[n % len(FAMILIES)], "nom_usage": "",
        "prenoms": "Claire Marie", "date_naissance": f"1980-01-{1 + n % 28:02d}", "commune_naissance": "75056",
        "pays_naissance": "99100", "sexe": "F", "email": f"agent{n}@chu-exemple.fr", "rpps": "",
        "finess": "750712184", "unites": "POLE-MED|CARDIO", "roles": "ide", "contrat": "CDI",
        "date_debut": "2020-01-01", "date_fin": "",
    }
    row.update(overrides)
    return row


def csv_bytes(rows: list[dict[str, str]], *, delimiter: str = ";", bom: bool = False,
              header: list[str] | None = None) -> bytes:
    header = header or HEADER
    lines = [delimiter.join(header)]
    for row in rows:
        lines.append(delimiter.join(row.get(c, "") for c in header))
    text = "\r\n".join(lines) + "\r\n"
    return ("\ufeff" if bom else "").encode() + text.encode("utf-8")


@pytest.fixture()
def hr(rt, tmp_path: Path):
    """Run an import of ``content`` (bytes) through the service, in one transaction, like the CLI."""

    def run(content: bytes, name: str = "rh.csv", **kwargs):  # type: ignore[no-untyped-def]
        path = tmp_path / name
        path.write_bytes(content)
        with rt.db.session() as session:
            return importer.import_file(session, path, today=TODAY, **kwargs)

    return run


def state(rt) -> dict:  # type: ignore[no-untyped-def]
    """Everything an import may change: identities with their links, references and the journal."""
    with rt.db.session() as s:
        identities = s.execute(select(
            Identity.external_id, Identity.user_name, Identity.email, Identity.rpps, Identity.status,
            Identity.version, Identity.end_date, Identity.contract_type).order_by(Identity.id)).all()
        return {
            "identities": [tuple(r) for r in identities],
            "links": [s.scalar(select(func.count()).select_from(t)) for t in (IdentityEstablishment, IdentityUnit,
                                                                              IdentityRole)],
            "references": [s.scalar(select(func.count()).select_from(t)) for t in (Establishment, OrgUnit)],
            "audit": s.scalar(select(func.count()).select_from(AuditEvent)),
        }


def events(rt, tag: str | None = None) -> list[AuditEvent]:  # type: ignore[no-untyped-def]
    with rt.db.session() as s:
        stmt = select(AuditEvent).order_by(AuditEvent.seq)
        if tag:
            stmt = stmt.where(AuditEvent.tag == tag)
        return list(s.scalars(stmt))


def identity(rt, matricule: str) -> dict:  # type: ignore[no-untyped-def]
    with rt.db.session() as s:
        return services.identity_as_dict(services.get_identity(s, matricule))


# --- file format ---------------------------------------------------------------------------------------

def test_semicolon_file_with_bom_creates_identities(rt, hr):
    rpps = make_rpps(1)
    report = hr(csv_bytes([person(1, rpps=rpps, roles="medecin|chef_service", finess="750712184|690781810"),
                           person(2, nom_usage="Dupont")], bom=True))
    assert report.applied and report.exit_code == 0
    assert report.counts() == {"created": 2, "updated": 0, "ended": 0, "unchanged": 0, "rejected": 0}
    first = identity(rt, "M0001")
    assert first["external_id"] == "M0001" and first["rpps"] == rpps and first["population"] == "rpps"
    assert first["status"] == "active" and first["contract_type"] == "permanent"
    assert first["establishments"] == ["690781810", "750712184"]
    assert first["units"] == ["CARDIO", "POLE-MED"] and first["roles"] == ["chef_service", "medecin"]
    second = identity(rt, "M0002")
    assert second["usage_name"] == "Dupont" and second["user_name"] == "cdupont"
    assert second["population"] == "local"
    with rt.db.session() as s:
        assert set(s.scalars(select(OrgUnit.code))) == {"CARDIO", "POLE-MED"}
        assert set(s.scalars(select(Establishment.finess))) == {"750712184", "690781810"}


def test_comma_file_without_bom_and_case_insensitive_header(rt, hr):
    header = [c.upper() if i % 2 else c for i, c in enumerate(HEADER)]
    rows = [{h: v for h, v in zip(header, person(3, prenoms="Jean Paul", sexe="M").values())}]
    content = csv_bytes(rows, delimiter=",", header=header)
    parsed = importer.parse_hr_csv(content, name="x.csv", today=TODAY)
    assert parsed.delimiter == ","
    report = hr(content)
    assert report.counts()["created"] == 1
    assert identity(rt, "M0003")["given_names"] == "Jean Paul"


def test_header_with_accents_and_spaces_is_recognised():
    header = ["Matricule", "Nom naissance", "Prénoms", "Date-naissance", "commune_naissance", "pays_naissance",
              "Sexe", "Contrat"]
    content = ("\n".join([";".join(header), "M1;Martin;Claire;1980-01-01;75056;99100;F;CDI"]) + "\n").encode()
    parsed = importer.parse_hr_csv(content, name="x.csv", today=TODAY)
    assert parsed.rows[0].errors == [] and parsed.rows[0].data.birth_family_name == "Martin"


@pytest.mark.parametrize("label, code", [
    ("CDI", "permanent"), ("titulaire", "permanent"), ("Titulaire", "permanent"), ("permanent", "permanent"),
    ("CDD", "fixed_term"), ("fixed_term", "fixed_term"), ("Remplacement", "replacement"),
    ("intérim", "interim"), ("INTERIM", "interim"), ("Vacataire", "vacataire"), ("étudiant", "trainee"),
    ("Etudiant", "trainee"), ("stagiaire", "trainee"), ("Prestataire", "contractor"), ("contractor", "contractor"),
])
def test_contract_labels(label, code):
    assert importer.contract_type_from_label(label) == code


def test_unknown_contract_label_is_rejected_with_the_accepted_labels(hr):
    report = hr(csv_bytes([person(1, contrat="saisonnier")]))
    assert report.counts()["rejected"] == 1
    (reason,) = report.plan.rejected[0].reasons
    assert reason.startswith("contrat : type de contrat inconnu 'saisonnier'") and "CDD" in reason


def test_french_contract_labels_are_imported(rt, hr):
    labels = ["CDI", "titulaire", "CDD", "remplacement", "Intérim", "vacataire", "étudiant", "stagiaire",
              "prestataire"]
    rows = [person(i, contrat=label, date_fin="2027-06-30") for i, label in enumerate(labels, start=1)]
    assert hr(csv_bytes(rows)).counts()["created"] == len(labels)
    with rt.db.session() as s:
        stored = set(s.scalars(select(Identity.contract_type)))
    assert stored == {"permanent", "fixed_term", "replacement", "interim", "vacataire", "trainee", "contractor"}


def test_both_date_formats(rt, hr):
    hr(csv_bytes([person(1, date_naissance="12/04/1985", date_debut="01/09/2021", date_fin="31/08/2027"),
                  person(2, date_naissance="1985-04-13", date_debut="2021-09-01", date_fin="2027-08-31")]))
    first, second = identity(rt, "M0001"), identity(rt, "M0002")
    assert (first["birth_date"], first["start_date"], first["end_date"]) == ("1985-04-12", "2021-09-01", "2027-08-31")
    assert (second["birth_date"], second["start_date"], second["end_date"]) == (
        "1985-04-13", "2021-09-01", "2027-08-31")


def test_invalid_dates_are_rejected_with_their_line(rt, hr):
    report = hr(csv_bytes([person(1), person(2, date_naissance="31/02/1980"), person(3, date_debut="2021-13-01"),
                           person(4, date_naissance="hier")]))
    assert [r.line for r in report.plan.rejected] == [3, 4, 5]
    assert report.plan.rejected[0].reasons[0].startswith("date_naissance : Date de naissance : date invalide")
    assert report.plan.rejected[1].reasons[0].startswith("date_debut :")
    assert not report.applied and state(rt)["identities"] == []


def test_missing_columns_refuse_the_whole_file(rt, hr):
    before = state(rt)
    header = [c for c in HEADER if c not in ("sexe", "contrat")]
    with pytest.raises(importer.UnusableFile) as exc:
        hr(csv_bytes([person(1)], header=header))
    assert "sexe, contrat" in exc.value.message and "absente" in exc.value.message
    assert state(rt) == before


def test_unknown_columns_are_ignored_with_a_warning(rt, hr):
    header = HEADER + ["service_paie", "commentaire"]
    row = person(1) | {"service_paie": "42", "commentaire": "ras"}
    report = hr(csv_bytes([row], header=header))
    assert report.counts()["created"] == 1
    assert report.warnings == ["Colonne(s) inconnue(s) ignorée(s) : service_paie, commentaire."]


def test_not_utf8_is_refused_with_advice(rt, hr):
    before = state(rt)
    content = csv_bytes([person(1)]) + "M0002;Lefèvre;;Jean;1970-01-01;75056;99100;M;;;;;;CDI;;\r\n".encode("cp1252")
    with pytest.raises(importer.UnusableFile) as exc:
        hr(content)
    assert "UTF-8" in exc.value.message and "ligne 3" in exc.value.message and "réexportez" in exc.value.message
    assert state(rt) == before


def test_utf16_is_refused(hr):
    with pytest.raises(importer.UnusableFile, match="UTF-16"):
        hr(csv_bytes([person(1)]).decode().encode("utf-16"))


@pytest.mark.parametrize("content", [b"", b"\xef\xbb\xbf", b"\r\n\r\n  \n"])
def test_empty_file_is_refused(rt, hr, content):
    with pytest.raises(importer.UnusableFile, match="vide"):
        hr(content)
    assert state(rt)["audit"] == 0


def test_header_only_file_changes_nothing(rt, hr):
    report = hr(csv_bytes([]))
    assert report.rows == 0 and report.exit_code == 0 and not report.applied
    assert "aucune ligne" in report.warnings[0] and state(rt)["audit"] == 0


def test_unreadable_path_is_refused(rt, tmp_path):
    with rt.db.session() as s:
        with pytest.raises(importer.UnusableFile, match="introuvable"):
            importer.import_file(s, tmp_path / "absent.csv", today=TODAY)
        with pytest.raises(importer.UnusableFile, match="dossier"):
            importer.import_file(s, tmp_path, today=TODAY)


def test_line_numbers_count_blank_lines_and_quoted_line_breaks(rt, hr):
    good = ";".join(person(1).values())
    quoted = ";".join(person(2, nom_usage='"Dupont\nDurand"').values())  # a name over two physical lines
    bad = ";".join(person(3, rpps="12345678901").values())
    content = "\r\n".join([";".join(HEADER), good, "", ";;;;", quoted, bad]).encode()
    report = hr(content, partial=True)
    assert [(r.line, r.matricule) for r in report.plan.rejected] == [(7, "M0003")]
    assert [(c.line, c.matricule) for c in report.plan.changes] == [(2, "M0001"), (5, "M0002")]
    assert identity(rt, "M0002")["usage_name"] == "Dupont Durand"


def test_row_with_a_wrong_number_of_values_is_rejected(hr):
    content = csv_bytes([person(1)]) + b"M0002;Martin;Claire\r\n"
    report = hr(content)
    assert report.plan.rejected[0].line == 3 and "3 valeur(s) au lieu de 16" in report.plan.rejected[0].reasons[0]


def test_trailing_separators_are_tolerated(rt, hr):
    content = (";".join(HEADER) + ";\r\n" + ";".join(person(1).values()) + ";;\r\n").encode()
    assert hr(content).counts()["created"] == 1


# --- row rules -----------------------------------------------------------------------------------------

def test_invalid_rpps_key_is_rejected_with_its_line_and_nothing_is_written(rt, hr):
    hr(csv_bytes([person(1)]))
    before = state(rt)
    report = hr(csv_bytes([person(1, email="nouveau@chu-exemple.fr"), person(2), person(3, rpps="10000000001")]))
    assert report.exit_code == 1 and not report.applied
    assert [r.as_dict() for r in report.plan.rejected] == [{
        "line": 4, "matricule": "M0003", "reasons": ["rpps : La clé de contrôle du numéro RPPS est fausse."]}]
    # What would have been done is still reported.
    assert report.counts() == {"created": 1, "updated": 1, "ended": 0, "unchanged": 0, "rejected": 1}
    assert state(rt) == before


def test_every_bad_field_of_a_row_is_reported(hr):
    report = hr(csv_bytes([person(1, matricule="", sexe="Z", email="pas-un-mail", commune_naissance="",
                                  finess="12")]))
    reasons = report.plan.rejected[0].reasons
    assert [r.split(" : ")[0] for r in reasons] == ["matricule", "commune_naissance", "sexe", "email", "finess"]


def test_duplicate_matricule_rejects_the_second_line(rt, hr):
    before = state(rt)
    report = hr(csv_bytes([person(1), person(2), person(1, nom_naissance="Autre")]))
    assert [(r.line, r.reasons) for r in report.plan.rejected] == [
        (4, ["matricule : le matricule M0001 figure déjà ligne 2."])]
    assert state(rt) == before


def test_homonym_of_an_existing_identity_is_refused(rt, hr):
    hr(csv_bytes([person(1)]))
    before = state(rt)
    report = hr(csv_bytes([person(2, nom_naissance="BERNARD-", prenoms="claire Anne", date_naissance="1980-01-02",
                                  nom_usage="Autre")]))
    # Same birth name (case and punctuation aside), same first given name, same birth date as M0001.
    assert report.exit_code == 1 and "homonyme possible" in report.plan.rejected[0].reasons[0]
    assert "matricule M0001" in report.plan.rejected[0].reasons[0]
    assert "homonyme_confirme" in report.plan.rejected[0].reasons[0]
    assert state(rt) == before


def test_homonym_of_an_earlier_row_is_refused(rt, hr):
    report = hr(csv_bytes([person(1), person(17, nom_naissance="Bernard", date_naissance="1980-01-02")]))
    assert [r.line for r in report.plan.rejected] == [3]
    assert "ligne 2 (matricule M0001)" in report.plan.rejected[0].reasons[0]
    assert state(rt)["identities"] == []


def test_confirmed_homonym_is_created_and_journaled(rt, hr):
    hr(csv_bytes([person(1)]))
    header = HEADER + ["homonyme_confirme"]
    rows = [person(1), person(17, nom_naissance="Bernard", date_naissance="1980-01-02", homonyme_confirme="Oui"),
            person(33, nom_naissance="Bernard", date_naissance="1980-01-02", homonyme_confirme="oui")]
    report = hr(csv_bytes(rows, header=header))
    assert report.counts()["created"] == 2 and report.counts()["unchanged"] == 1
    original = identity(rt, "M0001")
    confirmed = events(rt, tags.DIRECTORY_IDENTITY_HOMONYM_CONFIRMED)
    assert [e.subject for e in confirmed] == [identity(rt, "M0017")["id"], identity(rt, "M0033")["id"]]
    assert json.loads(confirmed[0].details)["homonyms"] == [original["id"]]
    assert json.loads(confirmed[1].details)["homonyms"] == [original["id"], identity(rt, "M0017")["id"]]
    # Three Claire Bernard: three distinct user names.
    assert {original["user_name"], identity(rt, "M0017")["user_name"], identity(rt, "M0033")["user_name"]} == {
        "cbernard", "cbernard2", "cbernard3"}


def test_bad_homonym_flag_is_rejected(hr):
    report = hr(csv_bytes([person(1, homonyme_confirme="peut-être")], header=HEADER + ["homonyme_confirme"]))
    assert report.plan.rejected[0].reasons == ["homonyme_confirme : valeur attendue « oui » ou « non »."]


def test_rpps_held_by_another_identity_is_rejected(rt, session, hr):
    rpps = make_rpps(7)
    create_identity(session, with_rpps=True, rpps=rpps, birth_family_name="Garnier")
    other = make_rpps(8)
    report = hr(csv_bytes([person(1, rpps=rpps), person(2, rpps=other), person(3, rpps=other)]))
    reasons = {r.line: r.reasons[0] for r in report.plan.rejected}
    assert reasons[2].startswith(f"rpps : le numéro RPPS {rpps} est déjà attribué à Claire Garnier")
    assert reasons[4] == f"rpps : le numéro RPPS {other} est déjà attribué à ligne 3 (matricule M0002)."


def test_user_names_follow_the_services_rule_and_avoid_existing_names(rt, session, hr):
    create_identity(session, birth_family_name="Lefèvre-Durand", given_names="Élise", birth_date="1990-01-01")
    report = hr(csv_bytes([person(1, nom_naissance="Lefèvre Durand", prenoms="Emma"),
                           person(2, nom_naissance="Lefevre-Durand", prenoms="Eric", sexe="M")]))
    assert [c.user_name for c in report.plan.changes] == ["elefevredurand2", "elefevredurand3"]
    data = services.validate_identity({"birth_family_name": "O'Brien de la Tour", "given_names": "Zoé",
                                       "birth_date": "1990-01-01", "birth_country": "99134", "gender": "F",
                                       "contract_type": "trainee"})
    assert importer.user_name_base(data) == services._suggest_user_name(session, data) == "zobriendelatour"


# --- updates, ends, idempotence -----------------------------------------------------------------------

def test_update_changes_only_the_changed_fields(rt, hr):
    hr(csv_bytes([person(1), person(2), person(3)]))
    before = {m: identity(rt, m) for m in ("M0001", "M0002", "M0003")}
    count = len(events(rt))
    report = hr(csv_bytes([person(1, email="Nouvelle.Adresse@chu-exemple.fr", unites="POLE-URG|REA"), person(2),
                           person(3, prenoms="Claire  Marie")]))  # extra space: same value once normalised
    assert report.counts() == {"created": 0, "updated": 1, "ended": 0, "unchanged": 2, "rejected": 0}
    assert report.plan.changes[0].fields == ["email", "units"]
    after = identity(rt, "M0001")
    assert after["email"] == "nouvelle.adresse@chu-exemple.fr" and after["units"] == ["POLE-URG", "REA"]
    assert after["version"] == before["M0001"]["version"] + 1
    assert after["user_name"] == before["M0001"]["user_name"] and after["id"] == before["M0001"]["id"]
    assert identity(rt, "M0002") == before["M0002"]
    new_events = events(rt)[count:]
    assert [(e.tag, e.subject) for e in new_events] == [
        (tags.DIRECTORY_IDENTITY_UPDATED, after["id"]), (tags.DIRECTORY_IMPORT_APPLIED, None)]
    assert json.loads(new_events[0].details)["fields"] == ["email", "units"]
    assert new_events[0].actor == "import:rh.csv"
    summary = json.loads(new_events[1].details)
    assert summary["updated"] == 1 and summary["unchanged"] == 2 and summary["mode"] == "all_or_nothing"
    with rt.db.session() as s:
        assert "REA" in set(s.scalars(select(OrgUnit.code)))


def test_absent_optional_column_keeps_the_stored_value(rt, hr):
    hr(csv_bytes([person(1, email="garde@chu-exemple.fr", date_fin="2027-01-31")]))
    header = [c for c in HEADER if c not in ("email", "date_fin", "roles")]
    report = hr(csv_bytes([person(1)], header=header))
    assert report.counts()["unchanged"] == 1
    stored = identity(rt, "M0001")
    assert stored["email"] == "garde@chu-exemple.fr" and stored["end_date"] == "2027-01-31"
    assert stored["roles"] == ["ide"]


def test_empty_cell_clears_the_stored_value(rt, hr):
    hr(csv_bytes([person(1, email="garde@chu-exemple.fr")]))
    report = hr(csv_bytes([person(1, email="")]))
    assert report.plan.changes[0].fields == ["email"] and identity(rt, "M0001")["email"] is None


def test_passed_end_date_ends_the_identity(rt, hr):
    hr(csv_bytes([person(1, contrat="CDD", date_fin="2027-06-30"), person(2, contrat="CDD", date_fin="2027-06-30"),
                  person(3, date_debut="2027-01-01")]))
    assert identity(rt, "M0003")["status"] == "pending"
    count = len(events(rt))
    report = hr(csv_bytes([person(1, contrat="CDD", date_fin="2026-11-27"),
                           person(2, contrat="CDD", date_fin="2026-11-20", email="x@chu-exemple.fr"),
                           person(3, date_debut="2027-01-01")]))
    assert report.counts() == {"created": 0, "updated": 0, "ended": 2, "unchanged": 1, "rejected": 0}
    first, second = identity(rt, "M0001"), identity(rt, "M0002")
    assert first["status"] == "suspended" and first["end_date"] == "2026-11-27"
    assert first["status_reason"] == importer.END_REASON
    assert first["version"] == 3  # created 1, ended +1, suspended +1: as services.end counts
    assert second["status"] == "suspended" and second["email"] == "x@chu-exemple.fr" and second["version"] == 4
    new = [(e.tag, e.subject) for e in events(rt)[count:]]
    assert new == [
        (tags.DIRECTORY_IDENTITY_ENDED, first["id"]), (tags.DIRECTORY_IDENTITY_SUSPENDED, first["id"]),
        (tags.DIRECTORY_IDENTITY_UPDATED, second["id"]), (tags.DIRECTORY_IDENTITY_ENDED, second["id"]),
        (tags.DIRECTORY_IDENTITY_SUSPENDED, second["id"]), (tags.DIRECTORY_IMPORT_APPLIED, None)]
    assert json.loads(events(rt, tags.DIRECTORY_IDENTITY_UPDATED)[-1].details)["fields"] == ["email"]
    # The daily job marks them departed once the grace period is over, like any ended contract.
    with rt.db.session() as s:
        services.run_lifecycle(s, today=TODAY + dt.timedelta(days=31), grace_days=30)
    assert identity(rt, "M0001")["status"] == "departed"
    # Re-importing the same file does not end them a second time.
    assert hr(csv_bytes([person(1, contrat="CDD", date_fin="2026-11-27")])).counts()["unchanged"] == 1


def test_new_row_whose_contract_already_ended_is_created_suspended(rt, hr):
    report = hr(csv_bytes([person(1, contrat="CDD", date_debut="2026-01-01", date_fin="2026-10-31")]))
    assert report.counts()["created"] == 1
    stored = identity(rt, "M0001")
    assert stored["status"] == "suspended" and stored["end_date"] == "2026-10-31"
    assert [e.tag for e in events(rt)] == [tags.DIRECTORY_IDENTITY_CREATED, tags.DIRECTORY_IDENTITY_ENDED,
                                           tags.DIRECTORY_IDENTITY_SUSPENDED, tags.DIRECTORY_IMPORT_APPLIED]


def test_reimport_is_idempotent(rt, hr, tmp_path):
    content = csv_bytes([person(i, rpps=make_rpps(i) if i % 2 else "") for i in range(1, 21)])
    first = hr(content)
    assert first.counts()["created"] == 20
    before = state(rt)
    second = hr(content)
    assert second.counts() == {"created": 0, "updated": 0, "ended": 0, "unchanged": 20, "rejected": 0}
    assert second.exit_code == 0 and second.events == 0
    assert state(rt) == before  # no new journal event, no version bump


def test_changing_the_rpps_of_an_identity(rt, hr):
    old, new = make_rpps(21), make_rpps(22)
    hr(csv_bytes([person(1, rpps=old), person(2)]))
    report = hr(csv_bytes([person(1, rpps=new), person(2, rpps=old)]))
    # M0001 releases its number before M0002 takes it, in file order.
    assert report.counts()["updated"] == 2
    assert identity(rt, "M0001")["rpps"] == new and identity(rt, "M0002")["rpps"] == old
    assert identity(rt, "M0002")["population"] == "rpps"


def test_rename_onto_an_existing_identity_needs_confirmation(rt, hr):
    hr(csv_bytes([person(1), person(2)]))
    renamed = person(2, nom_naissance="Bernard", date_naissance="1980-01-02")
    report = hr(csv_bytes([person(1), renamed]))
    assert report.plan.rejected[0].line == 3 and "homonyme possible" in report.plan.rejected[0].reasons[0]
    header = HEADER + ["homonyme_confirme"]
    report = hr(csv_bytes([person(1), renamed | {"homonyme_confirme": "oui"}], header=header))
    assert report.counts()["updated"] == 1
    assert len(events(rt, tags.DIRECTORY_IDENTITY_HOMONYM_CONFIRMED)) == 1


# --- modes ---------------------------------------------------------------------------------------------

def test_all_or_nothing_partial_and_dry_run(rt, hr):
    hr(csv_bytes([person(1)]))
    before = state(rt)
    content = csv_bytes([person(1, email="change@chu-exemple.fr"), person(2), person(3, sexe="?")])

    refused = hr(content)
    assert refused.mode == "all_or_nothing" and not refused.applied and refused.exit_code == 1
    assert state(rt) == before

    dry = hr(content, dry_run=True)
    assert dry.mode == "dry_run" and not dry.applied and dry.exit_code == 1
    assert [a["action"] for a in dry.as_dict()["actions"]] == ["updated", "created"]
    assert state(rt) == before

    clean_dry = hr(csv_bytes([person(1), person(2)]), dry_run=True)
    assert clean_dry.exit_code == 0 and not clean_dry.applied and state(rt) == before

    partial = hr(content, partial=True)
    assert partial.applied and partial.exit_code == 1
    assert partial.counts() == {"created": 1, "updated": 1, "ended": 0, "unchanged": 0, "rejected": 1}
    assert identity(rt, "M0001")["email"] == "change@chu-exemple.fr" and identity(rt, "M0002")
    summary = json.loads(events(rt, tags.DIRECTORY_IMPORT_APPLIED)[-1].details)
    assert summary["rejected"] == 1 and summary["rejected_lines"] == [4] and summary["mode"] == "partial"


def test_report_as_dict(hr):
    report = hr(csv_bytes([person(1), person(2, rpps="1")]), dry_run=True).as_dict()
    assert report["counts"]["created"] == 1 and report["rejected"][0]["line"] == 3
    assert report["actions"] == [{"line": 2, "matricule": "M0001", "action": "created",
                                  "id": report["actions"][0]["id"], "user_name": "cbernard", "status": "active"}]
    json.dumps(report)  # one JSON document


def test_directory_changed_between_planning_and_writing(rt, hr, tmp_path):
    hr(csv_bytes([person(1)]))
    before_import = state(rt)
    with rt.db.session() as s:
        parsed = importer.parse_hr_csv(csv_bytes([person(1, email="a@chu-exemple.fr")]), name="x.csv", today=TODAY)
        plan = importer.plan_import(parsed, importer.load_index(s), today=TODAY)
        # Another process modifies the identity after the plan was made.
        s.execute(update(Identity).where(Identity.external_id == "M0001").values(version=Identity.version + 1))
        with pytest.raises(Conflict, match="relancez"):
            importer.apply_plan(s, plan, actor="import:x.csv", summary={})
        s.rollback()
    assert state(rt) == before_import


def test_matricule_created_elsewhere_during_the_import(rt, session, hr):
    parsed = importer.parse_hr_csv(csv_bytes([person(1), person(2)]), name="x.csv", today=TODAY)
    with rt.db.session() as s:
        plan = importer.plan_import(parsed, importer.load_index(s), today=TODAY)
    create_identity(session, external_id="M0002", birth_family_name="Concurrent")  # committed meanwhile
    before = state(rt)
    with pytest.raises(Conflict, match="modifié pendant l'import"):
        with rt.db.session() as s:
            importer.apply_plan(s, plan, actor="import:x.csv", summary={})
    assert state(rt) == before


# --- volume and the generator --------------------------------------------------------------------------

def test_generated_file_imports_entirely_and_the_journal_verifies(rt, hr, tmp_path):
    path = generate_hr_csv(tmp_path / "rh.csv", 600, seed=3, today=TODAY)
    parsed = importer.read_hr_file(path, today=TODAY)
    assert [r.errors for r in parsed.rows if r.errors] == []
    assert {r.data.contract_type for r in parsed.rows} == {
        "permanent", "fixed_term", "replacement", "interim", "vacataire", "trainee", "contractor"}
    with_rpps = sum(1 for r in parsed.rows if r.data.rpps)
    assert 0.35 < with_rpps / 600 < 0.55
    report = hr(path.read_bytes())
    assert report.exit_code == 0 and report.counts()["rejected"] == 0
    assert report.counts()["created"] == 600
    with rt.db.session() as s:
        assert s.scalar(select(func.count()).select_from(Identity)) == 600
        assert s.scalar(select(func.count()).select_from(IdentityEstablishment)) >= 600
        chain = audit.verify(s)
    assert chain.ok and chain.checked == report.events
    # Ended contracts of the file were ended at once.
    assert any(c.ends for c in report.plan.changes)
    assert hr(path.read_bytes()).counts()["unchanged"] == 600


def test_generator_is_deterministic_and_mixes_labels():
    first, again = generate_hr_rows(200, seed=5, today=TODAY), generate_hr_rows(200, seed=5, today=TODAY)
    assert first == again
    assert {r["contrat"] for r in generate_hr_rows(2000, seed=1, today=TODAY)} == {label for label, _ in CONTRACTS}
