"""``hospiconnect policy …``: check a policy file, show the settings in force on a date, explain a decision,
validate the configured file before running processes pick it up.

``check``, ``show`` and ``reload`` do not touch the database; ``explain`` reads it. Exit codes: 0 done (file
valid), 1 invalid file (or unknown identity or client), 2 unreadable file, 3 database unreachable.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import click

from hospiconnect.cli_common import Group, emit, runtime_of
from hospiconnect.idp import policy_explain
from hospiconnect.policies import Policy, PolicyError, PolicyUnreadable, load_policy
from hospiconnect.policies.explain import describe_settings, policy_summary
from hospiconnect.policies.policy import MIE_STATUS_LABELS_FR, POPULATIONS

EXIT_INVALID = 1
EXIT_UNREADABLE = 2


@click.group(cls=Group)
def policy() -> None:
    """Politique d'accès : classes d'applications, MIE et règles datées du RIE."""


def _report_error(exc: PolicyError, as_json: bool) -> None:
    """Print every problem of an invalid or unreadable file, then exit 1 or 2."""
    code = EXIT_UNREADABLE if isinstance(exc, PolicyUnreadable) else EXIT_INVALID
    if as_json:
        emit({"valid": False, "readable": code != EXIT_UNREADABLE, "file": exc.source,
              "errors": [issue.as_json() for issue in exc.issues]}, True)
    else:
        click.echo(f"Erreur : {exc.message}", err=True)
    sys.exit(code)


def _counts(policy: Policy) -> dict[str, int]:
    return {"classes": len(policy.classes), "rules": len(policy.rules),
            "dated_rules": sum(1 for r in policy.rules if r.start or r.end),
            "mie_types": len(policy.mie_types), "populations": len(policy.populations),
            "network_sets": len(policy.network_sets)}


@policy.command("check")
@click.argument("file", type=click.Path(dir_okay=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
def policy_check(file: Path, as_json: bool) -> None:
    """Vérifie un fichier de politique ; affiche chaque erreur avec son numéro de ligne.

    Code de sortie : 0 valide, 1 invalide, 2 illisible. Le fichier en service n'est pas modifié.
    """
    try:
        loaded = load_policy(file)
    except PolicyError as exc:
        _report_error(exc, as_json)
        return
    counts = _counts(loaded)
    emit({"valid": True, "file": str(file), "name": loaded.name, "digest": loaded.digest, **counts}, as_json,
         lambda d: (f"Fichier de politique valide : {d['classes']} classe(s), {d['rules']} règle(s) dont "
                    f"{d['dated_rules']} datée(s), {d['mie_types']} type(s) de MIE, {d['populations']} "
                    f"population(s).\nEmpreinte SHA-256 : {d['digest']}"))


@policy.command("show")
@click.option("--as-of", "as_of", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Date (AAAA-MM-JJ) ; par défaut aujourd'hui.")
@click.option("--population", type=click.Choice(POPULATIONS), default=None,
              help="Réglages pour une population (type de contrat de l'annuaire).")
@click.option("--file", "file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Fichier à lire au lieu de HOSPICONNECT_POLICY_FILE.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def policy_show(ctx: click.Context, as_of: dt.datetime | None, population: str | None, file: Path | None,
                as_json: bool) -> None:
    """Affiche les réglages de chaque classe en vigueur à une date (politique configurée par défaut)."""
    path = file or runtime_of(ctx).settings.policy_file
    try:
        loaded = load_policy(path)
    except PolicyError as exc:
        _report_error(exc, as_json)
        return
    when: dt.date | dt.datetime = as_of.date() if as_of else dt.datetime.now(dt.timezone.utc)
    data = policy_summary(loaded, when, population)
    emit(data, as_json, lambda d: _show_text(loaded, d, population))


def _show_text(loaded: Policy, data: dict, population: str | None) -> str:
    day = dt.date.fromisoformat(data["as_of"])
    lines = [f"Politique « {loaded.name} » ({loaded.source}), en vigueur le {day:%d/%m/%Y}"
             + (f" pour la population « {population} »" if population else "") + " :", ""]
    for name in loaded.classes:
        lines.extend(describe_settings(loaded, loaded.effective(name, day, population)))
        lines.append("")
    lines.append("Types de MIE :")
    for mie_type in loaded.mie_types.values():
        standing = mie_type.standing(day)
        note = "" if standing == mie_type.status else f" — {MIE_STATUS_LABELS_FR[standing]} à cette date"
        lines.append(f"  {mie_type.describe()}, {mie_type.factors} facteur(s), jusqu'à {mie_type.max_acr}{note}")
    lines.append("")
    lines.append("Règles :")
    for rule in loaded.rules:
        state = "en vigueur" if rule.active_on(day) else "pas en vigueur"
        lines.append(f"  [{state}] {rule.id} ({rule.period_fr()}) : {rule.description}")
    lines.append(f"\nClasse de référence de la conformité : {loaded.compliance_class}"
                 + (" ; MIE remis après vérification d'identité" if loaded.require_identity_check else ""))
    return "\n".join(lines)


@policy.command("reload")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def policy_reload(ctx: click.Context, as_json: bool) -> None:
    """Vérifie le fichier configuré (HOSPICONNECT_POLICY_FILE) que les processus en service vont appliquer.

    Chaque processus relit le fichier de lui-même quand il change (au plus tard après
    HOSPICONNECT_POLICY_CHECK_SECONDS secondes) : aucun redémarrage ni signal n'est nécessaire. Un fichier
    invalide n'est pas appliqué, la version précédente reste en vigueur. Code de sortie : 0 valide, 1 invalide,
    2 illisible.
    """
    settings = runtime_of(ctx).settings
    interval = settings.policy_check_seconds
    try:
        loaded = load_policy(settings.policy_file)
    except PolicyError as exc:
        if not as_json:
            click.echo("Les processus en service gardent la version précédente de la politique.", err=True)
        _report_error(exc, as_json)
        return
    data = {"valid": True, "file": str(settings.policy_file), "name": loaded.name, "digest": loaded.digest,
            "check_seconds": interval, **_counts(loaded)}
    emit(data, as_json, lambda d: (
        f"Fichier de politique valide : « {d['name']} » ({d['file']}), empreinte SHA-256 {d['digest']}.\n"
        f"Les processus en service vérifient ce fichier toutes les {d['check_seconds']:g} s et appliquent cette "
        f"version d'eux-mêmes dans ce délai (chaque application est journalisée : admin:policy:reloaded) ; "
        "aucun redémarrage n'est nécessaire."))


@policy.command("explain")
@click.option("--identity", "identity_key", required=True,
              help="Identité : id public, identifiant de connexion, matricule ou RPPS.")
@click.option("--client", "client_id", required=True, help="Identifiant du client (client_id).")
@click.option("--as-of", "as_of", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Date (AAAA-MM-JJ) ; par défaut maintenant (l'âge de l'authentification n'est alors pas "
                   "vérifié pour une date).")
@click.option("--ip", "client_ip", default=None, help="Adresse d'origine supposée (réseaux de la politique).")
@click.option("--file", "file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Fichier à lire au lieu de HOSPICONNECT_POLICY_FILE.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def policy_explain_command(ctx: click.Context, identity_key: str, client_id: str, as_of: dt.datetime | None,
                           client_ip: str | None, file: Path | None, as_json: bool) -> None:
    """Explique la décision de la politique pour une personne et une application : réglages, décision pour
    chaque façon de se connecter avec ses MIE, règles en vigueur, conformité de ses MIE."""
    rt = runtime_of(ctx)
    try:
        loaded = load_policy(file or rt.settings.policy_file)
    except PolicyError as exc:
        _report_error(exc, as_json)
        return
    when: dt.date | dt.datetime = as_of.date() if as_of else dt.datetime.now(dt.timezone.utc)
    with rt.db.session() as session:
        data = policy_explain.explain(session, loaded, identity_key=identity_key, client_id=client_id, as_of=when,
                                      client_ip=client_ip)
    emit(data, as_json, policy_explain.render)
