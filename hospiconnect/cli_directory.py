"""``hospiconnect directory …`` commands: the HR import and the day-to-day directory operations.

Commands are thin: they parse options, call one directory service in one transaction, and print either a
French summary or (``--json``) one JSON document on stdout. Errors go to stderr with a non-zero exit code.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import Any

import click

from hospiconnect.cli_common import Group, emit, runtime_of
from hospiconnect.directory import importer, services
from hospiconnect.directory.models import Identity
from hospiconnect.directory.validation import CONTRACT_TYPES, STATUSES
from hospiconnect.errors import ValidationError

ACTOR = "cli"
EXIT_REJECTED = 1
EXIT_UNUSABLE = 2
# The human report stays readable on a terminal; --json always carries the complete lists.
HUMAN_ACTIONS_SHOWN = 100
HUMAN_REJECTIONS_SHOWN = 500



class _Date(click.ParamType):
    """A calendar date written AAAA-MM-JJ, refused with a French message."""

    name = "AAAA-MM-JJ"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> dt.date:
        if isinstance(value, dt.date):
            return value
        try:
            return dt.date.fromisoformat(str(value).strip())
        except ValueError:
            self.fail(f"date invalide {value!r} (attendu AAAA-MM-JJ).", param, ctx)


DATE = _Date()

ACTION_LABELS = {"created": "création", "updated": "mise à jour", "ended": "fin de contrat",
                 "unchanged": "inchangée"}
# Option names of ``directory add``, to tell the operator which option carries a bad value.
OPTION_OF_FIELD = {
    "birth_family_name": "--birth-name", "usage_name": "--usage-name", "given_names": "--given-names",
    "birth_date": "--birth-date", "birth_place": "--birth-place", "birth_country": "--birth-country",
    "gender": "--gender", "email": "--email", "rpps": "--rpps", "external_id": "--external-id",
    "user_name": "--user-name", "contract_type": "--contract", "start_date": "--start-date",
    "end_date": "--end-date", "establishments": "--finess", "units": "--unit", "roles": "--role",
}


@click.group(cls=Group)
def directory() -> None:
    """Annuaire local des professionnels."""


def _err(message: str) -> None:
    click.echo(message, err=True)


def _describe(identity: dict[str, Any]) -> str:
    """Return the French multi-line description of an identity (from ``identity_as_dict``)."""
    name = f"{identity['given_names']} {identity['usage_name'] or identity['birth_family_name']}"
    if identity["usage_name"]:
        name += f" (né(e) {identity['birth_family_name']})"
    lines = [
        f"{name}",
        f"  identifiant     : {identity['user_name']}",
        f"  id              : {identity['id']}",
        f"  statut          : {STATUSES.get(identity['status'], identity['status'])}"
        + (f" ({identity['status_reason']})" if identity["status_reason"] else ""),
        f"  matricule       : {identity['external_id'] or '—'}",
        f"  RPPS            : {identity['rpps'] or '—'}",
        f"  naissance       : {identity['birth_date']}, {identity['birth_place'] or '—'} ({identity['birth_country']})",
        f"  contrat         : {CONTRACT_TYPES.get(identity['contract_type'], identity['contract_type'])}"
        f", du {identity['start_date'] or '?'} au {identity['end_date'] or '—'}",
        f"  e-mail          : {identity['email'] or '—'}",
        f"  établissements  : {', '.join(identity['establishments']) or '—'}",
        f"  unités          : {', '.join(identity['units']) or '—'}",
        f"  rôles           : {', '.join(identity['roles']) or '—'}",
    ]
    return "\n".join(lines)


# --- import --------------------------------------------------------------------------------------------

def _import_human(data: dict[str, Any]) -> str:
    counts = data["counts"]
    lines = [
        f"Import de {data['file']} au {data['today']} — mode {importer.MODES[data['mode']]}",
        f"{data['rows']} ligne(s) lue(s) : {counts['created']} création(s), {counts['updated']} mise(s) à jour, "
        f"{counts['ended']} fin(s) de contrat, {counts['unchanged']} inchangée(s), {counts['rejected']} refusée(s).",
    ]
    lines += [f"Attention : {w}" for w in data["warnings"]]
    if data["rejected"]:
        lines.append("Lignes refusées :")
        for row in data["rejected"][:HUMAN_REJECTIONS_SHOWN]:
            who = f" (matricule {row['matricule']})" if row["matricule"] else ""
            lines.append(f"  ligne {row['line']}{who} : " + " ; ".join(row["reasons"]))
        if len(data["rejected"]) > HUMAN_REJECTIONS_SHOWN:
            lines.append(f"  … et {len(data['rejected']) - HUMAN_REJECTIONS_SHOWN} autre(s) "
                         "(--json pour la liste complète).")
    actions = data["actions"]
    if actions:
        lines.append("Identités créées ou modifiées :" if data["applied"] else "Ce qui serait fait :")
        for action in actions[:HUMAN_ACTIONS_SHOWN]:
            detail = ""
            if action.get("fields"):
                detail = " (" + ", ".join(action["fields"]) + ")"
            if action.get("end_date"):
                detail += f" fin au {action['end_date']}"
            lines.append(f"  ligne {action['line']}  {action['matricule']}  {ACTION_LABELS[action['action']]}  "
                         f"{action['user_name']}{detail}")
        if len(actions) > HUMAN_ACTIONS_SHOWN:
            lines.append(f"  … et {len(actions) - HUMAN_ACTIONS_SHOWN} autre(s) (--json pour la liste complète).")
    if data["mode"] == "dry_run":
        lines.append("Simulation : rien n'a été enregistré.")
    elif data["applied"]:
        lines.append(f"Import enregistré ({data['journal_events']} événement(s) au journal).")
    if "invitations" in data:
        invitations = data["invitations"]
        lines.append(f"Invitations FranceConnect+ : {invitations['sent']} envoyée(s) aux nouvelles identités "
                     "(elles partent avec les prochains travaux périodiques).")
        for missed in invitations["not_sent"][:HUMAN_REJECTIONS_SHOWN]:
            lines.append(f"  pas d'invitation pour {missed['user_name']} : {missed['message']}")
    else:
        lines.append("Aucune modification enregistrée : corrigez les lignes refusées, ou relancez avec --partial "
                     "pour n'importer que les lignes valides.")
    return "\n".join(lines)


@directory.command("import")
@click.argument("file", type=click.Path(dir_okay=True, path_type=str))
@click.option("--dry-run", is_flag=True, help="Vérifie et montre ce qui serait fait, sans rien écrire.")
@click.option("--partial", is_flag=True, help="Importe les lignes valides même si d'autres sont refusées.")
@click.option("--today", type=DATE, default=None, help="Date du jour (AAAA-MM-JJ) pour juger les dates de fin.")
@click.option("--invite", is_flag=True,
              help="Envoie une invitation FranceConnect+ (enrôlement à distance) à chaque identité créée.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def import_command(ctx: click.Context, file: str, dry_run: bool, partial: bool, today: dt.date | None,
                   invite: bool, as_json: bool) -> None:
    """Importe l'export CSV du SIRH (création, mise à jour et fin des identités par matricule).

    Avec --invite, chaque nouvelle identité reçoit une invitation à s'enrôler à distance avec FranceConnect+.
    Code de sortie : 0 tout est appliqué, 1 des lignes sont refusées, 2 fichier inutilisable.
    """
    day = today or dt.date.today()
    try:
        parsed = importer.read_hr_file(file, today=day)
    except importer.UnusableFile as exc:
        if as_json:
            click.echo(json.dumps({"file": file, "applied": False, "error": exc.message,
                                   "exit_code": EXIT_UNUSABLE}, ensure_ascii=False, indent=2))
        _err(f"Erreur : fichier inutilisable : {exc.message} Rien n'a été enregistré.")
        sys.exit(EXIT_UNUSABLE)
    rt = runtime_of(ctx)
    with rt.db.session() as session:
        report = importer.run_import(session, parsed, today=day, dry_run=dry_run, partial=partial)
    data = report.as_dict()
    if invite and report.applied:
        data["invitations"] = _invite_created(rt, [c.public_id for c in report.plan.changes if c.action == "created"])
    emit(data, as_json, _import_human)
    sys.exit(report.exit_code)


def _invite_created(rt: Any, public_ids: list[str]) -> dict[str, Any]:
    """Invite each identity just created (one transaction each); return what was sent and what was not."""
    from hospiconnect.enrollment import remote
    from hospiconnect.enrollment.interfaces import EnrollmentError

    sent = 0
    not_sent: list[dict[str, str]] = []
    for public_id in public_ids:
        user_name = public_id
        try:
            with rt.db.session() as session:
                person = services.get_identity(session, public_id)
                user_name = person.user_name
                remote.invite_identity(session, rt.keys, rt.settings, person, actor="cli")
            sent += 1
        except EnrollmentError as exc:  # journaled by the service; the others are still invited
            not_sent.append({"identity": public_id, "user_name": user_name,
                             "reason": str(getattr(exc, "reason", exc.code)), "message": exc.message})
    return {"sent": sent, "not_sent": not_sent}


# --- add / show / list ---------------------------------------------------------------------------------

def _print_validation_errors(exc: ValidationError) -> None:
    _err("Erreur : identité refusée, champ(s) invalide(s) :")
    for field, message in (exc.errors or {"": exc.message}).items():
        option = OPTION_OF_FIELD.get(field, field)
        _err(f"  {option} : {message}" if option else f"  {message}")


def _print_homonyms(candidates: list[Identity]) -> None:
    _err("Erreur : une identité existe déjà avec le même nom de naissance, le même premier prénom et la même "
         "date de naissance :")
    for candidate in candidates:
        _err(f"  {candidate.display_name} — {candidate.user_name} — né(e) le {candidate.birth_date.isoformat()}"
             f" — {STATUSES.get(candidate.status, candidate.status)} — matricule {candidate.external_id or '—'}"
             f" — id {candidate.public_id}")
    _err("S'il s'agit de la même personne, ne la créez pas une seconde fois. S'il s'agit d'une autre personne "
         "(homonyme), relancez la commande avec --confirm-homonym.")


@directory.command("add")
@click.option("--birth-name", required=True, help="Nom de naissance.")
@click.option("--usage-name", default=None, help="Nom d'usage.")
@click.option("--given-names", required=True, help="Tous les prénoms, séparés par des espaces.")
@click.option("--birth-date", required=True, help="Date de naissance (AAAA-MM-JJ ou JJ/MM/AAAA).")
@click.option("--birth-place", default=None, help="Code INSEE de la commune de naissance (vide si né à l'étranger).")
@click.option("--birth-country", default="99100", show_default=True, help="Code INSEE du pays de naissance.")
@click.option("--gender", required=True, help="F, M ou X.")
@click.option("--email", default=None)
@click.option("--rpps", default=None, help="Numéro RPPS (11 chiffres).")
@click.option("--external-id", default=None, help="Matricule RH.")
@click.option("--user-name", default=None, help="Identifiant de connexion (proposé automatiquement sinon).")
@click.option("--contract", required=True,
              help="permanent, fixed_term, replacement, interim, vacataire, trainee, contractor (ou CDI, CDD…).")
@click.option("--start-date", default=None, help="Date d'arrivée.")
@click.option("--end-date", default=None, help="Date de fin de contrat.")
@click.option("--finess", multiple=True, help="Numéro FINESS d'un établissement (répétable).")
@click.option("--unit", multiple=True, help="Code d'une unité (répétable).")
@click.option("--role", multiple=True, help="Rôle (répétable).")
@click.option("--confirm-homonym", is_flag=True, help="Confirme qu'il s'agit d'une autre personne qu'un homonyme.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def add(ctx: click.Context, birth_name: str, usage_name: str | None, given_names: str, birth_date: str,
        birth_place: str | None, birth_country: str, gender: str, email: str | None, rpps: str | None,
        external_id: str | None, user_name: str | None, contract: str, start_date: str | None,
        end_date: str | None, finess: tuple[str, ...], unit: tuple[str, ...], role: tuple[str, ...],
        confirm_homonym: bool, as_json: bool) -> None:
    """Crée une identité dans l'annuaire."""
    raw = {
        "birth_family_name": birth_name, "usage_name": usage_name, "given_names": given_names,
        "birth_date": birth_date, "birth_place": birth_place, "birth_country": birth_country, "gender": gender,
        "email": email, "rpps": rpps, "external_id": external_id, "user_name": user_name,
        "contract_type": importer.contract_type_from_label(contract) or contract,
        "start_date": start_date, "end_date": end_date,
        "establishments": list(finess), "units": list(unit), "roles": list(role),
    }
    try:
        data = services.validate_identity(raw)
    except ValidationError as exc:
        _print_validation_errors(exc)
        sys.exit(EXIT_REJECTED)
    rt = runtime_of(ctx)
    with rt.db.session() as session:
        try:
            identity = services.create_identity(session, data, actor=ACTOR, confirm_homonym=confirm_homonym)
        except services.DuplicateIdentity as exc:
            # Described inside the session: the candidates are not readable once it is closed.
            _print_homonyms(exc.candidates)
            sys.exit(EXIT_REJECTED)  # leaves the block: the transaction, which wrote nothing, is rolled back
        out = services.identity_as_dict(identity)
    emit(out, as_json, lambda d: f"Identité créée : {d['user_name']} ({d['id']}), statut "
                                 f"{STATUSES.get(d['status'], d['status'])}.")


