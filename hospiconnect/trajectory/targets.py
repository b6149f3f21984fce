"""The RSSI's targets (jalons): added and removed from the CLI or the dashboard, validated field by field and
journaled (``admin:trajectory_target:added`` / ``removed``). The policy file's targets are read from the policy
and never stored; where each target stands is computed by :func:`hospiconnect.trajectory.services.targets`.

Conventions of the services: the caller's session, journal there and flush, the caller commits; bad input raises
:class:`~hospiconnect.errors.ValidationError` (``errors``: field → French message) before anything is written.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hospiconnect.audit import service as audit
from hospiconnect.audit import tags
from hospiconnect.db import utcnow
from hospiconnect.directory.models import OrgUnit
from hospiconnect.directory.validation import CONTRACT_TYPES
from hospiconnect.errors import Conflict, NotFound, ValidationError
from hospiconnect.policies import Policy
from hospiconnect.policies.policy import RPPS_VALUES, TARGET_DIMENSIONS, TARGET_INDICATORS
from hospiconnect.trajectory.indicators import DIMENSION_LABELS_FR
from hospiconnect.trajectory.models import TrajectoryTarget

COMPLIANT = "compliant"
MAX_LABEL = 200
MAX_VALUE = 100
_FINESS_RE = re.compile(r"^(?:\d{9}|2[AB]\d{7})$")


class TargetNotFound(NotFound):
    code = "target_not_found"

    def __init__(self) -> None:
        super().__init__("Objectif introuvable.")


def list_targets(session: Session, *, include_removed: bool = False) -> list[TrajectoryTarget]:
    """The targets added by the RSSI, soonest due first (addition to the design)."""
    query = select(TrajectoryTarget)
    if not include_removed:
        query = query.where(TrajectoryTarget.removed_at.is_(None))
    return list(session.scalars(query.order_by(TrajectoryTarget.due, TrajectoryTarget.id)))


def _parse_percent(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    text = str(value if value is not None else "").strip().rstrip("%").strip()
    return int(text) if re.fullmatch(r"-?\d+", text) else None


def _parse_day(value: Any) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError:
        return None


def validate_target(session: Session, *, label: Any, percent: Any, due: Any, dimension: Any = "all",
                    value: Any = "", indicator: Any = COMPLIANT, today: dt.date) -> dict[str, Any]:
    """Check a target as a form or the CLI gives it; return the clean values or raise :class:`ValidationError`
    listing every problem (``errors``: field → French message). Addition to the design, for the pages' forms."""
    errors: dict[str, str] = {}
    codes: dict[str, str] = {}

    def problem(field: str, code: str, message: str) -> None:
        if field not in errors:
            errors[field], codes[field] = message, code

    text = " ".join(str(label or "").split())
    if not text:
        problem("label", "label_required", "Le libellé de l'objectif est obligatoire.")
    elif len(text) > MAX_LABEL:
        problem("label", "label_too_long", f"Le libellé ne doit pas dépasser {MAX_LABEL} caractères.")
    pct = _parse_percent(percent)
    if pct is None or not 1 <= pct <= 100:
        problem("percent", "percent_invalid", "Le pourcentage doit être un nombre entier de 1 à 100.")
    day: dt.date | None = None
    if due is None or not str(due).strip():
        problem("due", "due_required", "L'échéance est obligatoire (AAAA-MM-JJ).")
    else:
        day = _parse_day(due)
        if day is None:
            problem("due", "due_invalid", f"Échéance invalide « {str(due).strip()} » (attendu AAAA-MM-JJ).")
        elif day < today:
            problem("due", "due_in_past", f"L'échéance doit être aujourd'hui ({today:%d/%m/%Y}) ou plus tard.")
    dim = str(dimension or "all").strip()
    val = str(value or "").strip()
    if dim not in TARGET_DIMENSIONS:
        problem("dimension", "dimension_unknown", "Dimension inconnue « {} » (attendu : {}).".format(
            dim, ", ".join(f"{d} ({DIMENSION_LABELS_FR.get(d, d)})" for d in TARGET_DIMENSIONS)))
    elif dim == "all":
        if val:
            problem("value", "value_not_expected",
                    "Pas de valeur pour la dimension « all » (toutes les identités actives).")
    elif not val:
        problem("value", "value_required",
                f"La valeur est obligatoire pour la dimension « {dim} » ({DIMENSION_LABELS_FR.get(dim, dim)}).")
    elif len(val) > MAX_VALUE:
        problem("value", "value_too_long", f"La valeur ne doit pas dépasser {MAX_VALUE} caractères.")
    elif dim == "rpps" and val not in RPPS_VALUES:
        problem("value", "value_unknown", f"Valeur inconnue « {val} » pour la dimension rpps (with ou without).")
    elif dim == "contract_type" and val not in CONTRACT_TYPES:
        problem("value", "value_unknown",
                f"Type de contrat inconnu « {val} » (attendu : {', '.join(CONTRACT_TYPES)}).")
    elif dim == "establishment" and not _FINESS_RE.match(val):
        problem("value", "value_unknown", f"Numéro FINESS invalide « {val} » (9 caractères).")
    elif dim in ("unit", "pole"):
        kind = session.scalar(select(OrgUnit.kind).where(OrgUnit.code == val))
        if kind is None:
            problem("value", "value_unknown", f"Unité inconnue de l'annuaire « {val} ».")
        elif dim == "pole" and kind != "pole":
            problem("value", "value_unknown", f"« {val} » n'est pas un pôle de l'annuaire.")
    ind = str(indicator or COMPLIANT).strip()
    if ind not in TARGET_INDICATORS:
        problem("indicator", "indicator_unknown",
                f"Indicateur inconnu « {ind} » (attendu : {', '.join(TARGET_INDICATORS)}).")
    if errors:
        first = next(iter(errors))
        raise ValidationError(" ".join(errors.values()), field=first, code=codes[first], errors=errors)
    assert pct is not None and day is not None
    return {"label": text, "percent": pct, "due": day, "dimension": dim, "value": val, "indicator": ind}


