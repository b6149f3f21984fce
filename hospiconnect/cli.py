"""The ``hospiconnect`` command line. Commands are thin: they parse, call one service, print.

Every reporting command accepts ``--json`` and then prints one JSON document on stdout; errors go to
stderr with a non-zero exit code.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
from pathlib import Path

import click

from hospiconnect.cli_common import Group, emit, fail, runtime_of
from hospiconnect.settings import DEFAULT_FORWARDED_ALLOW_IPS

@click.group(cls=Group)
@click.pass_context
def main(ctx: click.Context) -> None:
    """HospiConnect : annuaire, MIE et fournisseur d'identité de l'établissement."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@main.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def init(ctx: click.Context, as_json: bool) -> None:
    """Crée ou met à jour la base et génère les clés au premier lancement."""
    rt = runtime_of(ctx)
    result = rt.init()
    from hospiconnect.idp import keys as signing_keys

    from hospiconnect.enrollment import upstream_keys

    with rt.db.session() as session:
        result["signing_keys_created"] = signing_keys.ensure_keys(session, rt.keys)
        result["encryption_keys_created"] = upstream_keys.ensure_keys(session, rt.keys)
    for message in rt.settings.insecure_defaults():
        click.echo(f"Attention : {message}", err=True)
    emit(result, as_json, lambda r: (
        ("Clés générées dans " + r["key_file"] + "\n" if r["keys_created"] else "")
        + f"Base à jour (révision {r['revision']})."))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=1), envvar="HOSPICONNECT_WORKERS",
              show_envvar=True, help="Processus de travail.")
@click.option("--threads", default=4, show_default=True, type=click.IntRange(min=1), envvar="HOSPICONNECT_THREADS",
              show_envvar=True, help="Fils d'exécution par processus.")
@click.option("--pid", "pidfile", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Fichier où écrire le PID du processus maître : « kill -HUP $(cat FICHIER) » remplace les "
                   "processus de travail sans interrompre le service (ils relisent les fichiers de clés et "
                   "de configuration ; l'environnement et le code installé restent ceux du démarrage).")
@click.option("--forwarded-allow-ips", default=DEFAULT_FORWARDED_ALLOW_IPS, show_default=True,
              envvar="HOSPICONNECT_FORWARDED_ALLOW_IPS", show_envvar=True,
              help="Adresses des mandataires inverses dont gunicorn croit l'en-tête X-Forwarded-Proto "
                   "(virgules ; « * » : tous).")
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, workers: int, threads: int, pidfile: Path | None,
          forwarded_allow_ips: str) -> None:
    """Lance le serveur de production (gunicorn)."""
    from hospiconnect.server import metrics_dir_for, run_gunicorn

    rt = runtime_of(ctx)
    if not rt.schema_is_current():
        fail("la base n'est pas à jour : lancez « hospiconnect init ».")
    run_gunicorn(host=host, port=port, workers=workers, threads=threads,
                 pidfile=pidfile.absolute() if pidfile is not None else None,
                 forwarded_allow_ips=forwarded_allow_ips,
                 metrics_dir=metrics_dir_for(rt.settings.instance_path, port))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--identities", default=300, show_default=True, type=int)
@click.option("--history-days", default=365, show_default=True, type=click.IntRange(min=0),
              help="Jours d'historique donnés à l'annuaire créé (trajectoire du RSSI) ; 0 : aucun.")
@click.pass_context
def demo(ctx: click.Context, host: str, port: int, identities: int, history_days: int) -> None:
    """Prépare la base, crée un établissement de démonstration avec un an d'historique et le sert."""
    from hospiconnect.devtools.seed import credentials_banner, demo_credentials, seed_demo
    from hospiconnect.server import run_gunicorn

    import os

    if not os.environ.get("HOSPICONNECT_ISSUER"):
        # WebAuthn needs a host name (not an IP address): the demo is served as http://localhost:PORT.
        os.environ["HOSPICONNECT_ISSUER"] = f"http://localhost:{port}"
        ctx.find_root().obj = None
    rt = runtime_of(ctx)
    if rt.settings.is_production:
        fail("la démonstration est refusée en production.")
    rt.init()
    from hospiconnect.idp import keys as signing_keys

    from hospiconnect.enrollment import upstream_keys

    with rt.db.session() as session:
        signing_keys.ensure_keys(session, rt.keys)
        upstream_keys.ensure_keys(session, rt.keys)
        report = seed_demo(session, rt.keys, count=identities, settings=rt.settings, history_days=history_days)
        # Demo only (production was refused above): the seeds are printed so that a newcomer can sign in.
        accounts = demo_credentials(session, rt.keys, settings=rt.settings)
    click.echo(f"Établissement de démonstration prêt : {report}")
    for line in credentials_banner(accounts, rt.settings):
        click.echo(line)
    click.echo(f"Ouvrez {rt.settings.issuer}/demo/")
    run_gunicorn(host=host, port=port, workers=1, threads=4)


