"""``hospiconnect exception …`` (dérogations) and ``hospiconnect emergency …`` (bris de glace).

Commands are thin: they parse options, call one service in one transaction, and print either a French
summary or (``--json``) one JSON document on stdout. Errors go to stderr with a non-zero exit code. The CLI acts
as the operator (actor ``cli``); the services still enforce the officer's role and the separation of duties.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import click

from hospiconnect.authenticators import emergency
from hospiconnect.authorizations import services as exceptions
from hospiconnect.cli_common import Group, emit, runtime_of
from hospiconnect.directory import services as directory
from hospiconnect.errors import ValidationError
from hospiconnect.policies import Policy, load_policy
from hospiconnect.policies.policy import zone

ACTOR = "cli"


def _policy(ctx: click.Context) -> Policy:
    return load_policy(runtime_of(ctx).settings.policy_file)


def _moment(value: str | None, policy: Policy, field: str) -> dt.datetime | None:
    """AAAA-MM-JJ (that day at 00:00 in the policy's time zone) or an ISO date and time with its offset."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            return dt.datetime.combine(day, dt.time(0), zone(policy.timezone)).astimezone(dt.timezone.utc)
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValidationError(f"{field} : date invalide « {text} » (attendu AAAA-MM-JJ ou AAAA-MM-JJTHH:MM+01:00).",
                              field=field, code="bad_date") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone(policy.timezone))
    return moment.astimezone(dt.timezone.utc)


def _relaxation(allows: tuple[str, ...]) -> dict[str, Any]:
    """``single-factor``, ``mie-type:T``, ``network:N``, ``max-auth-age:12h`` → the relaxation's JSON form."""
    data: dict[str, Any] = {}
    for item in allows:
        kind, _, value = item.strip().partition(":")
        kind, value = kind.strip().lower(), value.strip()
        if kind == "single-factor" and not value:
            data["allow_single_factor"] = True
        elif kind == "mie-type" and value:
            data.setdefault("allow_mie_types", []).append(value)
        elif kind == "network" and value:
            data.setdefault("networks", []).append(value)
        elif kind == "max-auth-age" and value:
            data["max_auth_age"] = value
        else:
            raise ValidationError(f"--allow : valeur inconnue « {item} » (single-factor, mie-type:TYPE, network:RÉSEAU "
                                  "ou max-auth-age:DURÉE).", field="relaxation", code="relaxation_unknown")
    return data


# --- exception ------------------------------------------------------------------------------------------


@click.group(cls=Group)
def exception() -> None:
    """Dérogations à la politique d'accès (limitées dans le temps, justifiées, journalisées)."""


def _exception_line(d: dict[str, Any]) -> str:
    target = d["user_name"] or (f"population {d['population']}" + (f" ({', '.join(d['units'])})" if d["units"] else ""))
    return (f"{d['id']}  [{d['state']}]  classe {d['class']}, {target} : {d['relaxation_fr']} — jusqu'au "
            f"{d['ends_at']} — {d['use_count']} utilisation(s) — « {d['justification']} »")


@exception.command("grant")
@click.option("--identity", default=None, help="Personne (id public, identifiant de connexion, matricule ou RPPS).")
@click.option("--population", default=None, help="Population : type de contrat (interim, trainee…).")
@click.option("--unit", "units", multiple=True, help="Limite la population à une unité (répétable).")
@click.option("--class", "app_class", required=True, help="Classe d'applications de la politique.")
@click.option("--allow", "allows", multiple=True,
              help="single-factor, mie-type:TYPE, network:RÉSEAU ou max-auth-age:DURÉE (répétable).")
@click.option("--from", "starts", default=None, help="Début (AAAA-MM-JJ) ; par défaut maintenant.")
@click.option("--until", "until", default=None,
              help="Fin, exclue comme « until » dans la politique (AAAA-MM-JJ : ce jour à 0 h) ; obligatoire.")
@click.option("--justification", default=None, help="Justification (au moins 10 caractères) ; obligatoire.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def exception_grant(ctx: click.Context, identity: str | None, population: str | None, units: tuple[str, ...],
                    app_class: str, allows: tuple[str, ...], starts: str | None, until: str | None,
                    justification: str | None, as_json: bool) -> None:
    """Accorde une dérogation à une personne ou à une population."""
    rt = runtime_of(ctx)
    policy = _policy(ctx)
    relaxation = _relaxation(allows)
    starts_at, ends_at = _moment(starts, policy, "starts_at"), _moment(until, policy, "ends_at")
    with rt.db.session() as session:
        person = directory.get_identity(session, identity) if identity else None
        row = exceptions.grant_exception(session, policy, identity=person, population=population, units=units,
                                         app_class=app_class, relaxation=relaxation,
                                         justification=justification or "", starts_at=starts_at, ends_at=ends_at,
                                         actor=ACTOR, max_days=rt.settings.exception_max_days)
        data = exceptions.exception_as_dict(session, row)
    emit(data, as_json, lambda d: "Dérogation accordée :\n" + _exception_line(d))


