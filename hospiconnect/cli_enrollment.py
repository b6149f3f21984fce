"""``hospiconnect enrollment …`` commands: remote enrollment through FranceConnect+.

Commands are thin: they parse options, call one service in one transaction, and print either a French
summary or (``--json``) one JSON document on stdout. Errors go to stderr with a non-zero exit code.
"""

from __future__ import annotations

import click

from hospiconnect.cli_common import Group, emit, runtime_of
from hospiconnect.directory import services as directory
from hospiconnect.enrollment import remote

ACTOR = "cli"


@click.group(cls=Group)
def enrollment() -> None:
    """Enrôlement des professionnels (invitations FranceConnect+)."""


@enrollment.command("invite")
@click.argument("identity")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def invite(ctx: click.Context, identity: str, as_json: bool) -> None:
    """Envoie une invitation FranceConnect+ à IDENTITY (id public, identifiant de connexion, matricule ou RPPS).

    Ouvre un dossier d'enrôlement s'il n'y en a pas d'ouvert ; une invitation précédente ne sert plus."""
    rt = runtime_of(ctx)
    with rt.db.session() as session:
        person = directory.get_identity(session, identity)
        case, invitation, _url, opened = remote.invite_identity(session, rt.keys, rt.settings, person, actor=ACTOR)
        data = {"identity": person.public_id, "user_name": person.user_name, "case": case.public_id,
                "case_opened": opened, "kind": case.kind, "email": invitation.email,
                "expires_at": invitation.expires_at.isoformat()}
    # The link is not printed: it goes only to the person's professional mailbox.
    emit(data, as_json, lambda d: (
        f"Invitation FranceConnect+ envoyée à {d['email']} pour {d['user_name']} "
        f"({'nouveau dossier' if d['case_opened'] else 'dossier'} {d['case']}), valable jusqu'au {d['expires_at']}. "
        "Elle part avec les prochains travaux périodiques (hospiconnect jobs run)."))