@main.group(cls=Group)
def audit() -> None:
    """Journal d'audit."""


@audit.command("verify")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def audit_verify(ctx: click.Context, as_json: bool) -> None:
    """Vérifie la chaîne d'empreintes du journal ; indique le premier maillon rompu."""
    from hospiconnect.audit import service

    rt = runtime_of(ctx)
    with rt.db.session() as session:
        report = service.verify(session)
    emit(report.as_dict(), as_json, lambda r: (
        f"Journal intègre : {r['checked']} entrées vérifiées." if r["ok"]
        else f"Journal ROMPU à l'entrée n° {r['broken_at_seq']} : {r['reason']}"))
    if not report.ok:
        sys.exit(2)


@main.group(cls=Group)
def token() -> None:
    """Jetons d'accès aux API (SCIM…)."""


@token.command("create")
@click.option("--scope", "scopes", multiple=True, required=True, help="scim, scim:read, directory")
@click.option("--name", required=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def token_create(ctx: click.Context, scopes: tuple[str, ...], name: str, as_json: bool) -> None:
    """Crée un jeton ; il est affiché une seule fois."""
    from hospiconnect.apitokens import services

    rt = runtime_of(ctx)
    split = [s for item in scopes for s in item.replace(",", " ").split()]
    with rt.db.session() as session:
        row, plaintext = services.create_token(session, rt.keys, name=name, scopes=split, actor="cli")
        data = {"name": row.name, "scopes": row.scopes.split(), "token": plaintext}
    emit(data, as_json, lambda d: f"{d['token']}\n(jeton « {d['name']} », portées {' '.join(d['scopes'])} ; "
                                 "il ne sera plus affiché)")


@token.command("revoke")
@click.option("--name", required=True)
@click.pass_context
def token_revoke(ctx: click.Context, name: str) -> None:
    """Révoque un jeton."""
    from hospiconnect.apitokens import services

    rt = runtime_of(ctx)
    with rt.db.session() as session:
        services.revoke_token(session, name=name, actor="cli")
    click.echo(f"Jeton « {name} » révoqué.")


@token.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def token_list(ctx: click.Context, as_json: bool) -> None:
    from hospiconnect.apitokens import services

    rt = runtime_of(ctx)
    with rt.db.session() as session:
        rows = [{"name": t.name, "scopes": t.scopes.split(), "created_at": t.created_at,
                 "last_used_at": t.last_used_at, "revoked": t.revoked_at is not None}
                for t in services.list_tokens(session)]
    emit(rows, as_json, lambda rs: "\n".join(
        f"{r['name']}\t{' '.join(r['scopes'])}\t{'révoqué' if r['revoked'] else 'actif'}" for r in rs) or "Aucun jeton.")


@main.group(cls=Group)
def jobs() -> None:
    """Travaux périodiques."""


@jobs.command("run")
@click.option("--today", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Date du jour (pour rejouer un jour précis).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def jobs_run(ctx: click.Context, today: dt.datetime | None, as_json: bool) -> None:
    """Travaux périodiques : dates d'arrivée et de fin, sessions expirées, purges, notifications,
    déconnexions back-channel, relevé quotidien de la trajectoire. Peut être relancé sans effet de bord."""
    from hospiconnect.jobs import run_all

    rt = runtime_of(ctx)
    data = run_all(rt, today=today.date() if today else None)
    emit(data, as_json, lambda d: (
        f"Annuaire au {d['date']} : {d['directory']['activated']} activée(s), "
        f"{d['directory']['suspended']} suspendue(s), {d['directory']['departed']} partie(s) ; "
        f"{d['sessions_ended']} session(s) terminée(s) ; "
        f"{d['notifications']['sent']} notification(s) envoyée(s) ; "
        + (f"relevé de trajectoire : {d['trajectory'].get('compliant', 0)} conforme(s) sur "
           f"{d['trajectory'].get('active', 0)} identité(s) active(s)." if "error" not in d["trajectory"]
           else f"relevé de trajectoire non pris : {d['trajectory']['error']}")))


def _register_extensions() -> None:
    from hospiconnect import cli_directory, cli_idp

    main.add_command(cli_directory.directory)
    main.add_command(cli_idp.client)
    from hospiconnect import cli_keys
    main.add_command(cli_keys.keys)
    from hospiconnect import cli_enrollment
    main.add_command(cli_enrollment.enrollment)
    from hospiconnect import cli_policy
    main.add_command(cli_policy.policy)
    from hospiconnect import cli_authorizations
    main.add_command(cli_authorizations.exception)
    main.add_command(cli_authorizations.emergency_group)
    from hospiconnect import cli_trajectory
    main.add_command(cli_trajectory.trajectory)


_register_extensions()
