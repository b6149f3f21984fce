"""Client registration: URI rules, secrets shown once and stored hashed, rotation, disabling."""

import json

import pytest
from sqlalchemy import select

from hospiconnect.audit import service as audit
from hospiconnect.audit.models import AuditEvent
from hospiconnect.errors import Conflict, NotFound, PreconditionFailed, ValidationError
from hospiconnect.idp import clients
from hospiconnect.idp.models import Client, Token

GOOD = "https://dpi.chu-exemple.fr/oidc/callback"


def add(session, rt, **kw):
    values = dict(name="DPI", redirect_uris=[GOOD], sensitivity="health-data", actor="test")
    values.update(kw)
    return clients.add_client(session, rt.keys, **values)


def _tags(session):
    return [e.tag for e in session.scalars(select(AuditEvent).order_by(AuditEvent.seq))]


def test_add_confidential_client(session, rt):
    client, secret = add(session, rt, post_logout_redirect_uris=["https://dpi.chu-exemple.fr/bye"],
                         backchannel_logout_uri="https://dpi.chu-exemple.fr/bcl")
    session.commit()
    assert len(client.client_id) == 23 and client.client_id[0].isalnum()
    assert client.redirect_uris == [GOOD]
    assert client.post_logout_redirect_uris == ["https://dpi.chu-exemple.fr/bye"]
    assert client.requires_two_factors and not client.is_public
    assert client.scopes == "openid profile email"
    # 256 random bits, stored only as a keyed hash.
    assert secret and len(secret) >= 43
    row = session.scalar(select(Client).where(Client.client_id == client.client_id))
    assert row.secret_hash == rt.keys.keyed_hash(secret)
    assert secret not in json.dumps({c.name: str(getattr(row, c.key)) for c in Client.__table__.columns})
    assert _tags(session) == ["admin:client:created"]
    event = session.scalar(select(AuditEvent))
    assert secret not in event.details and row.secret_hash not in event.details
    assert audit.verify(session).ok


def test_client_ids_are_random_and_distinct(session, rt):
    ids = {add(session, rt)[0].client_id for _ in range(5)}
    assert len(ids) == 5


def test_given_client_id_and_conflict(session, rt):
    client, _ = add(session, rt, client_id="dpi-cardio")
    assert client.client_id == "dpi-cardio"
    with pytest.raises(Conflict):
        add(session, rt, client_id="dpi-cardio")
    with pytest.raises(ValidationError):
        add(session, rt, client_id="pas valide")


@pytest.mark.parametrize("uri", [
    GOOD,
    "https://dpi.chu-exemple.fr:8443/cb?tenant=cardio",
    "http://localhost:8080/callback",
    "http://127.0.0.1:5001/cb",
    "http://[::1]:5001/cb",
    "HTTPS://dpi.chu-exemple.fr/cb",
])
def test_accepted_redirect_uris(session, rt, uri):
    client, _ = add(session, rt, redirect_uris=[uri])
    assert client.redirect_uris == [uri]  # stored as given: compared as exact strings


@pytest.mark.parametrize("uri, words", [
    ("http://dpi.chu-exemple.fr/cb", "https"),
    ("http://192.168.1.10/cb", "https"),
    ("http://localhost.evil.example/cb", "https"),
    ("http://127.0.0.1.nip.io/cb", "https"),
    ("https://dpi.chu-exemple.fr/cb#frag", "fragment"),
    ("https://dpi.chu-exemple.fr/cb#", "fragment"),
    ("com.chu.dpi:/callback", "schéma"),
    ("myapp://callback", "schéma"),
    ("javascript:alert(1)", "schéma"),
    ("/relative/callback", "absolue"),
    ("dpi.chu-exemple.fr/cb", "absolue"),
    ("https:///cb", "hôte"),
    ("https://user:pass@dpi.chu-exemple.fr/cb", "identifiants"),
    ("https://*.chu-exemple.fr/cb", "joker"),
    ("https://dpi.chu-exemple.fr/c b", "caractères"),
    ("https://dpi.chu-exemple.fr\\@evil.example/cb", "caractères"),
    ("https://dpi.chu-exemple.fr:99999/cb", "mal formée"),
    ("", "vide"),
])
def test_refused_redirect_uris(session, rt, uri, words):
    with pytest.raises(ValidationError) as info:
        add(session, rt, redirect_uris=[GOOD, uri])
    assert words in info.value.message
    assert info.value.field == "redirect_uri"


