"""The RSSI's trajectory pages (``/securite/trajectoire``): where the establishment stands on MFA coverage and RIE
compliance, over time — a dashboard with its charts, the list of people still to equip and its CSV, the series
as CSV and JSON, a printable report, and the RSSI's own targets.

Guarded exactly as the other RSSI pages (:func:`hospiconnect.web.security_pages.guard`: role ``rssi``, a second
factor within ``settings.recent_mfa_minutes``, never a recovery-code or emergency session). Everything shown is
read from the stored snapshots through :mod:`hospiconnect.trajectory.services` (no compliance is computed here,
so a page costs a few indexed queries whatever the size of the directory); the only write is a target added or
removed, through the services, which journal it.

Charts are SVG drawn by pygal (:mod:`hospiconnect.web.trajectory_charts`), each served as its own response with
a Content-Security-Policy that allows inline styles and nothing else; the pages show them with ``<img alt>``
and repeat their numbers in a table. Exports are streamed from a session of their own, so 100,000 rows never
sit in memory (the request's session keeps what it loads until the request ends).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from typing import Any, Callable, Iterable, Iterator

from flask import Blueprint, Response, abort, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response as BaseResponse

from hospiconnect import appctx, policies_runtime
from hospiconnect.db import utcnow
from hospiconnect.directory.validation import CONTRACT_TYPES
from hospiconnect.errors import HospiConnectError, NotFound, ValidationError
from hospiconnect.policies import Policy
from hospiconnect.policies.policy import TARGET_DIMENSIONS, TARGET_INDICATORS
from hospiconnect.trajectory import exports, services
from hospiconnect.trajectory.indicators import DIMENSION_LABELS_FR, DIMENSIONS, STATUSES
from hospiconnect.web import trajectory_charts as charts
from hospiconnect.web import trajectory_figures as figures
from hospiconnect.web.enrollment_common import PUBLIC_ID_RE, clean
from hospiconnect.web.security_pages import RSSI_ROLE, agent_context, current_agent, guard, no_store

bp = Blueprint("trajectory", __name__, url_prefix="/securite/trajectoire")

PAGE_SIZE = 50
#: The coverage chart's longest period (days, the latest snapshot day included).
MAX_DAYS = 365
MAX_ARG_CHARS = 100
#: The people list's status filter: « à traiter » (non-compliant or pending) unless told otherwise.
STATUS_FILTERS: dict[str, tuple[str, ...]] = {"a_traiter": ("non_compliant", "pending"),
                                              **{s: (s,) for s in STATUSES}, "tous": STATUSES}
STATUS_FILTER_LABELS = {"a_traiter": "À traiter (non conformes et enrôlement en cours)",
                        **{s: exports.status_label(s) for s in STATUSES}, "tous": "Tous les statuts"}
RPPS_FILTERS = {"oui": True, "non": False}
#: The people list's « Identité nationale » filter: paired with Pro Santé Connect on the statuses' day, or not.
PSC_FILTERS = {"oui": True, "non": False}
CHARTS = ("couverture", "repartition", "appairage")
#: Dimensions a breakdown chart can show (``all`` has a single value).
BREAKDOWN_DIMENSIONS = tuple(d for d in DIMENSIONS if d != "all")
#: Indicators the series exports may be asked for: the stored names (``mie_active:webauthn:platform``…).
_INDICATOR_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_:-.")
REPORT_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; "
              "form-action 'none'; frame-ancestors 'none'")


@bp.before_request
def _load_rssi() -> tuple[str, int] | None:
    return guard(RSSI_ROLE)


bp.after_request(no_store)
bp.context_processor(agent_context)


# --- reading the request ---------------------------------------------------------------------------------


def _arg(name: str, limit: int = MAX_ARG_CHARS) -> str:
    """A query parameter, cleaned; refused (400, French page) when longer than ``limit``."""
    raw = request.args.get(name, "")
    text = clean(raw[:limit * 2]).strip()
    if len(text) > limit:
        raise ValidationError(f"Le paramètre « {name} » ne doit pas dépasser {limit} caractères.", field=name,
                              code="too_long")
    return text


def _day_arg(name: str) -> dt.date | None:
    text = _arg(name, 10)
    if not text:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ValidationError(f"Date illisible « {text} » pour « {name} » : attendu AAAA-MM-JJ.", field=name,
                              code="bad_date") from None


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    text = _arg(name, 10)
    if not text:
        return default
    if not text.isdecimal() or not low <= int(text) <= high:
        raise ValidationError(f"« {name} » doit être un nombre entier de {low} à {high}.", field=name,
                              code="bad_number")
    return int(text)


def _population(dimension: str, value: str) -> tuple[str, str]:
    """Check a breakdown key given in a query: a known dimension; a value, except for ``all``."""
    dimension = dimension or "all"
    if dimension not in DIMENSIONS:
        raise ValidationError(f"Dimension inconnue « {dimension} » (attendu : {', '.join(DIMENSIONS)}).",
                              field="dimension", code="dimension_unknown")
    if dimension == "all":
        return "all", ""
    if not value:
        raise ValidationError(f"Indiquez la valeur de la dimension « {dimension} ».", field="valeur",
                              code="value_required")
    return dimension, value


def _policy() -> Policy:
    return policies_runtime.current_policy()


def _today(policy: Policy) -> dt.date:
    return policy.local_day(utcnow())


def _stream(chunks: Callable[[Session], Iterable[str]]) -> Iterator[str]:
    """Run an export on a session of its own, closed when the response ends: the request's session keeps every
    object it loads until the request ends, which would hold the whole export in memory."""
    maker = appctx.runtime().db.sessionmaker

    def generate() -> Iterator[str]:
        session = maker()
        try:
            yield from chunks(session)
        finally:
            session.rollback()
            session.close()

    return generate()


def _attachment(body: Iterator[str], mimetype: str, filename: str) -> Response:
    return Response(body, mimetype=mimetype, headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def _svg(svg: str) -> Response:
    response = Response(svg, mimetype="image/svg+xml")
    response.headers["Content-Security-Policy"] = charts.SVG_CSP
    return response


# --- what the pages and the charts share ------------------------------------------------------------------


def _coverage_points(session: Session, day: dt.date, dimension: str, value: str,
                     days: int = MAX_DAYS) -> list[services.CoveragePoint]:
    return services.coverage(session, day - dt.timedelta(days=days - 1), day, dimension, value)


def _milestones(session: Session, policy: Policy, dimension: str, value: str,
                indicator: str = services.COMPLIANT) -> list[tuple[str, dt.date, float]]:
    """The targets (policy file's and RSSI's) of one breakdown counted by ``indicator``, for its chart."""
    found = [(t.label, t.due, float(t.percent)) for t in policy.targets
             if (t.dimension, t.value, t.indicator) == (dimension, value, indicator)]
    found += [(t.label, t.due, float(t.percent)) for t in services.list_targets(session)
              if (t.dimension, t.value, t.indicator) == (dimension, value, indicator)]
    return found


def _coverage_svg(session: Session, policy: Policy, day: dt.date, dimension: str, value: str, *,
                  days: int = MAX_DAYS) -> str:
    points = _coverage_points(session, day, dimension, value, days)
    projection = services.project_coverage(points, today=day)
    label = services.population_label(dimension, value, services.value_labels(session, dimension, [value]))
    return charts.coverage_chart([(p.day, p.share) for p in points if p.share is not None],
                                 line=projection.line, slope_per_day=projection.slope_per_day,
                                 milestones=_milestones(session, policy, dimension, value),
                                 title=f"Part conforme — {label}")


def _pairing_points(session: Session, day: dt.date, dimension: str, value: str,
                    days: int = MAX_DAYS) -> list[services.CoveragePoint]:
    return services.pairing(session, day - dt.timedelta(days=days - 1), day, dimension, value)


def _pairing_svg(session: Session, policy: Policy, day: dt.date, dimension: str, value: str, *,
                 days: int = MAX_DAYS) -> str:
    """The share of active identities paired with Pro Santé Connect over time (no projection: not everyone can
    pair, so a line toward 100 % would say nothing), with the milestones of the pairing targets."""
    points = _pairing_points(session, day, dimension, value, days)
    label = services.population_label(dimension, value, services.value_labels(session, dimension, [value]))
    return charts.coverage_chart([(p.day, p.share) for p in points if p.share is not None],
                                 milestones=_milestones(session, policy, dimension, value, services.PSC_PAIRED),
                                 title=f"Part associée à Pro Santé Connect — {label}",
                                 series="Part associée à Pro Santé Connect (%)")


def _breakdown_rows(session: Session, day: dt.date, dimension: str) -> list[services.BreakdownRow]:
    """The values of a breakdown as its chart shows them: those with someone active, lowest share first; at
    most :data:`charts.MAX_BARS`, keeping those with the most people still to cover."""
    rows = [r for r in services.breakdown(session, day, dimension) if r.active]
    if len(rows) > charts.MAX_BARS:
        rows = sorted(rows, key=lambda r: (-r.missing, r.value))[:charts.MAX_BARS]
    return sorted(rows, key=lambda r: (r.share if r.share is not None else 0.0, r.label))


def _breakdown_svg(rows: list[services.BreakdownRow], dimension: str) -> str:
    return charts.breakdown_chart([(r.label, r.share) for r in rows],
                                  title=f"Part conforme par {DIMENSION_LABELS_FR.get(dimension, dimension)}")


def report_charts(session: Session, policy: Policy, data: dict[str, Any]) -> dict[str, str]:
    """The charts of the printable report ``data`` (:func:`hospiconnect.trajectory.services.report`): coverage over
    time and the share by contract type, as SVG; none without a snapshot. Shared with ``trajectory report
    --format html``."""
    if data["day"] is None:
        return {}
    day = dt.date.fromisoformat(data["day"])
    return {"coverage": _coverage_svg(session, policy, day, "all", ""),
            "breakdown": _breakdown_svg(_breakdown_rows(session, day, "contract_type"), "contract_type")}


# --- the dashboard ----------------------------------------------------------------------------------------


@bp.get("", strict_slashes=False)
def dashboard() -> tuple[str, int]:
    """Headline figures, coverage over time with targets and projection, breakdowns, largest gaps, targets."""
    session = appctx.db_session()
    policy = _policy()
    today = _today(policy)
    picked = _arg("population")
    dimension, _sep, value = picked.partition(":")
    dimension, value = _population(dimension, value)
    data = services.report(session, policy, today)
    if data["day"] is None:
        return render_template("security/trajectory/empty.html",
                               backfill_from=today - dt.timedelta(days=MAX_DAYS - 1)), 200
    day = dt.date.fromisoformat(data["day"])
    if (dimension, value) == ("all", ""):
        points = [services.CoveragePoint(dt.date.fromisoformat(p["day"]), p["active"], p["compliant"], p["share"])
                  for p in data["coverage"]]
    else:
        points = _coverage_points(session, day, dimension, value)
    projection = services.project_coverage(points, today=day)
    pairing = _pairing_points(session, day, dimension, value)
    contract = _breakdown_rows(session, day, "contract_type")
    poles = _breakdown_rows(session, day, "pole")
    place = "pole" if poles else "unit"
    places = poles or _breakdown_rows(session, day, "unit")
    signins = next((s for s in data["signins"] if s["class"] == policy.compliance_class), None)
    class_label = policy.class_label(policy.compliance_class)
    return render_template(
        "security/trajectory/dashboard.html", r=data, targets=data["targets"], removable=False, day=day,
        stale=(today - day).days > 1, class_label=class_label,
        figures=figures.headline(data["headline"], signins, data["signins_days"], class_label),
        population=picked if dimension != "all" else "", dimension=dimension, value=value,
        population_label=services.population_label(dimension, value,
                                                   services.value_labels(session, dimension, [value])),
        population_choices=figures.population_choices(contract, poles), points=points, projection=projection,
        pairing=pairing,
        contract=contract, places=places, place=place, place_label=DIMENSION_LABELS_FR[place],
        thousands=figures.thousands, percent=charts.fr_percent, fr_day=figures.day_text,
        directory_pages="directory" in current_app.blueprints), 200


@bp.get("/graphiques/<name>.svg")
def chart(name: str) -> Response:
    """One chart as SVG: ``couverture`` or ``appairage`` (Pro Santé Connect) (``dimension``, ``valeur``,
    ``jours`` ≤ 365), or ``repartition`` (``dimension``)."""
    if name not in CHARTS:
        abort(404)
    session = appctx.db_session()
    policy = _policy()
    day = services.snapshot_day(session, _today(policy))
    if name in ("couverture", "appairage"):
        dimension, value = _population(_arg("dimension"), _arg("valeur"))
        days = _int_arg("jours", MAX_DAYS, 1, MAX_DAYS)
        if day is None:
            return _svg(charts.coverage_chart(
                [], title="Part conforme" if name == "couverture" else "Part associée à Pro Santé Connect"))
        draw = _coverage_svg if name == "couverture" else _pairing_svg
        return _svg(draw(session, policy, day, dimension, value, days=days))
    dimension = _arg("dimension") or "contract_type"
    if dimension not in BREAKDOWN_DIMENSIONS:
        raise ValidationError(f"Dimension inconnue « {dimension} » (attendu : {', '.join(BREAKDOWN_DIMENSIONS)}).",
                              field="dimension", code="dimension_unknown")
    rows = _breakdown_rows(session, day, dimension) if day is not None else []
    return _svg(_breakdown_svg(rows, dimension))


# --- the people still to equip ----------------------------------------------------------------------------


def _people_filters() -> tuple[dict[str, str], dict[str, Any], dict[str, str]]:
    """The list's filters as typed (``form``), as the services take them (``query``), and what is wrong."""
    form = {"statut": request.args.get("statut", "")[:40], "unite": request.args.get("unite", "")[:400],
            "pole": request.args.get("pole", "")[:400], "contrat": request.args.get("contrat", "")[:40],
            "rpps": request.args.get("rpps", "")[:10], "psc": request.args.get("psc", "")[:10]}
    form = {k: clean(v).strip() for k, v in form.items()}
    errors: dict[str, str] = {}
    status = form["statut"] or "a_traiter"
    if status not in STATUS_FILTERS:
        errors["statut"] = f"Statut inconnu « {status[:40]} »."
    for name in ("unite", "pole"):
        if len(form[name]) > MAX_ARG_CHARS:
            errors[name] = f"Code trop long (au plus {MAX_ARG_CHARS} caractères)."
    if form["contrat"] and form["contrat"] not in CONTRACT_TYPES:
        errors["contrat"] = f"Type de contrat inconnu « {form['contrat']} »."
    if form["rpps"] and form["rpps"] not in RPPS_FILTERS:
        errors["rpps"] = "RPPS : « oui », « non » ou rien."
    if form["psc"] and form["psc"] not in PSC_FILTERS:
        errors["psc"] = "Identité nationale : « oui », « non » ou rien."
    query = {"status": list(STATUS_FILTERS.get(status, ())), "unit": form["unite"] or None,
             "pole": form["pole"] or None, "contract_type": form["contrat"] or None,
             "rpps": RPPS_FILTERS.get(form["rpps"]), "psc": PSC_FILTERS.get(form["psc"])}
    return form, query, errors


