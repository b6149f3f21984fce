"""Exports of the trajectory: CSV streamed line by line, JSON-ready values, the printable HTML report (pure:
plain values in, text out; the rows come from :mod:`hospiconnect.trajectory.services`).

CSV for French spreadsheets: ``;`` as separator (``,`` is the decimal mark in French Excel), a UTF-8 byte order
mark first (without it Excel reads UTF-8 as Windows-1252 and breaks every accent), CRLF line ends, decimals with
a comma. Each generator yields one line at a time, so 100,000 rows never sit in memory; the web pages hand the
generator to a streamed response, the CLI writes it out.

Dates: the indicator series (machine series, read back by scripts and charted) carry ISO dates (AAAA-MM-JJ):
unambiguous, sortable as text, read by every tool, and recognised as dates by French Excel too. The people
list (read by IT staff planning enrollment sessions) carries JJ/MM/AAAA, the French form.

Cells are text except counts: a text cell beginning with ``=``, ``+``, ``-``, ``@`` (or a tab or carriage
return) gets a leading apostrophe so a spreadsheet never runs a name from the HR file as a formula (CSV
injection).
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Protocol

from hospiconnect.directory.validation import CONTRACT_TYPES
from hospiconnect.trajectory.indicators import STATUS_LABELS_FR, indicator_label_fr

BOM = "\ufeff"
SEPARATOR = ";"
TEMPLATES = Path(__file__).parent / "templates"

SERIES_COLUMNS = ("jour", "indicateur", "libellé", "dimension", "valeur", "nombre")
COVERAGE_COLUMNS = ("jour", "actives", "conformes", "part conforme (%)")
PEOPLE_COLUMNS = ("Nom", "Identifiant de connexion", "Statut", "Motif", "RPPS", "Identité nationale",
                  "Type de contrat", "Unités", "Pôles", "Établissements (FINESS)", "Rôles", "MIE actifs", "Constat du",
                  "Identifiant HospiConnect")
REPORT_COLUMNS = ("jour", "indicateur", "libellé", "dimension", "valeur", "nombre", "part des actives (%)")

#: Why a person is not compliant: the compliance reason codes of the policy (hospiconnect.policies.context
#: REASON_CODES) and the two statuses that are not about an MIE.
REASON_LABELS_FR: dict[str, str] = {
    "": "",
    "exception": "Dérogation en vigueur",
    "enrollment": "Remise de MIE en cours",
    "no_mie": "Aucun MIE",
    "mie_not_active": "MIE non actif",
    "mie_single_factor": "Mot de passe seul (un facteur)",
    "mie_type_unknown": "Type de MIE non déclaré par la politique",
    "mie_type_not_allowed": "Type de MIE non accepté",
    "mie_type_not_homologated": "Type de MIE non homologué",
    "mie_level_too_low": "Niveau du MIE insuffisant",
    "mie_not_proofed": "MIE remis sans vérification d'identité",
}

MIE_KIND_LABELS_FR: dict[str, str] = {
    "password": "mot de passe",
    "totp": "application TOTP",
    "webauthn": "FIDO2",
    "webauthn:platform": "FIDO2 intégré à l'appareil",
    "webauthn:cross-platform": "clé de sécurité FIDO2",
    "cps": "carte CPS",
    "e-cps": "e-CPS",
}


class SeriesRowLike(Protocol):
    day: dt.date
    indicator: str
    dimension: str
    value: str
    count: int


class PersonRowLike(Protocol):
    public_id: str
    display_name: str
    user_name: str
    day: dt.date
    status: str
    reason: str
    rpps: bool
    contract_type: str
    units: tuple[str, ...]
    poles: tuple[str, ...]
    roles: tuple[str, ...]
    establishments: tuple[str, ...]
    mie_types: tuple[str, ...]
    psc_paired: bool


class _Echo:
    """A file whose ``write`` returns its argument, so that ``csv.writer.writerow`` returns the line."""

    def write(self, text: str) -> str:
        return text


def _writer() -> Any:
    return csv.writer(_Echo(), delimiter=SEPARATOR, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)


def safe_cell(value: Any) -> Any:
    """A cell as written: ``None`` → empty, text starting like a formula → prefixed by an apostrophe."""
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def fr_decimal(value: float | None, digits: int = 1) -> str:
    """``62.5`` → ``62,5`` (French Excel reads it as a number); None → empty."""
    if value is None:
        return ""
    return f"{value:.{digits}f}".replace(".", ",")


def fr_date(day: dt.date | None) -> str:
    return f"{day:%d/%m/%Y}" if day else ""


def _lines(columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> Iterator[str]:
    writer = _writer()
    yield BOM + writer.writerow(list(columns))
    for row in rows:
        yield writer.writerow([safe_cell(v) for v in row])


def capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]


def indicator_label(indicator: str) -> str:
    """The French label of an indicator, capitalised (``mie_active:totp`` and ``signins:health-data`` included)."""
    return capitalized(indicator_label_fr(indicator))


def status_label(status: str) -> str:
    """« Conforme », « Non conforme »… (the core's labels, capitalised)."""
    return capitalized(STATUS_LABELS_FR.get(status, status))


# --- CSV ---------------------------------------------------------------------------------------------------


def series_csv(rows: Iterable[SeriesRowLike]) -> Iterator[str]:
    """Stream the indicator series as CSV: one line per (day, indicator, dimension, value), ISO dates."""
    return _lines(SERIES_COLUMNS, (
        (r.day.isoformat(), r.indicator, indicator_label(r.indicator), r.dimension, r.value, r.count)
        for r in rows))


def coverage_csv(points: Iterable[Any]) -> Iterator[str]:
    """Stream coverage points (``day``, ``active``, ``compliant``, ``share``) as CSV, ISO dates."""
    return _lines(COVERAGE_COLUMNS, (
        (p.day.isoformat(), p.active, p.compliant, fr_decimal(p.share)) for p in points))


def _codes(values: Iterable[str]) -> str:
    return ", ".join(values)


def national_identity_label(paired: bool) -> str:
    """The people list's « Identité nationale » column: paired with Pro Santé Connect, or not."""
    return "associée" if paired else "non associée"


def person_cells(row: PersonRowLike) -> list[Any]:
    """The people CSV's cells for one person (French values); « Identité nationale » says whether the identity
    was paired with Pro Santé Connect on the day of the statuses."""
    return [row.display_name, row.user_name, status_label(row.status),
            REASON_LABELS_FR.get(row.reason or "", row.reason or ""), "oui" if row.rpps else "non",
            national_identity_label(row.psc_paired), CONTRACT_TYPES.get(row.contract_type, row.contract_type),
            _codes(row.units), _codes(row.poles), _codes(row.establishments), _codes(row.roles),
            _codes(MIE_KIND_LABELS_FR.get(t, t) for t in row.mie_types), fr_date(row.day), row.public_id]


def people_csv(rows: Iterable[PersonRowLike]) -> Iterator[str]:
    """Stream the people list (the latest snapshot's per-person statuses) as CSV with French columns."""
    return _lines(PEOPLE_COLUMNS, (person_cells(r) for r in rows))


def report_csv(report: Mapping[str, Any]) -> Iterator[str]:
    """Stream the report's figures of its day (every indicator, every breakdown) as CSV, ISO dates."""
    day = report.get("day") or ""
    return _lines(REPORT_COLUMNS, (
        (day, f["indicator"], indicator_label(f["indicator"]), f["dimension"], f["value"], f["count"],
         fr_decimal(f.get("share"))) for f in report.get("figures", ())))


# --- JSON --------------------------------------------------------------------------------------------------


def series_json(rows: Iterable[SeriesRowLike]) -> list[dict[str, Any]]:
    """Group series rows into ``[{indicator, label, dimension, value, points: [[AAAA-MM-JJ, n], …]}]``, in the
    order the keys first appear (services yield them sorted by key, then day)."""
    grouped: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in rows:
        key = (r.indicator, r.dimension, r.value)
        entry = grouped.get(key)
        if entry is None:
            entry = grouped[key] = {"indicator": r.indicator, "label": indicator_label(r.indicator),
                                    "dimension": r.dimension, "value": r.value, "points": []}
        entry["points"].append([r.day.isoformat(), r.count])
    return list(grouped.values())


def person_json(row: PersonRowLike) -> dict[str, Any]:
    return {"id": row.public_id, "display_name": row.display_name, "user_name": row.user_name,
            "day": row.day.isoformat(), "status": row.status, "status_label": status_label(row.status),
            "reason": row.reason, "reason_label": REASON_LABELS_FR.get(row.reason or "", row.reason or ""),
            "rpps": row.rpps, "psc_paired": row.psc_paired, "contract_type": row.contract_type,
            "units": list(row.units),
            "poles": list(row.poles), "roles": list(row.roles), "establishments": list(row.establishments),
            "mie_types": list(row.mie_types)}


# --- HTML --------------------------------------------------------------------------------------------------


def report_html(report: Mapping[str, Any], *, charts: Mapping[str, str] | None = None) -> str:
    """Render the printable report (a standalone HTML page with print styles) from :func:`services.report`.

    ``charts``: optional SVG documents (``coverage``, ``breakdown``) drawn by a chart library, inserted as they
    are; without them the report shows its figures as tables only.
    """
    import jinja2
    from markupsafe import Markup

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["fr_decimal"] = fr_decimal
    env.filters["fr_date"] = lambda iso: fr_date(dt.date.fromisoformat(iso)) if iso else ""
    env.filters["thousands"] = lambda n: f"{n:,}".replace(",", "\u202f") if isinstance(n, int) else n
    svg = {name: Markup(text) for name, text in (charts or {}).items()}
    return env.get_template("report.html").render(r=report, charts=svg)
