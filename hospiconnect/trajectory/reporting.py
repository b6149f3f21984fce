"""The report for the management, the ARS or an auditor: one dictionary of JSON-ready values with the date, the
headline figures, the statuses, the targets and their gaps, a projection per population, the units furthest
from full coverage, the MIE in use and the sign-ins of the last days (``services.report``; rendered by
``exports.report_html`` / ``exports.report_csv``, printed by ``hospiconnect trajectory report``)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hospiconnect.db import utcnow
from hospiconnect.policies import Policy
from hospiconnect.policies.policy import MIE_STATUS_LABELS_FR, zone
from hospiconnect.trajectory import exports, services
from hospiconnect.trajectory.indicators import PERSON_INDICATORS, STATUSES
from hospiconnect.trajectory.models import TrajectorySnapshot
from hospiconnect.trajectory.projection import DEFAULT_WINDOW_WEEKS

#: Sign-ins are summed over this many days ending on the report's day (one day is too few to read a share).
SIGNIN_DAYS = 30
#: Weeks of the printed coverage table.
WEEKS = 13
#: Units listed among the largest gaps.
LARGEST_GAPS = 10
PROJECTION_METHOD_FR = (f"droite des moindres carrés de la part conforme quotidienne sur les {DEFAULT_WINDOW_WEEKS} "
                        f"dernières semaines, prolongée jusqu'à 100 %")
_MIE_LABELS_FR = {
    "password": "Mot de passe", "totp": "Application TOTP", "webauthn": "FIDO2 (toutes attaches)",
    "webauthn:platform": "FIDO2 intégré à l'appareil", "webauthn:cross-platform": "Clé de sécurité FIDO2",
    "cps": "Carte CPS", "e-cps": "e-CPS",
}


def _day_figures(session: Session, day: dt.date) -> list[dict[str, Any]]:
    rows = session.execute(select(TrajectorySnapshot.indicator, TrajectorySnapshot.dimension,
                                  TrajectorySnapshot.value, TrajectorySnapshot.count)
                           .where(TrajectorySnapshot.day == day)
                           .order_by(TrajectorySnapshot.dimension, TrajectorySnapshot.value,
                                     TrajectorySnapshot.indicator)).all()
    active = {(d, v): c for i, d, v, c in rows if i == services.ACTIVE}
    # A share of the active identities for the statuses and person indicators; MIE counts and events have none.
    with_share = {i for i in PERSON_INDICATORS if i != services.ACTIVE and not i.startswith("mie_active")}
    return [{"indicator": indicator, "dimension": dimension, "value": value, "count": count,
             "share": services.share(count, active.get((dimension, value))) if indicator in with_share else None}
            for indicator, dimension, value, count in rows]


def _headline(figures: list[dict[str, Any]]) -> dict[str, Any]:
    at_all = {f["indicator"]: f["count"] for f in figures if f["dimension"] == "all"}
    active = at_all.get("active", 0)
    head: dict[str, Any] = {"active": active}
    for name in ("compliant", "exempt", "pending", "non_compliant", "proofed", "password_only", "rpps_linked",
                 "psc_paired", "exceptions_active", "emergency_issued", "emergency_unreviewed", "emergency_reviewed"):
        head[name] = at_all.get(name, 0)
    head["compliant_share"] = services.share(head["compliant"], active)
    head["proofed_share"] = services.share(head["proofed"], active)
    head["password_only_share"] = services.share(head["password_only"], active)
    head["rpps_share"] = services.share(head["rpps_linked"], active)
    head["psc_share"] = services.share(head["psc_paired"], active)
    return head


def _mie_types(policy: Policy, figures: list[dict[str, Any]], day: dt.date) -> list[dict[str, Any]]:
    result = []
    for f in figures:
        if f["dimension"] != "all" or not f["indicator"].startswith("mie_active:"):
            continue
        kind = f["indicator"].split(":", 1)[1]
        mie_type = policy.mie_types.get(kind.split(":")[0])
        status = mie_type.standing(day) if mie_type else None
        status_fr = MIE_STATUS_LABELS_FR.get(status, "non déclaré par la politique") if status else \
            "non déclaré par la politique"
        if mie_type and mie_type.decision_date and status == "homologated":
            status_fr += f" (décision du {mie_type.decision_date:%d/%m/%Y})"
        result.append({"kind": kind, "label": _MIE_LABELS_FR.get(kind, kind), "count": f["count"],
                       "status": status, "status_fr": status_fr})
    return sorted(result, key=lambda m: m["kind"])


def _signins(session: Session, policy: Policy, day: dt.date) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    since = day - dt.timedelta(days=SIGNIN_DAYS - 1)
    totals = session.execute(
        select(TrajectorySnapshot.indicator, TrajectorySnapshot.dimension, TrajectorySnapshot.value,
               func.sum(TrajectorySnapshot.count))
        .where(TrajectorySnapshot.day >= since, TrajectorySnapshot.day <= day,
               TrajectorySnapshot.indicator.like("signins%"), TrajectorySnapshot.dimension.in_(["all", "client"]))
        .group_by(TrajectorySnapshot.indicator, TrajectorySnapshot.dimension, TrajectorySnapshot.value)).all()
    per_class: dict[str, dict[str, int]] = defaultdict(lambda: {"total": 0, "mfa": 0, "password_only": 0})
    clients: dict[str, int] = defaultdict(int)
    for indicator, dimension, value, total in totals:
        name, _, app_class = indicator.partition(":")
        if dimension == "client":
            if name == "signins_password_only":
                clients[value] += int(total or 0)
            continue
        if name == "signins":
            per_class[app_class]["total"] += int(total or 0)
        elif name == "signins_mfa":
            per_class[app_class]["mfa"] += int(total or 0)
        elif name == "signins_password_only":
            per_class[app_class]["password_only"] += int(total or 0)
    # The compliance class (health data) first, then the others by name.
    order = sorted(per_class, key=lambda c: (c != policy.compliance_class, c))
    signins = [{"class": c, "label": policy.class_label(c), **per_class[c],
                "mfa_share": services.share(per_class[c]["mfa"], per_class[c]["total"])} for c in order]
    password_clients = [{"client_id": c, "count": n} for c, n in sorted(clients.items(), key=lambda x: (-x[1], x[0]))
                        if n]
    return signins, password_clients


def _projections(session: Session, day: dt.date, figures: list[dict[str, Any]]) -> list[dict[str, Any]]:
    keys = [("all", "")] + [("rpps", v) for v in ("with", "without")]
    keys += sorted({("contract_type", f["value"]) for f in figures
                    if f["dimension"] == "contract_type" and f["indicator"] == services.ACTIVE and f["count"]})
    since = day - dt.timedelta(days=DEFAULT_WINDOW_WEEKS * 7 - 1)
    by_key = services.coverage_many(session, since, day, keys)
    result = []
    for dimension, value in keys:
        points = by_key.get((dimension, value), [])
        if dimension != "all" and not points:
            continue
        last = points[-1] if points and points[-1].day == day else None
        projection = services.project_coverage(points, today=day)
        label = services.population_label(dimension, value)
        result.append({"dimension": dimension, "value": value, "label": label[:1].upper() + label[1:],
                       "active": last.active if last else 0, "compliant": last.compliant if last else 0,
                       "current_share": last.share if last else None, "projection": projection.as_dict()})
    return result


def _largest_gaps(session: Session, day: dt.date) -> list[dict[str, Any]]:
    rows = [r for r in services.breakdown(session, day, "unit") if r.missing > 0]
    rows.sort(key=lambda r: (-r.missing, r.share if r.share is not None else 0.0, r.value))
    return [{"dimension": "unit", "value": r.value, "label": r.label, "active": r.active, "compliant": r.compliant,
             "missing": r.missing, "share": r.share} for r in rows[:LARGEST_GAPS]]


def build_report(session: Session, policy: Policy, as_of: dt.date) -> dict[str, Any]:
    """The report on ``as_of`` from the latest snapshot on or before it (``day``; None when there is none: the
    report then says so and carries no figures)."""
    now = utcnow()
    local = now.astimezone(zone(policy.timezone))
    day = services.snapshot_day(session, as_of)
    data: dict[str, Any] = {
        "title": "Trajectoire de sécurisation des MIE", "as_of": as_of.isoformat(),
        "day": day.isoformat() if day else None, "generated_at": now.isoformat(),
        "generated_at_fr": f"{local:%d/%m/%Y à %H:%M}",
        "policy": {"name": policy.name, "digest": policy.digest, "compliance_class": policy.compliance_class},
        "projection_method_fr": PROJECTION_METHOD_FR, "signins_days": SIGNIN_DAYS,
        "headline": None, "statuses": [], "targets": [t.as_dict() for t in services.targets(session, policy, as_of)],
        "projections": [], "largest_gaps": [], "mie_types": [], "signins": [], "password_only_clients": [],
        "coverage": [], "coverage_weekly": [], "figures": [],
    }
    if day is None:
        return data
    figures = _day_figures(session, day)
    head = _headline(figures)
    data["figures"] = figures
    data["headline"] = head
    data["statuses"] = [{"status": s, "label": exports.status_label(s), "count": head.get(s, 0),
                         "share": services.share(head.get(s, 0), head["active"])} for s in STATUSES]
    coverage = services.coverage(session, day - dt.timedelta(days=364), day)
    data["coverage"] = [p.as_dict() for p in coverage]
    # The printed trajectory: one point a week (the report's weekday) over the last WEEKS weeks.
    weekly = {day - dt.timedelta(weeks=w) for w in range(WEEKS)}
    data["coverage_weekly"] = [p.as_dict() for p in coverage if p.day in weekly]
    data["projections"] = _projections(session, day, figures)
    data["largest_gaps"] = _largest_gaps(session, day)
    data["mie_types"] = _mie_types(policy, figures, day)
    data["signins"], data["password_only_clients"] = _signins(session, policy, day)
    return data