@directory.command("show")
@click.argument("key")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def show(ctx: click.Context, key: str, as_json: bool) -> None:
    """Affiche une identité (id public, identifiant de connexion, matricule ou RPPS)."""
    rt = runtime_of(ctx)
    with rt.db.session() as session:
        out = services.identity_as_dict(services.get_identity(session, key))
    emit(out, as_json, _describe)


@directory.command("list")
@click.option("--status", type=click.Choice(list(STATUSES)), default=None)
@click.option("--search", default=None, help="Début du nom, du prénom ou de l'identifiant ; RPPS ; e-mail.")
@click.option("--population", type=click.Choice(["rpps", "local"]), default=None)
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_command(ctx: click.Context, status: str | None, search: str | None, population: str | None,
                 limit: int, offset: int, as_json: bool) -> None:
    """Liste les identités, triées par nom."""
    rt = runtime_of(ctx)
    with rt.db.session() as session:
        total, rows = services.list_identities(session, status=status, search=search, population=population,
                                               limit=limit, offset=offset)
        items = [services.identity_as_dict(i) for i in rows]
    data = {"total": total, "limit": limit, "offset": offset, "items": items}

    def human(d: dict[str, Any]) -> str:
        if not d["items"]:
            return "Aucune identité ne correspond."
        lines = [f"{len(d['items'])} identité(s) sur {d['total']} (à partir de la n° {d['offset'] + 1}) :"]
        for item in d["items"]:
            name = f"{(item['usage_name'] or item['birth_family_name']).upper()} {item['given_names']}"
            lines.append(f"  {item['user_name']:<24} {name:<40} {STATUSES.get(item['status'], item['status']):<10} "
                         f"{item['rpps'] or '':<11} {item['external_id'] or ''}")
        return "\n".join(lines)

    emit(data, as_json, human)


