"""``hospiconnect policy explain``: what the access policy decides for one person and one application, and why.

:func:`explain` gathers, for an identity (public id, user name, HR number or RPPS) and a client, on a day:
the settings of the client's class for the person's population, the decision for each way the person could
sign in with their active MIE (password alone, password and TOTP, security key…) — computed exactly as the
provider does at the authorization endpoint (:mod:`hospiconnect.idp.policy_gate`) — the rules in force and
whether the person holds a compliant MIE (:func:`hospiconnect.policies.compliance`), and the exceptions
(dérogations) in force for the person and the class, with whether they change each decision. It reads the database
and writes nothing (no use of an exception is recorded). :func:`render` puts it in French.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hospiconnect.authenticators.models import Mie
from hospiconnect.authorizations import services as exceptions
from hospiconnect.directory import services as directory
from hospiconnect.directory.models import Identity
from hospiconnect.idp import checks, clients, policy_gate
from hospiconnect.policies import EvaluationContext, IdentitySummary, MieSummary, Policy, compliance, evaluate
from hospiconnect.policies.explain import describe_decision, describe_settings
from hospiconnect.policies.relaxations import relax
from hospiconnect.policies.rules import grant_instant

#: The ways to sign in with this product's MIE: (key, French label, MIE types needed, RFC 8176 ``amr``).
WAYS: tuple[tuple[str, str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("password", "Mot de passe seul", ("password",), ("pwd",)),
    ("password+totp", "Mot de passe et application d'authentification (TOTP)", ("password", "totp"),
     ("mfa", "otp", "pwd")),
    ("password+webauthn", "Mot de passe et clé de sécurité (présence)", ("password", "webauthn"),
     ("hwk", "mfa", "pwd", "user")),
    ("webauthn", "Clé de sécurité avec code PIN ou biométrie (sans mot de passe)", ("webauthn",),
     ("hwk", "mfa", "pin")),
)
#: What the provider does, per value of ``ways[].provider``.
PROVIDER_LABELS_FR = {"allow": "le code est délivré", "mfa_required": "la page demande un second facteur",
                      "essential_acr": "la page demande un facteur de niveau plus élevé",
                      "auth_too_old": "la page demande de s'identifier à nouveau",
                      "no_usable_mie": "page expliquant comment obtenir un second facteur (aucun code)",
                      "access_denied": "refus (access_denied), avec l'explication à l'écran"}


def _summary(mie: Mie) -> MieSummary:
    """Return ``mie`` as the compliance rule sees it (active from its activation until its suspension or
    withdrawal)."""
    until = mie.revoked_at
    if mie.status in ("suspended", "revoked") and until is None:
        ends = [t.at for t in mie.transitions if t.to_status in ("suspended", "revoked")]
        until = ends[-1] if ends else None
    return MieSummary(type=mie.type, active_from=mie.activated_at, active_until=until if mie.status != "active"
                      else None, proofing_method=mie.proofing_method, proofed_at=mie.proofing_at,
                      label=mie.label or mie.type)


def explain(session: Session, policy: Policy, *, identity_key: str, client_id: str,
            as_of: dt.date | dt.datetime, client_ip: str | None = None) -> dict[str, Any]:
    """Return the explanation as JSON-ready values.

    ``as_of``: a datetime (the authentication is taken as just done) or a day (the age check is then
    skipped). Raises :class:`~hospiconnect.errors.NotFound` for an unknown identity or client.
    """
    identity: Identity = directory.get_identity(session, identity_key)
    client = clients.require_client(session, client_id)
    mies = list(session.scalars(select(Mie).where(Mie.identity_id == identity.id).order_by(Mie.created_at, Mie.id)))
    person = policy_gate.PersonMie(tuple((m.type, m.proofing_method) for m in mies if m.status == "active"))
    active = {t for t, _ in person.rows}
    population = identity.contract_type
    app_class = client.sensitivity
    declared = app_class in policy.classes
    at = as_of if isinstance(as_of, dt.datetime) else None
    instant = grant_instant(policy, as_of)
    grants = tuple(exceptions.active_exceptions_for(session, identity, app_class, instant)) if declared else ()
    ways = []
    for key, label, needs, amr in WAYS:
        if not set(needs) <= active:
            continue
        acr = checks.acr_for(amr, person.facts.proofed)  # what the ID token would say
        context = EvaluationContext(as_of=as_of, app_class=app_class, acr=policy_gate.factors_acr(amr),
                                    amr=frozenset(amr), auth_time=at,
                                    population=population, client_ip=client_ip,
                                    available_mie_types=person.available_types, grants=grants)
        decision = evaluate(policy, context)
        without = evaluate(policy, dataclasses.replace(context, grants=())) if decision.applied_grants else None
        needed = policy_gate.needed_acr(policy, app_class, as_of, client_ip, population, grants)
        gate = policy_gate.map_decision(decision, two_factors="mfa" in amr, needed=needed)
        if gate.refusal is not None:
            provider = ["access_denied"]
        elif gate.decision.kind == "deny":  # no second factor that would do: the explanation page
            provider = ["no_usable_mie"]
        else:
            provider = list(gate.reasons) or ["allow"]
        ways.append({"way": key, "label": label, "amr": list(amr), "acr": acr, "decision": decision.as_json(),
                     "provider": provider, "exceptions": list(decision.applied_grants),
                     "without_exceptions": without.kind if without is not None else None,
                     "text": describe_decision(decision)})
    effective = policy.effective(app_class, as_of, population) if declared else None
    rules = [{"id": r.id, "description": r.description, "period": r.period_fr(), "source": r.source}
             for r in policy.rules if effective is not None and r.id in effective.rules]
    verdict = compliance(policy, IdentitySummary(tuple(_summary(m) for m in mies), population), as_of)
    ignored: dict[str, list[str]] = {}
    if effective is not None and grants:
        for grant_id, code in relax(policy, app_class, effective.settings, grants, instant).ignored:
            ignored.setdefault(grant_id, []).append(code)
    applied = {g for way in ways for g in way["exceptions"]}
    in_force = [{"id": g.id, "target": g.target, "relaxation": g.relaxation.as_json(),
                 "relaxation_fr": g.relaxation.describe(), "justification": g.justification,
                 "starts_at": g.starts_at.isoformat(), "ends_at": g.ends_at.isoformat(),
                 "changes_decision": g.id in applied, "ignored": ignored.get(g.id, [])} for g in grants]
    return {
        "policy": {"name": policy.name, "file": policy.source, "digest": policy.digest},
        "as_of": as_of.isoformat(), "client_ip": client_ip,
        "identity": {"id": identity.public_id, "user_name": identity.user_name, "population": population,
                     "status": identity.status, "active": identity.is_active},
        "client": {"client_id": client.client_id, "name": client.name, "class": app_class,
                   "class_declared": declared, "disabled": client.disabled_at is not None},
        "settings": effective.as_json() if effective is not None else None,
        "settings_text": describe_settings(policy, effective) if effective is not None else [],
        "mie": [{"type": m.type, "label": m.label, "status": m.status, "proofing_method": m.proofing_method,
                 "activated_at": m.activated_at.isoformat() if m.activated_at else None} for m in mies],
        "ways": ways, "rules": rules, "exceptions": in_force,
        "compliance": {**verdict.as_json(), "class": policy.compliance_class},
    }


def render(data: dict[str, Any]) -> str:
    """Return the explanation in French (the human output of ``policy explain``)."""
    day = dt.date.fromisoformat(data["as_of"][:10])
    person, client = data["identity"], data["client"]
    lines = [f"Politique « {data['policy']['name']} » ({data['policy']['file']}), empreinte "
             f"{data['policy']['digest'][:16]}…",
             f"Personne : {person['user_name']} ({person['id']}), population « {person['population']} »"
             + ("" if person["active"] else f" — identité {person['status']} : aucune connexion possible"),
             f"Application : {client['name']} ({client['client_id']}), classe « {client['class']} »"
             + (" — application désactivée" if client["disabled"] else ""),
             f"Au {day:%d/%m/%Y}" + (f", depuis l'adresse {data['client_ip']}" if data["client_ip"]
                                     else ", adresse d'origine non précisée (--ip)") + ".", ""]
    if not client["class_declared"]:
        lines += [f"La politique ne déclare pas la classe « {client['class']} » : toute connexion à cette "
                  "application est refusée. Corrigez la classe du client ou la politique.", ""]
    else:
        lines += ["Réglages en vigueur :"] + [f"  {line}" for line in data["settings_text"]] + [""]
    lines.append("Façons de se connecter avec ses MIE actifs :")
    if not data["ways"]:
        lines.append("  aucune : la personne n'a aucun MIE actif.")
    for way in data["ways"]:
        lines.append(f"  • {way['label']} (amr {' '.join(way['amr'])}, niveau {way['acr']}) — fournisseur : "
                     f"{' ; '.join(PROVIDER_LABELS_FR.get(p, p) for p in way['provider'])}")
        lines.extend(f"      {line}" for line in way["text"].splitlines())
        if way.get("exceptions"):
            lines.append(f"      Grâce à la dérogation {', '.join(way['exceptions'])} (sans elle : "
                         f"{way['without_exceptions']}).")
    lines += ["", "Règles en vigueur pour cette classe et cette population :"]
    lines += [f"  - {r['id']} ({r['period']}) : {r['description']}" + (f" [{r['source']}]" if r["source"] else "")
              for r in data["rules"]] or ["  aucune"]
    lines += ["", "Dérogations en vigueur pour cette personne et cette classe :"]
    for g in data.get("exceptions", []):
        effect = ("change la décision" if g["changes_decision"] else "ne change aucune décision")
        if "floor" in g["ignored"]:
            effect += " (un seul facteur refusé : la classe exige deux facteurs et la politique ne permet pas " \
                      "de l'abaisser)"
        lines.append(f"  - {g['id']} ({'personne' if g['target'] == 'identity' else 'population'}, jusqu'au "
                     f"{g['ends_at'][:16].replace('T', ' ')} UTC) : {g['relaxation_fr']} — {effect}")
    if not data.get("exceptions"):
        lines.append("  aucune")
    verdict = data["compliance"]
    lines.append("")
    if verdict["compliant"]:
        lines.append(f"MIE conforme (classe de référence « {verdict['class']} ») : oui, « {verdict['mie']} ».")
    else:
        lines.append(f"MIE conforme (classe de référence « {verdict['class']} ») : non.")
        lines.extend(f"  - {r['message']}" for r in verdict["reasons"])
    return "\n".join(lines)

