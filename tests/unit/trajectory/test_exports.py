"""Exports of the trajectory (hospiconnect.trajectory.exports), pure parts: CSV for French spreadsheets streamed
line by line, JSON builders, the printable report rendered from a report dictionary."""

from __future__ import annotations

import csv
import datetime as dt
import io
import types

from hospiconnect.trajectory import exports
from hospiconnect.trajectory.services import CoveragePoint, PersonRow, SeriesRow

D = dt.date.fromisoformat


def read(lines) -> list[list[str]]:  # type: ignore[no-untyped-def]
    text = "".join(lines)
    assert text.startswith("\ufeff")
    return list(csv.reader(io.StringIO(text[1:], newline=""), delimiter=";"))


def person(**overrides) -> PersonRow:  # type: ignore[no-untyped-def]
    values = dict(identity_id=1, public_id="0b8f-uuid", display_name="Claire Martin", user_name="cmartin",
                  day=D("2026-11-27"), status="non_compliant", reason="mie_single_factor", rpps=False,
                  contract_type="interim", units=("CARDIO", "URG"), poles=("POLE-MED",), roles=("ide",),
                  establishments=("750712184",), mie_types=("password",))
    values.update(overrides)
    return PersonRow(**values)


def test_series_csv_streams_one_line_per_row_with_iso_dates() -> None:
    rows = [SeriesRow(D("2026-11-26"), "compliant", "all", "", 120),
            SeriesRow(D("2026-11-27"), "mie_active:totp", "unit", "CARDIO", 7)]
    lines = exports.series_csv(iter(rows))
    assert not isinstance(lines, list)  # a generator: the web page streams it
    first = next(lines)
    assert first == "\ufeffjour;indicateur;libellé;dimension;valeur;nombre\r\n"
    rest = list(lines)
    assert len(rest) == 2 and all(line.endswith("\r\n") for line in rest)
    table = read([first, *rest])
    assert table[1] == ["2026-11-26", "compliant", "Avec un MIE conforme", "all", "", "120"]
    assert table[2] == ["2026-11-27", "mie_active:totp", "MIE actifs : application TOTP", "unit", "CARDIO", "7"]


def test_people_csv_has_french_columns_and_values() -> None:
    rows = [person(), person(identity_id=2, display_name="Jean Dupont; fils", user_name="jdupont", rpps=True,
                             psc_paired=True, status="pending", reason="enrollment", contract_type="permanent",
                             units=(), poles=(), mie_types=("password", "webauthn:platform"))]
    table = read(exports.people_csv(rows))
    assert table[0] == ["Nom", "Identifiant de connexion", "Statut", "Motif", "RPPS", "Identité nationale",
                        "Type de contrat", "Unités", "Pôles", "Établissements (FINESS)", "Rôles", "MIE actifs",
                        "Constat du", "Identifiant HospiConnect"]
    assert table[1] == ["Claire Martin", "cmartin", "Non conforme", "Mot de passe seul (un facteur)", "non",
                        "non associée", "Intérim", "CARDIO, URG", "POLE-MED", "750712184", "ide", "mot de passe",
                        "27/11/2026", "0b8f-uuid"]
    # A ";" inside a value is quoted, not a new column.
    assert table[2][:7] == ["Jean Dupont; fils", "jdupont", "Enrôlement en cours", "Remise de MIE en cours", "oui",
                            "associée", "CDI ou titulaire"]
    assert table[2][11] == "mot de passe, FIDO2 intégré à l'appareil"


def test_cells_that_look_like_formulas_are_neutralised() -> None:
    table = read(exports.people_csv([person(display_name="=HYPERLINK(\"http://x\")", user_name="@cmd",
                                            roles=("-2+3",))]))
    assert table[1][0] == "'=HYPERLINK(\"http://x\")"
    assert table[1][1] == "'@cmd"
    assert table[1][10] == "'-2+3"
    assert exports.safe_cell(-3) == -3 and exports.safe_cell(None) == ""


def test_coverage_and_report_csv_use_decimal_commas() -> None:
    table = read(exports.coverage_csv([CoveragePoint(D("2026-11-27"), 8, 5, 62.5),
                                       CoveragePoint(D("2026-11-28"), 0, 0, None)]))
    assert table[0] == ["jour", "actives", "conformes", "part conforme (%)"]
    assert table[1:] == [["2026-11-27", "8", "5", "62,5"], ["2026-11-28", "0", "0", ""]]
    report = {"day": "2026-11-27", "figures": [
        {"indicator": "compliant", "dimension": "unit", "value": "CARDIO", "count": 3, "share": 37.5},
        {"indicator": "signins:health-data", "dimension": "all", "value": "", "count": 40, "share": None}]}
    table = read(exports.report_csv(report))
    assert table[0][-1] == "part des actives (%)"
    assert table[1] == ["2026-11-27", "compliant", "Avec un MIE conforme", "unit", "CARDIO", "3", "37,5"]
    assert table[2] == ["2026-11-27", "signins:health-data", "Connexions (health-data)", "all", "", "40", ""]
    # No snapshot yet: the header alone.
    assert read(exports.report_csv({"day": None, "figures": []})) == [list(exports.REPORT_COLUMNS)]


