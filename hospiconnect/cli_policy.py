"""``hospiconnect policy …``: check a policy file, show the settings in force on a date.

Neither command touches the database. Exit codes of ``policy check``: 0 valid, 1 invalid, 2 unreadable.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import click

from hospiconnect.cli_common import Group, emit, runtime_of
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