def _target_details(row: TrajectoryTarget) -> dict[str, Any]:
    return {"target": row.public_id, "label": row.label, "percent": row.percent, "due": row.due.isoformat(),
            "dimension": row.dimension, "value": row.value, "indicator": row.indicator}


def add_target(session: Session, *, label: Any, percent: Any, due: Any, dimension: Any = "all", value: Any = "",
               indicator: Any = COMPLIANT, actor: str, client_ip: str | None = None,
               today: dt.date | None = None, now: dt.datetime | None = None) -> TrajectoryTarget:
    """Add a target of the RSSI and return it: ``percent`` % (1..100) of the active identities of a breakdown
    (``dimension``/``value``; ``all`` and no value: everyone) counted by ``indicator`` by ``due`` (today or
    later; a date or AAAA-MM-JJ). Raises :class:`ValidationError` (nothing written). Journals
    ``admin:trajectory_target:added`` (the caller commits)."""
    now = now or utcnow()
    clean = validate_target(session, label=label, percent=percent, due=due, dimension=dimension, value=value,
                            indicator=indicator, today=today or now.date())
    row = TrajectoryTarget(**clean, created_by=actor[:200], created_at=now)
    session.add(row)
    session.flush()
    audit.record(session, tags.TRAJECTORY_TARGET_ADDED, actor=actor, subject=f"trajectory_target:{row.public_id}",
                 client_ip=client_ip, details=_target_details(row))
    return row


def remove_target(session: Session, target_id: str, *, actor: str, client_ip: str | None = None,
                  policy: Policy | None = None, now: dt.datetime | None = None) -> TrajectoryTarget:
    """Remove a target of the RSSI (kept, marked removed) and return it.

    Raises :class:`Conflict` for a target of the policy file (``policy`` given: change the file instead) or one
    already removed, :class:`TargetNotFound` otherwise unknown. One conditional UPDATE, so two concurrent
    removals record one. Journals ``admin:trajectory_target:removed``."""
    now = now or utcnow()
    key = (target_id or "").strip()
    if policy is not None and policy.target(key) is not None:
        raise Conflict("Ce jalon vient du fichier de politique : retirez-le du fichier (section « targets »).",
                       code="target_from_policy")
    row = session.scalar(select(TrajectoryTarget).where(TrajectoryTarget.public_id == key))
    if row is None:
        raise TargetNotFound()
    done = session.execute(
        update(TrajectoryTarget).where(TrajectoryTarget.id == row.id, TrajectoryTarget.removed_at.is_(None))
        .values(removed_at=now, removed_by=actor[:200]).execution_options(synchronize_session=False))
    session.refresh(row)
    if done.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict("Cet objectif a déjà été retiré.", code="target_removed")
    audit.record(session, tags.TRAJECTORY_TARGET_REMOVED, actor=actor,
                 subject=f"trajectory_target:{row.public_id}", client_ip=client_ip, details=_target_details(row))
    session.flush()
    return row


def target_as_dict(row: TrajectoryTarget) -> dict[str, Any]:
    """A stored target as JSON-ready values (``target list --json``)."""
    return {**{k: v for k, v in _target_details(row).items() if k != "target"}, "id": row.public_id,
            "source": "rssi", "created_by": row.created_by, "created_at": row.created_at.isoformat(),
            "removed_at": row.removed_at.isoformat() if row.removed_at else None, "removed_by": row.removed_by}