@exception.command("list")
@click.option("--all", "show_all", is_flag=True, help="Aussi les dérogations révoquées ou terminées.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def exception_list(ctx: click.Context, show_all: bool, as_json: bool) -> None:
    """Liste les dérogations en vigueur ou à venir (toutes avec --all)."""
    rt = runtime_of(ctx)
    with rt.db.session() as session:
        rows = [exceptions.exception_as_dict(session, r) for r in exceptions.list_exceptions(
            session, active_only=not show_all)]
    emit(rows, as_json, lambda rs: "\n".join(_exception_line(r) for r in rs) or "Aucune dérogation.")


@exception.command("revoke")
@click.argument("exception_id")
@click.option("--reason", default=None, help="Motif ; obligatoire.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def exception_revoke(ctx: click.Context, exception_id: str, reason: str | None, as_json: bool) -> None:
    """Révoque une dérogation (elle cesse aussitôt)."""
    rt = runtime_of(ctx)
    with rt.db.session() as session:
        row = exceptions.revoke_exception(session, exception_id, actor=ACTOR, reason=reason or "")
        data = exceptions.exception_as_dict(session, row)
    emit(data, as_json, lambda d: f"Dérogation {d['id']} révoquée.")


# --- emergency ------------------------------------------------------------------------------------------


@click.group("emergency", cls=Group)
def emergency_group() -> None:
    """Accès d'urgence (bris de glace) : code à usage unique, journalisé et examiné."""


def _emergency_line(d: dict[str, Any]) -> str:
    person = d["person"]["user_name"] if d["person"] else "?"
    officer = d["officer"]["user_name"] if d["officer"] else "?"
    review = f"examiné : « {d['review_comment']} »" if d["reviewed_at"] else "à examiner"
    used = f", utilisé le {d['used_at']} depuis {d['used_from_ip']}" if d["used_at"] else ""
    return (f"{d['id']}  [{emergency.STATE_LABELS_FR.get(d['state'], d['state'])}]  {person} par {officer}, "
            f"délivré le {d['issued_at']}, jusqu'au {d['expires_at']}{used} — « {d['reason']} » — {review}")


@emergency_group.command("issue")
@click.option("--identity", required=True, help="La personne (id public, identifiant de connexion…).")
@click.option("--officer", required=True, help="L'agent qui délivre l'accès (rôle emergency_officer).")
@click.option("--reason", default=None, help="Motif (au moins 10 caractères) ; obligatoire.")
@click.option("--hours", type=int, default=None, help="Validité en heures (par défaut HOSPICONNECT_EMERGENCY_HOURS).")
@click.option("--network", "networks", multiple=True,
              help="Réseau d'où l'accès est possible : nom de la politique ou CIDR (répétable ; défaut internal).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def emergency_issue(ctx: click.Context, identity: str, officer: str, reason: str | None, hours: int | None,
                    networks: tuple[str, ...], as_json: bool) -> None:
    """Délivre un accès d'urgence ; le code est affiché une seule fois."""
    rt = runtime_of(ctx)
    policy = _policy(ctx)
    with rt.db.session() as session:
        person = directory.get_identity(session, identity)
        agent = directory.get_identity(session, officer)
        row, code = emergency.issue_emergency_credential(
            session, rt.keys, policy, identity=person, officer=agent, reason=reason or "", actor=ACTOR, hours=hours,
            max_hours=rt.settings.emergency_hours, networks=networks)
        data = {**emergency.credential_as_dict(session, row), "code": code}
    emit(data, as_json, lambda d: (
        f"{d['code']}\n(accès d'urgence de {d['person']['user_name']}, à usage unique, jusqu'au {d['expires_at']}, "
        f"depuis {', '.join(d['networks'])} ; ce code ne sera plus affiché)"))


@emergency_group.command("list")
@click.option("--to-review", is_flag=True, help="Seulement ceux qui restent à examiner.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def emergency_list(ctx: click.Context, to_review: bool, as_json: bool) -> None:
    """Liste les accès d'urgence (à examiner seulement avec --to-review)."""
    rt = runtime_of(ctx)
    with rt.db.session() as session:
        rows = [emergency.credential_as_dict(session, r)
                for r in emergency.list_for_review(session, reviewed=False if to_review else None)]
    emit(rows, as_json, lambda rs: "\n".join(_emergency_line(r) for r in rs) or "Aucun accès d'urgence.")


@emergency_group.command("review")
@click.argument("credential_id")
@click.option("--reviewer", required=True, help="La personne qui examine (RSSI).")
@click.option("--comment", default=None, help="Commentaire ; obligatoire.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def emergency_review(ctx: click.Context, credential_id: str, reviewer: str, comment: str | None,
                     as_json: bool) -> None:
    """Enregistre l'examen d'un accès d'urgence, avec un commentaire."""
    rt = runtime_of(ctx)
    with rt.db.session() as session:
        person = directory.get_identity(session, reviewer)
        row = emergency.acknowledge(session, credential_id, reviewer=person, comment=comment or "", actor=ACTOR)
        data = emergency.credential_as_dict(session, row)
    emit(data, as_json, lambda d: f"Accès d'urgence {d['id']} examiné.")


@emergency_group.command("revoke")
@click.argument("credential_id")
@click.option("--reason", default=None, help="Motif ; obligatoire.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def emergency_revoke(ctx: click.Context, credential_id: str, reason: str | None, as_json: bool) -> None:
    """Révoque un accès d'urgence encore utilisable."""
    rt = runtime_of(ctx)
    with rt.db.session() as session:
        row = emergency.revoke(session, credential_id, actor=ACTOR, reason=reason or "")
        data = emergency.credential_as_dict(session, row)
    emit(data, as_json, lambda d: f"Accès d'urgence {d['id']} révoqué.")

