"""``hospiconnect keys …`` commands: the key-encryption keys that protect secrets at rest."""

from __future__ import annotations

import click

from hospiconnect.cli_common import Group, emit, runtime_of


@click.group(cls=Group)
def keys() -> None:
    """Clés de l'instance."""


def _reload(rt) -> None:  # type: ignore[no-untyped-def]
    # Runtime caches the keys it read at start-up; after a rotation the next access must read the file again.
    rt.__dict__.pop("keys", None)


@keys.command("rotate-kek")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def rotate_kek(ctx: click.Context, as_json: bool) -> None:
    """Ajoute une clé de chiffrement des secrets, la rend courante et rechiffre les secrets stockés.

    Les anciennes clés restent dans le fichier pour déchiffrer ce qui ne serait pas encore rechiffré.
    """
    from hospiconnect import crypto
    from hospiconnect.audit import service as audit
    from hospiconnect.audit import tags
    from hospiconnect.authenticators import services

    rt = runtime_of(ctx)
    previous = crypto.load_keys(rt.settings.secret_key_file).current_kek_id
    kid = crypto.rotate_kek(rt.settings.secret_key_file)
    _reload(rt)
    from hospiconnect.enrollment import upstream_keys
    from hospiconnect.idp import keys as signing_keys

    with rt.db.session() as session:
        count = (services.reencrypt_secrets(session, rt.keys) + signing_keys.reencrypt(session, rt.keys)
                 + upstream_keys.reencrypt(session, rt.keys))
        audit.record(session, tags.SYSTEM_KEK_ROTATED, actor="cli", subject=f"kek:{kid}",
                     details={"previous_kid": previous, "kid": kid, "reencrypted": count})
        by_key = services.secrets_by_key(session)
    data = {"kid": kid, "previous_kid": previous, "key_ids": sorted(rt.keys.kek), "reencrypted": count,
            "secrets_by_key": by_key}
    emit(data, as_json, lambda d: (
        f"Nouvelle clé de chiffrement {d['kid']} (précédente : {d['previous_kid']}). "
        f"{d['reencrypted']} secret(s) rechiffré(s)."))


@keys.command("reencrypt")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def reencrypt(ctx: click.Context, as_json: bool) -> None:
    """Rechiffre avec la clé courante les secrets encore chiffrés par une ancienne clé (peut être relancé)."""
    from hospiconnect.authenticators import services

    from hospiconnect.enrollment import upstream_keys
    from hospiconnect.idp import keys as signing_keys

    rt = runtime_of(ctx)
    with rt.db.session() as session:
        count = (services.reencrypt_secrets(session, rt.keys) + signing_keys.reencrypt(session, rt.keys)
                 + upstream_keys.reencrypt(session, rt.keys))
        by_key = services.secrets_by_key(session)
    data = {"kid": rt.keys.current_kek_id, "reencrypted": count, "secrets_by_key": by_key}
    emit(data, as_json, lambda d: f"{d['reencrypted']} secret(s) rechiffré(s) avec la clé {d['kid']}.")


@keys.command("rotate")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def rotate(ctx: click.Context, as_json: bool) -> None:
    """Crée de nouvelles clés de signature (ES256, RS256) ; les anciennes restent publiées jusqu'à
    l'expiration de tout ce qu'elles ont signé."""
    from hospiconnect.idp import keys as signing_keys

    rt = runtime_of(ctx)
    with rt.db.session() as session:
        data = signing_keys.rotate(session, rt.keys, rt.settings, actor="cli")
    emit(data, as_json, lambda d: (
        f"Nouvelles clés de signature : {', '.join(d['created'])}. Anciennes clés publiées jusqu'au "
        f"{d['unpublish_after']}."))
