"""``hospiconnect client …`` commands: registration of the relying parties of the OpenID provider.

Thin: each command parses its options, calls one service of :mod:`hospiconnect.idp.clients` in one
transaction and prints a French summary or (``--json``) one JSON document. A secret is printed once, at
creation or rotation, and never again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from hospiconnect.cli_common import Group, emit, runtime_of
from hospiconnect.errors import ValidationError
from hospiconnect.idp import clients
from hospiconnect.policies import load_policy

ACTOR = "cli"
PROFILE_LABELS = {"psc": "psc (délégation de Pro Santé Connect : SubjectNameID, SubjectOrganization, amr)"}
CLASS_LABELS = {"health-data": "données de santé (deux facteurs exigés)", "standard": "standard"}


@click.group(cls=Group)
def client() -> None:
    """Applications clientes (fournisseur d'identité OpenID Connect)."""


def _describe(data: dict[str, Any]) -> str:
    lines = [
        f"{data['name']}",
        f"  client_id         : {data['client_id']}",
        f"  classe            : {CLASS_LABELS.get(data['class'], data['class'])}",
        f"  authentification  : {data['token_endpoint_auth_method']}",
        f"  portées           : {' '.join(data['scopes'])}",
        "  redirections      : " + ("\n                      ".join(data["redirect_uris"]) or "—"),
        "  après déconnexion : " + ("\n                      ".join(data["post_logout_redirect_uris"]) or "—"),
        f"  canal arrière     : {data['backchannel_logout_uri'] or '—'}",
        f"  profil            : {PROFILE_LABELS.get(data.get('profile'), data.get('profile') or '—')}",
        f"  état              : {'désactivé le ' + data['disabled_at'] if data['disabled'] else 'actif'}",
    ]
    if data.get("client_secret"):
        lines.append(f"  secret            : {data['client_secret']}")
        lines.append("  (notez ce secret maintenant : il ne sera plus affiché)")
    return "\n".join(lines)


def _read_jwks(path: str | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValidationError(f"fichier JWKS illisible ({path}) : {exc.strerror}.", field="jwks") from exc
    except ValueError as exc:
        raise ValidationError(f"le fichier JWKS {path} n'est pas du JSON valide.", field="jwks") from exc
    if not isinstance(data, dict):
        raise ValidationError(f"le fichier JWKS {path} doit contenir un objet {{\"keys\": [...]}}.",
                              field="jwks")
    return data


_CLASSES = "hospiconnect.policy_classes"


def _policy_class(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """Accept a class that the configured access policy declares (an invalid policy file: its errors, exit 1)."""
    if value is None:
        return value
    declared = tuple(load_policy(runtime_of(ctx).settings.policy_file).classes)
    ctx.meta[_CLASSES] = declared
    if value not in declared:
        raise click.BadParameter(f"classe inconnue « {value} » : la politique d'accès déclare "
                                 f"{', '.join(declared)}.")
    return value


@client.command("add")
@click.option("--name", required=True, help="Nom de l'application.")
@click.option("--redirect-uri", "redirect_uris", multiple=True, required=True,
              help="URI de redirection (https ; http seulement pour localhost). Répétable.")
@click.option("--class", "sensitivity", required=True, metavar="CLASSE", callback=_policy_class,
              help="Classe de la politique d'accès (HOSPICONNECT_POLICY_FILE), qui dit ce qu'elle exige : "
                   "health-data (données de santé, deux facteurs), standard, ou toute classe qu'elle déclare.")
@click.option("--public", "public", is_flag=True, help="Client public (sans secret, PKCE seul).")
@click.option("--auth-method", type=click.Choice(clients.AUTH_METHODS), default=None,
              help="Authentification au point de jeton (défaut client_secret_basic).")
@click.option("--post-logout-redirect-uri", "post_logout_redirect_uris", multiple=True,
              help="URI de retour après déconnexion. Répétable.")
@click.option("--backchannel-logout-uri", default=None, help="URI de déconnexion par canal arrière.")
@click.option("--jwks-file", default=None, help="Fichier JSON des clés publiques (private_key_jwt).")
@click.option("--scope", "scopes", multiple=True, help="Portées autorisées (défaut : openid profile email).")
@click.option("--client-id", default=None, help="Identifiant imposé (sinon aléatoire).")
@click.option("--profile", type=click.Choice(clients.PROFILES), default=None,
              help="Profil de revendications : psc enregistre Pro Santé Connect, qui délègue l'authentification "
                   "des professionnels reliés à leur RPPS (SubjectNameID, SubjectOrganization, amr convenu).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def client_add(ctx: click.Context, name: str, redirect_uris: tuple[str, ...], sensitivity: str, public: bool,
               auth_method: str | None, post_logout_redirect_uris: tuple[str, ...],
               backchannel_logout_uri: str | None, jwks_file: str | None, scopes: tuple[str, ...],
               client_id: str | None, profile: str | None, as_json: bool) -> None:
    """Enregistre une application cliente ; son secret est affiché une seule fois."""
    if public and auth_method not in (None, "none"):
        raise ValidationError("--public est incompatible avec --auth-method " + str(auth_method) + ".")
    method = "none" if public else (auth_method or "client_secret_basic")
    jwks = _read_jwks(jwks_file)
    scope = " ".join(s for item in scopes for s in item.replace(",", " ").split()) or "openid profile email"
    rt = runtime_of(ctx)
    with rt.db.session() as session:
        row, secret = clients.add_client(
            session, rt.keys, name=name, redirect_uris=list(redirect_uris), sensitivity=sensitivity,
            auth_method=method, post_logout_redirect_uris=list(post_logout_redirect_uris),
            backchannel_logout_uri=backchannel_logout_uri, jwks=jwks, scopes=scope, client_id=client_id,
            profile=profile, classes=ctx.meta.get(_CLASSES), actor=ACTOR)
        data = clients.client_as_dict(row)
    data["client_secret"] = secret
    emit(data, as_json, _describe)


@client.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def client_list(ctx: click.Context, as_json: bool) -> None:
    """Liste les applications clientes."""
    rt = runtime_of(ctx)
    with rt.db.session() as session:
        rows = [clients.client_as_dict(c) for c in clients.list_clients(session)]
    emit(rows, as_json, lambda rs: "\n".join(
        f"{r['client_id']}\t{r['name']}\t{r['class']}\t{r['token_endpoint_auth_method']}\t"
        f"{'désactivé' if r['disabled'] else 'actif'}" for r in rs) or "Aucun client.")


@client.command("show")
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def client_show(ctx: click.Context, client_id: str, as_json: bool) -> None:
    """Affiche une application cliente (jamais son secret)."""
    rt = runtime_of(ctx)
    with rt.db.session() as session:
        data = clients.client_as_dict(clients.require_client(session, client_id))
    emit(data, as_json, _describe)


@client.command("rotate-secret")
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def client_rotate_secret(ctx: click.Context, client_id: str, as_json: bool) -> None:
    """Remplace le secret d'une application ; l'ancien cesse aussitôt de fonctionner."""
    rt = runtime_of(ctx)
    with rt.db.session() as session:
        secret = clients.rotate_secret(session, rt.keys, client_id, actor=ACTOR)
    emit({"client_id": client_id, "client_secret": secret}, as_json,
         lambda d: f"{d['client_secret']}\n(nouveau secret de « {d['client_id']} » ; il ne sera plus affiché, "
                   "l'ancien ne fonctionne plus)")


@client.command("disable")
@click.argument("client_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def client_disable(ctx: click.Context, client_id: str, as_json: bool) -> None:
    """Désactive une application : plus de connexion ni de jeton, jetons en cours révoqués."""
    rt = runtime_of(ctx)
    with rt.db.session() as session:
        data = clients.client_as_dict(clients.disable(session, client_id, actor=ACTOR))
    emit(data, as_json, lambda d: f"Client « {d['client_id']} » désactivé.")