def test_same_rules_for_logout_uris(session, rt):
    with pytest.raises(ValidationError) as info:
        add(session, rt, post_logout_redirect_uris=["http://dpi.chu-exemple.fr/bye"])
    assert info.value.field == "post_logout_redirect_uri"
    with pytest.raises(ValidationError) as info:
        add(session, rt, post_logout_redirect_uris=["https://dpi.chu-exemple.fr/bye#x"])
    assert "fragment" in info.value.message
    with pytest.raises(ValidationError) as info:
        add(session, rt, backchannel_logout_uri="app://logout")
    assert info.value.field == "backchannel_logout_uri"
    with pytest.raises(ValidationError):
        add(session, rt, backchannel_logout_uri="http://dpi.chu-exemple.fr/bcl")


def test_other_fields_are_checked(session, rt):
    for kw, field in [({"redirect_uris": []}, "redirect_uri"), ({"name": "  "}, "name"),
                      ({"sensitivity": "secret"}, "sensitivity"), ({"auth_method": "client_secret_jwt"}, "auth_method"),
                      ({"scopes": "openid admin"}, "scope"), ({"scopes": "profile"}, "scope"),
                      ({"profile": "PSC!"}, "profile"), ({"auth_method": "private_key_jwt"}, "jwks")]:
        with pytest.raises(ValidationError) as info:
            add(session, rt, **kw)
        assert info.value.field == field, kw
    assert session.scalar(select(Client)) is None
    assert _tags(session) == []


def test_public_client_has_no_secret(session, rt):
    client, secret = add(session, rt, auth_method="none", redirect_uris=["http://127.0.0.1:7000/cb"])
    assert secret is None and client.secret_hash is None and client.is_public
    assert not clients.check_secret(rt.keys, client, "")
    assert not clients.check_secret(rt.keys, client, "anything")
    with pytest.raises(PreconditionFailed):
        clients.rotate_secret(session, rt.keys, client.client_id, actor="test")


def test_private_key_jwt_client_keeps_public_keys_only(session, rt):
    from joserfc.jwk import ECKey

    key = ECKey.generate_key("P-256", parameters={"alg": "ES256", "use": "sig"}, auto_kid=True)
    public = {"keys": [key.as_dict(private=False)]}
    client, secret = add(session, rt, auth_method="private_key_jwt", jwks=public)
    assert secret is None
    assert clients.client_jwks(client).keys[0].kid == key.kid
    assert clients.client_as_dict(client)["jwks"] == public
    with pytest.raises(ValidationError) as info:
        add(session, rt, auth_method="private_key_jwt", jwks={"keys": [key.as_dict(private=True)]})
    assert "privée" in info.value.message
    with pytest.raises(ValidationError):
        add(session, rt, auth_method="private_key_jwt", jwks={"keys": []})
    with pytest.raises(ValidationError):
        add(session, rt, auth_method="private_key_jwt", jwks={"keys": [{"kty": "EC", "crv": "P-256"}]})
    with pytest.raises(ValidationError):
        add(session, rt, jwks=public)  # a JWKS without private_key_jwt is a mistake