def test_series_json_groups_points_by_key() -> None:
    rows = [SeriesRow(D("2026-11-26"), "active", "all", "", 10), SeriesRow(D("2026-11-27"), "active", "all", "", 11),
            SeriesRow(D("2026-11-27"), "active", "unit", "CARDIO", 4)]
    assert exports.series_json(rows) == [
        {"indicator": "active", "label": "Identités actives", "dimension": "all", "value": "",
         "points": [["2026-11-26", 10], ["2026-11-27", 11]]},
        {"indicator": "active", "label": "Identités actives", "dimension": "unit", "value": "CARDIO",
         "points": [["2026-11-27", 4]]}]
    data = exports.person_json(person())
    assert (data["status_label"], data["reason_label"], data["units"], data["day"], data["psc_paired"]) == (
        "Non conforme", "Mot de passe seul (un facteur)", ["CARDIO", "URG"], "2026-11-27", False)
    assert exports.person_json(person(psc_paired=True))["psc_paired"] is True


def sample_report() -> dict:  # type: ignore[type-arg]
    projection = {"explanation_fr": "Au rythme actuel (3,5 points par semaine), l'objectif de 100 % serait atteint "
                                    "le 01/03/2027.", "slope_per_week": 3.5}
    return {
        "title": "Trajectoire", "as_of": "2026-11-27", "day": "2026-11-27", "generated_at": "x",
        "generated_at_fr": "27/11/2026 à 10:00", "policy": {"name": "RIE <2026>", "digest": "ab" * 32},
        "projection_method_fr": "droite des moindres carrés", "signins_days": 30,
        "headline": {"active": 1200, "compliant": 750, "compliant_share": 62.5, "exempt": 10, "pending": 40,
                     "non_compliant": 400, "proofed": 700, "proofed_share": 58.3, "password_only": 390,
                     "password_only_share": 32.5, "rpps_linked": 300, "rpps_share": 25.0, "psc_paired": 126,
                     "psc_share": 10.5, "exceptions_active": 3,
                     "emergency_issued": 1, "emergency_unreviewed": 1, "emergency_reviewed": 0},
        "statuses": [{"status": "compliant", "label": "Conforme", "count": 750, "share": 62.5}],
        "targets": [{"source": "policy", "id": "rie", "label": "Tous conformes", "due": "2026-01-01", "percent": 100,
                     "scope_fr": "MIE conforme", "current_share": 62.5, "gap": 37.5, "people_missing": 450,
                     "met": False, "overdue": True, "projection_fr": "Après l'échéance."}],
        "projections": [{"label": "Toutes les identités actives", "active": 1200, "current_share": 62.5,
                         "projection": projection}],
        "largest_gaps": [{"value": "CARDIO", "label": "Cardiologie", "active": 80, "compliant": 20, "share": 25.0,
                          "missing": 60}],
        "mie_types": [{"label": "Application TOTP", "count": 700, "status_fr": "homologué par l'établissement"}],
        "signins": [{"label": "Données de santé", "total": 5000, "mfa_share": 90.0, "password_only": 500}],
        "password_only_clients": [{"client_id": "dpi", "count": 500}],
        "coverage": [], "figures": [],
        "coverage_weekly": [{"day": "2026-11-20", "active": 1190, "compliant": 700, "share": 58.8},
                            {"day": "2026-11-27", "active": 1200, "compliant": 750, "share": 62.5}],
    }


def test_report_html_is_a_printable_page_with_the_figures() -> None:
    html = exports.report_html(sample_report())
    assert html.startswith("<!doctype html>") and '<html lang="fr">' in html
    assert "@media print" in html and "@page" in html
    assert "62,5 %" in html and "1\u202f200" in html and "Cardiologie" in html
    assert "en retard" in html and "01/01/2026" in html and "27/11/2026" in html
    assert "RIE &lt;2026&gt;" in html  # escaped
    assert "dpi (500)" in html
    assert "10,5 %" in html and "associées à leur identité nationale Pro Santé Connect (126)" in html
    assert "Semaine du" in html and "20/11/2026" in html and "58,8 %" in html
    assert "<svg" not in html
    with_chart = exports.report_html(sample_report(), charts={"coverage": "<svg id='c'></svg>"})
    assert "<svg id='c'></svg>" in with_chart


def test_report_html_without_a_snapshot_says_so() -> None:
    empty = {**sample_report(), "day": None, "headline": None, "targets": []}
    html = exports.report_html(empty)
    assert "Aucun relevé n'a encore été pris" in html
    assert "Chiffres clés" not in html


def test_helpers() -> None:
    assert exports.fr_decimal(12.345) == "12,3" and exports.fr_decimal(None) == ""
    assert exports.fr_date(D("2026-03-01")) == "01/03/2026" and exports.fr_date(None) == ""
    assert isinstance(exports.series_csv([]), types.GeneratorType)