# --- lifecycle -----------------------------------------------------------------------------------------

def _status_line(verb: str) -> Any:
    def human(d: dict[str, Any]) -> str:
        return (f"Identité {d['user_name']} {verb} : statut {STATUSES.get(d['status'], d['status'])}"
                + (f", fin au {d['end_date']}" if d["end_date"] else "") + ".")
    return human


def _lifecycle(ctx: click.Context, key: str, action: Any) -> dict[str, Any]:
    rt = runtime_of(ctx)
    with rt.db.session() as session:
        identity: Identity = services.get_identity(session, key)
        action(session, identity)
        return services.identity_as_dict(identity)


@directory.command("suspend")
@click.argument("key")
@click.option("--reason", required=True, help="Motif (journalisé).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def suspend(ctx: click.Context, key: str, reason: str, as_json: bool) -> None:
    """Suspend une identité (ses accès sont refusés)."""
    out = _lifecycle(ctx, key, lambda s, i: services.suspend(s, i, actor=ACTOR, reason=reason))
    emit(out, as_json, _status_line("suspendue"))


@directory.command("reactivate")
@click.argument("key")
@click.option("--reason", default="", help="Motif (journalisé).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def reactivate(ctx: click.Context, key: str, reason: str, as_json: bool) -> None:
    """Réactive une identité suspendue."""
    out = _lifecycle(ctx, key, lambda s, i: services.reactivate(s, i, actor=ACTOR, reason=reason))
    emit(out, as_json, _status_line("réactivée"))


@directory.command("end")
@click.argument("key")
@click.option("--date", "end_date", type=DATE, default=None, help="Date de fin (AAAA-MM-JJ, défaut : aujourd'hui).")
@click.option("--reason", default="fin de contrat", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def end(ctx: click.Context, key: str, end_date: dt.date | None, reason: str, as_json: bool) -> None:
    """Fixe la date de fin ; si elle est atteinte, l'identité est suspendue aussitôt.

    Elle passe « partie » après le délai de grâce (hospiconnect jobs run).
    """
    out = _lifecycle(ctx, key, lambda s, i: services.end(s, i, actor=ACTOR, end_date=end_date, reason=reason))
    emit(out, as_json, _status_line("terminée"))