def test_check_secret(session, rt):
    client, secret = add(session, rt, auth_method="client_secret_post")
    assert clients.check_secret(rt.keys, client, secret) is True
    assert clients.check_secret(rt.keys, client, secret + "x") is False
    assert clients.check_secret(rt.keys, client, secret[:-1]) is False
    assert clients.check_secret(rt.keys, client, "") is False
    assert clients.check_secret(rt.keys, client, "é" * 10) is False
    assert clients.check_secret(rt.keys, client, secret * 20) is False
    assert clients.check_secret(rt.keys, client, None) is False  # type: ignore[arg-type]
    # The stored value is not itself a secret: presenting the hash fails.
    assert clients.check_secret(rt.keys, client, client.secret_hash) is False


def test_check_secret_compares_in_constant_time(session, rt, monkeypatch):
    client, secret = add(session, rt)
    calls = []
    real = clients.hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(clients.hmac, "compare_digest", spy)
    assert clients.check_secret(rt.keys, client, secret)
    assert not clients.check_secret(rt.keys, client, "wrong")
    public, _ = add(session, rt, auth_method="none")
    assert not clients.check_secret(rt.keys, public, "wrong")
    # Every path, right or wrong, public or not, goes through one comparison of keyed hashes.
    assert len(calls) == 3
    assert calls[0] == (rt.keys.keyed_hash(secret).encode(), client.secret_hash.encode())


def test_rotate_secret_invalidates_the_old_one(session, rt):
    client, old = add(session, rt)
    session.commit()
    new = clients.rotate_secret(session, rt.keys, client.client_id, actor="admin")
    session.commit()
    assert new != old
    fresh = clients.require_client(session, client.client_id)
    assert clients.check_secret(rt.keys, fresh, new)
    assert not clients.check_secret(rt.keys, fresh, old)
    assert fresh.secret_hash == rt.keys.keyed_hash(new)
    assert _tags(session) == ["admin:client:created", "admin:client:secret_rotated"]
    with pytest.raises(NotFound):
        clients.rotate_secret(session, rt.keys, "unknown", actor="admin")


def test_disable(session, rt):
    from tests.factories import create_identity

    client, secret = add(session, rt)
    identity = create_identity(session)
    now = client.created_at
    for kind in ("access", "refresh"):
        session.add(Token(kind=kind, token_hash=kind * 8, family_id="f1", client_id=client.client_id,
                          identity_id=identity.id, scope="openid", auth_time=now, acr="eidas2", amr_json="[]",
                          expires_at=now))
    session.flush()
    clients.disable(session, client.client_id, actor="admin")
    session.commit()
    row = clients.require_client(session, client.client_id)
    assert row.disabled_at is not None
    assert not clients.check_secret(rt.keys, row, secret)
    assert all(t.revoked_at is not None for t in session.scalars(select(Token)))
    clients.disable(session, client.client_id, actor="admin")  # idempotent, journaled once
    assert _tags(session).count("admin:client:disabled") == 1
    assert '"tokens_revoked": 2' in session.scalar(
        select(AuditEvent.details).where(AuditEvent.tag == "admin:client:disabled"))
    with pytest.raises(PreconditionFailed):
        clients.rotate_secret(session, rt.keys, client.client_id, actor="admin")
    with pytest.raises(NotFound):
        clients.disable(session, "unknown", actor="admin")


def test_get_list_and_dict(session, rt):
    b, _ = add(session, rt, name="Bloc", sensitivity="standard")
    a, _ = add(session, rt, name="Agenda", sensitivity="standard", scopes=["openid", "email rpps"])
    assert clients.get_client(session, "nope") is None
    assert clients.get_client(session, "") is None
    assert clients.require_client(session, a.client_id) is a
    assert [c.name for c in clients.list_clients(session)] == ["Agenda", "Bloc"]
    data = clients.client_as_dict(a)
    assert data["scopes"] == ["openid", "email", "rpps"]
    assert data["class"] == "standard" and data["has_secret"] is True
    assert not any("secret_hash" in k for k in data) and a.secret_hash not in json.dumps(data)
    json.dumps(data)  # JSON-ready