@bp.get("/personnes")
def people() -> tuple[str, int]:
    """Who is not compliant yet (or any status), by unit, pôle, contract type, RPPS and pairing with Pro Santé
    Connect, 50 a page."""
    session = appctx.db_session()
    form, query, errors = _people_filters()
    page_text = request.args.get("page", "1")[:12].strip() or "1"
    if not page_text.isdecimal() or not 1 <= int(page_text) <= 1_000_000:
        errors["page"] = "Numéro de page invalide."
    page = int(page_text) if "page" not in errors else 1
    day = services.snapshot_day(session)
    units = services.breakdown(session, day, "unit", (services.ACTIVE,)) if day else []
    poles = services.breakdown(session, day, "pole", (services.ACTIVE,)) if day else []
    result = None
    if not errors and day is not None:
        result = services.people(session, **query, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    pages = max(1, -(-result.total // PAGE_SIZE)) if result else 1
    args = {k: v for k, v in form.items() if v}
    return render_template(
        "security/trajectory/people.html", form=form, errors=errors, result=result, page=page, pages=pages,
        args=args, day=day, units=units, poles=poles, status_filters=STATUS_FILTER_LABELS,
        contract_types=CONTRACT_TYPES, status_label=exports.status_label, reasons=exports.REASON_LABELS_FR,
        mie_labels=exports.MIE_KIND_LABELS_FR, national_identity=exports.national_identity_label,
        directory_pages="directory" in current_app.blueprints, thousands=figures.thousands), 400 if errors else 200


@bp.get("/personnes.csv")
def people_csv() -> Response:
    """The same filtered list as CSV (every page), streamed."""
    _form, query, errors = _people_filters()
    if errors:
        raise ValidationError(" ".join(errors.values()), field=next(iter(errors)), errors=errors)
    day = services.snapshot_day(appctx.db_session())
    stamp = day.isoformat() if day else "sans-releve"
    return _attachment(_stream(lambda s: exports.people_csv(services.iter_people(s, **query))),
                       "text/csv", f"trajectoire-personnes-{stamp}.csv")


# --- series exports ---------------------------------------------------------------------------------------


def _series_query() -> tuple[dict[str, Any], str | None]:
    indicators = [clean(v[:120]).strip() for v in request.args.getlist("indicateur")[:50]]
    indicators = [i for i in indicators if i]
    for indicator in indicators:
        if len(indicator) > 60 or not set(indicator) <= _INDICATOR_CHARS:
            raise ValidationError(f"Indicateur illisible « {indicator[:60]} ».", field="indicateur",
                                  code="indicator_unknown")
    dimension = _arg("dimension")
    value = _arg("valeur")
    if dimension and dimension not in (*DIMENSIONS, "client"):
        raise ValidationError(f"Dimension inconnue « {dimension} ».", field="dimension", code="dimension_unknown")
    if value and not dimension:
        raise ValidationError("Une valeur demande sa dimension (paramètre « dimension »).", field="valeur",
                              code="value_without_dimension")
    day_from, day_to = _day_arg("du"), _day_arg("au")
    if day_from and day_to and day_to < day_from:
        raise ValidationError("La période est vide : « du » doit précéder « au ».", field="du", code="empty_period")
    query = {"indicators": indicators or None, "dimension": dimension or None, "day_from": day_from,
             "day_to": day_to}
    # ``dimension=all`` has one value, "": a value is a filter only for the other dimensions.
    return query, (value if dimension and dimension != "all" else None)


def _series_rows(session: Session, query: dict[str, Any], value: str | None) -> Iterator[services.SeriesRow]:
    rows = services.iter_series(session, **query)
    return rows if value is None else (r for r in rows if r.value == value)


def _series_json(rows: Iterable[services.SeriesRow]) -> Iterator[str]:
    """The JSON of :func:`exports.series_json`, one series at a time (rows come grouped by series)."""
    yield "["
    for n, (_key, group) in enumerate(itertools.groupby(rows, key=lambda r: (r.indicator, r.dimension, r.value))):
        yield ("," if n else "") + json.dumps(exports.series_json(group)[0], ensure_ascii=False)
    yield "]\n"


@bp.get("/series.csv")
def series_csv() -> Response:
    """Every stored series (optionally some ``indicateur``, one ``dimension``/``valeur``, ``du``/``au``) as CSV."""
    query, value = _series_query()
    return _attachment(_stream(lambda s: exports.series_csv(_series_rows(s, query, value))), "text/csv",
                       "trajectoire-series.csv")


@bp.get("/series.json")
def series_json() -> Response:
    """The same series as JSON: ``[{indicator, label, dimension, value, points: [[AAAA-MM-JJ, n], …]}]``."""
    query, value = _series_query()
    return _attachment(_stream(lambda s: _series_json(_series_rows(s, query, value))), "application/json",
                       "trajectoire-series.json")


# --- the printable report ---------------------------------------------------------------------------------


@bp.get("/rapport")
def report() -> Response:
    """The report for the management and the ARS (the CLI's HTML report, with the charts): ``date`` optional."""
    session = appctx.db_session()
    policy = _policy()
    as_of = _day_arg("date") or _today(policy)
    data = services.report(session, policy, as_of)
    response = Response(exports.report_html(data, charts=report_charts(session, policy, data)), mimetype="text/html")
    # A standalone document: its own <style> (print styles, the charts'), no script, no form, no navigation.
    response.headers["Content-Security-Policy"] = REPORT_CSP
    return response


# --- targets ----------------------------------------------------------------------------------------------


def _targets_page(*, errors: dict[str, str] | None = None, form: dict[str, str] | None = None,
                  status: int = 200) -> tuple[str, int]:
    session = appctx.db_session()
    policy = _policy()
    today = _today(policy)
    defaults = {"label": "", "percent": "", "due": "", "dimension": "all", "value": "", "indicator": "compliant"}
    return render_template(
        "security/trajectory/targets.html", targets=services.targets(session, policy, today), removable=True,
        today=today,
        errors=errors or {}, form={**defaults, **(form or {})}, dimensions=TARGET_DIMENSIONS,
        dimension_labels=DIMENSION_LABELS_FR, indicators=TARGET_INDICATORS, contract_types=CONTRACT_TYPES,
        indicator_labels={i: exports.indicator_label(i) for i in TARGET_INDICATORS}, percent=charts.fr_percent,
        fr_day=figures.day_text, thousands=figures.thousands), status


@bp.get("/cibles")
def targets() -> tuple[str, int]:
    """The targets (policy file's and the RSSI's) with their gap, and the form that adds one."""
    return _targets_page()


@bp.post("/cibles")
def target_add() -> BaseResponse | tuple[str, int]:
    """Add a target of the RSSI."""
    session = appctx.db_session()
    policy = _policy()
    limits = {"label": 400, "percent": 20, "due": 20, "dimension": 40, "value": 200, "indicator": 40}
    form = {name: clean(request.form.get(name, "")[:limit]).strip() for name, limit in limits.items()}
    try:
        row = services.add_target(session, label=form["label"], percent=form["percent"], due=form["due"],
                                  dimension=form["dimension"] or "all", value=form["value"],
                                  indicator=form["indicator"] or services.COMPLIANT, actor=current_agent().actor,
                                  client_ip=appctx.client_ip(), today=_today(policy))
        session.commit()
    except ValidationError as exc:
        session.rollback()
        return _targets_page(errors=exc.errors or {"_": exc.message}, form=form, status=400)
    flash(f"Objectif ajouté : {row.percent} % au {charts.fr_day(row.due)}.", "success")
    return redirect(url_for("trajectory.targets"), 303)


@bp.post("/cibles/<public_id>/retrait")
def target_remove(public_id: str) -> BaseResponse | tuple[str, int]:
    """Remove a target of the RSSI (those of the policy file are removed from the file)."""
    if not PUBLIC_ID_RE.fullmatch(public_id or ""):
        abort(404)
    session = appctx.db_session()
    try:
        services.remove_target(session, public_id, actor=current_agent().actor, client_ip=appctx.client_ip(),
                               policy=_policy())
        session.commit()
    except NotFound:
        session.rollback()
        abort(404)
    except HospiConnectError as exc:
        session.rollback()
        return _targets_page(errors={"_": exc.message}, status=exc.http_status)
    flash("Objectif retiré.", "success")
    return redirect(url_for("trajectory.targets"), 303)
