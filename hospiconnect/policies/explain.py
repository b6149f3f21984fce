"""French renderings of decisions and of the settings in force (pure; for the CLI, pages and the journal)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hospiconnect.policies.context import Decision
from hospiconnect.policies.policy import EffectiveSettings, Policy, acr_label

DECISION_LABELS_FR = {"allow": "autorisé", "step_up": "authentification complémentaire requise",
                      "deny": "refusé"}
MISSING_LABELS_FR = {"mfa": "un second facteur", "fresh_auth": "une nouvelle authentification",
                     "login": "une authentification", "enrollment": "l'obtention d'un MIE"}


def describe_missing(missing: str) -> str:
    """Return one value of :attr:`Decision.missing` in French."""
    if missing.startswith("acr:"):
        return f"le niveau {acr_label(missing[4:])}"
    return MISSING_LABELS_FR.get(missing, missing)


def describe_decision(decision: Decision) -> str:
    """Return the decision as French lines: the outcome, what is missing, then each reason."""
    lines = [f"Décision : {DECISION_LABELS_FR[decision.kind]}"
             + (f" (classe « {decision.app_class} », {decision.day:%d/%m/%Y})" if decision.day else "") + "."]
    if decision.missing:
        lines.append("Il faut : " + ", ".join(describe_missing(m) for m in sorted(decision.missing)) + ".")
    if decision.candidates:
        lines.append("MIE utilisables : " + ", ".join(decision.candidates) + ".")
    for reason in decision.reasons:
        lines.append(("- " if reason.blocking else "- (information) ") + reason.message)
    if decision.rules:
        lines.append("Règles en vigueur : " + ", ".join(decision.rules) + ".")
    return "\n".join(lines)


def _duration(value: dt.timedelta | None) -> str:
    if value is None:
        return "sans limite"
    minutes = int(value.total_seconds() // 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d}" if hours and minutes else (f"{hours} h" if hours else f"{minutes} min")


def describe_settings(policy: Policy, effective: EffectiveSettings) -> list[str]:
    """Return the settings of one class in force on one day as French lines, each with its origin."""
    s = effective.settings

    def origin(name: str) -> str:
        rule_id = effective.sources.get(name)
        return f"  [règle {rule_id}]" if rule_id else ""

    types = ", ".join(s.allowed_mie_types)
    return [
        f"Classe « {effective.app_class.name} » — {effective.app_class.label}",
        f"  niveau minimal : {acr_label(s.min_acr)}{origin('min_acr')}",
        f"  types de MIE pris en compte : {types}{origin('allowed_mie_types')}",
        f"  âge maximal de l'authentification : {_duration(s.max_auth_age)}{origin('max_auth_age')}",
        f"  accessible depuis : {s.networks.describe()}{origin('networks')}",
        f"  un seul facteur toléré depuis : {s.single_factor_networks.describe()}{origin('single_factor_networks')}",
        f"  types non homologués acceptés : {'oui' if s.accept_not_homologated else 'non'}"
        f"{origin('accept_not_homologated')}",
        f"  accès d'urgence (bris de glace) : {'possible' if s.emergency else 'non'}{origin('emergency')}",
    ]


def policy_summary(policy: Policy, as_of: dt.date | dt.datetime, population: str | None = None) -> dict[str, Any]:
    """Return the whole policy in force on the day of ``as_of`` as JSON-ready values."""
    day = policy.local_day(as_of)
    return {
        "name": policy.name, "source": policy.source, "digest": policy.digest, "timezone": policy.timezone,
        "as_of": day.isoformat(), "population": population,
        "classes": {name: policy.effective(name, day, population).as_json() for name in policy.classes},
        "mie_types": {name: {"status": t.status, "standing": t.standing(day), "factors": t.factors,
                             "max_acr": t.max_acr, "label": t.label,
                             "decision_date": t.decision_date.isoformat() if t.decision_date else None,
                             "decision_reference": t.decision_reference,
                             "decision_valid_until": (t.decision_valid_until.isoformat()
                                                      if t.decision_valid_until else None)}
                      for name, t in policy.mie_types.items()},
        "rules": [{"id": r.id, "description": r.description, "source": r.source, "period": r.period_fr(),
                   "from": r.start.isoformat() if r.start else None, "until": r.end.isoformat() if r.end else None,
                   "classes": list(r.classes), "populations": list(r.populations), "active": r.active_on(day)}
                  for r in policy.rules],
        "compliance": {"class": policy.compliance_class, "require_identity_check": policy.require_identity_check},
    }
