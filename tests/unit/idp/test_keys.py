"""Signing keys: creation, distinct kids, signature and verification, rotation, encryption at rest."""

import base64
import dataclasses
import datetime as dt
import json
import secrets

import pytest
import time_machine
from joserfc import jws
from joserfc.jwk import ECKey
from sqlalchemy import func, select

from hospiconnect import crypto
from hospiconnect.audit import service as audit
from hospiconnect.audit.models import AuditEvent
from hospiconnect.idp import keys as signing
from hospiconnect.idp.models import SigningKey

T0 = dt.datetime(2026, 11, 27, 9, 0, tzinfo=dt.timezone.utc)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _segments(token: str) -> tuple[dict, dict, str]:
    h, p, s = token.split(".")
    pad = lambda t: t + "=" * (-len(t) % 4)  # noqa: E731
    return (json.loads(base64.urlsafe_b64decode(pad(h))), json.loads(base64.urlsafe_b64decode(pad(p))), s)


def _tags(session) -> list[str]:
    return [e.tag for e in session.scalars(select(AuditEvent).order_by(AuditEvent.seq))]


@pytest.fixture()
def ready(session, rt):
    created = signing.ensure_keys(session, rt.keys)
    session.commit()
    return created


def test_ensure_keys_creates_one_key_per_algorithm_once(session, rt, ready):
    assert len(ready) == 2
    rows = session.scalars(select(SigningKey).order_by(SigningKey.alg)).all()
    assert [r.alg for r in rows] == ["ES256", "RS256"]
    assert {r.kid for r in rows} == set(ready)
    public = {r.alg: json.loads(r.public_jwk_json) for r in rows}
    assert public["ES256"]["kty"] == "EC" and public["ES256"]["crv"] == "P-256"
    assert public["RS256"]["kty"] == "RSA"
    assert len(base64.urlsafe_b64decode(public["RS256"]["n"] + "==")) * 8 == signing.RSA_BITS
    # Second run: nothing to do.
    assert signing.ensure_keys(session, rt.keys) == []
    assert session.scalar(select(func.count()).select_from(SigningKey)) == 2
    assert _tags(session) == ["admin:signing_key:created"] * 2


def test_ensure_keys_replaces_only_the_missing_algorithm(session, rt, ready):
    session.execute(SigningKey.__table__.update().where(SigningKey.alg == "RS256")
                    .values(retired_at=T0, unpublish_after=T0))
    created = signing.ensure_keys(session, rt.keys)
    assert len(created) == 1
    assert session.scalar(select(SigningKey.alg).where(SigningKey.kid == created[0])) == "RS256"


def test_every_key_has_a_distinct_kid_equal_to_its_thumbprint(session, rt, settings, ready):
    signing.rotate(session, rt.keys, settings, actor="test")
    signing.rotate(session, rt.keys, settings, actor="test")
    rows = session.scalars(select(SigningKey)).all()
    kids = [r.kid for r in rows]
    assert len(rows) == 6 and len(set(kids)) == 6
    for row in rows:
        jwk = json.loads(row.public_jwk_json)
        cls = ECKey if jwk["kty"] == "EC" else signing.RSAKey
        assert cls.import_key(jwk).thumbprint() == row.kid


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
def test_sign_then_verify(session, rt, ready, alg):
    claims = {"iss": "http://localhost", "sub": "42", "aud": "app", "exp": T0, "iat": 1, "name": "Élodie"}
    token = signing.sign(session, rt.keys, claims, alg=alg)
    header, payload, _ = _segments(token)
    kid, _key = signing.active_key(session, rt.keys, alg)
    assert header == {"alg": alg, "kid": kid, "typ": "JWT"}
    assert payload["exp"] == int(T0.timestamp())
    assert isinstance(claims["exp"], dt.datetime)  # the caller's dict is untouched
    verified = signing.verify(session, token)
    assert verified["sub"] == "42" and verified["name"] == "Élodie"
    # Verifiable with the published JWKS alone, as a relying party does.
    jwk = next(k for k in signing.public_jwks(session)["keys"] if k["kid"] == kid)
    from joserfc.jwk import KeySet

    obj = jws.deserialize_compact(token, KeySet.import_key_set({"keys": [jwk]}), algorithms=[alg])
    assert json.loads(obj.payload)["sub"] == "42"


def test_sign_uses_the_requested_typ(session, rt, ready):
    token = signing.sign(session, rt.keys, {"sub": "1", "events": {}}, typ="logout+jwt")
    assert _segments(token)[0]["typ"] == "logout+jwt"


def test_verify_restricted_to_the_algorithms_asked(session, rt, ready):
    token = signing.sign(session, rt.keys, {"sub": "1"}, alg="RS256")
    with pytest.raises(signing.InvalidSignature):
        signing.verify(session, token, algs=("ES256",))


@pytest.mark.parametrize("part", ["header", "payload", "signature"])
def test_modified_token_is_refused(session, rt, ready, part):
    token = signing.sign(session, rt.keys, {"sub": "42", "aud": "app"})
    h, p, s = token.split(".")
    header, payload, _ = _segments(token)
    if part == "header":
        header["typ"] = "at+jwt"
        h = _b64(json.dumps(header).encode())
    elif part == "payload":
        payload["sub"] = "43"
        p = _b64(json.dumps(payload).encode())
    else:
        s = ("A" if s[0] != "A" else "B") + s[1:]
    with pytest.raises(signing.InvalidSignature):
        signing.verify(session, f"{h}.{p}.{s}")


def test_alg_none_is_refused(session, rt, ready):
    token = signing.sign(session, rt.keys, {"sub": "42"})
    kid = _segments(token)[0]["kid"]
    _, p, _ = token.split(".")
    for alg in ("none", "None", "NONE"):
        h = _b64(json.dumps({"alg": alg, "kid": kid, "typ": "JWT"}).encode())
        for forged in (f"{h}.{p}.", f"{h}.{p}.{token.split('.')[2]}"):
            with pytest.raises(signing.InvalidSignature):
                signing.verify(session, forged)
            with pytest.raises(signing.InvalidSignature):
                signing.verify(session, forged, algs=("none", "ES256"))


def test_hmac_with_the_public_key_is_refused(session, rt, ready):
    """Algorithm confusion (RFC 8725 §2.1): HS256 keyed with the published key must not verify."""
    kid, key = signing.active_key(session, rt.keys, "RS256")
    h = _b64(json.dumps({"alg": "HS256", "kid": kid, "typ": "JWT"}).encode())
    p = _b64(b'{"sub":"42"}')
    import hashlib
    import hmac

    pem = key.as_pem(private=False)
    s = _b64(hmac.new(pem, f"{h}.{p}".encode(), hashlib.sha256).digest())
    with pytest.raises(signing.InvalidSignature):
        signing.verify(session, f"{h}.{p}.{s}", algs=("HS256", "RS256"))


def test_unknown_or_missing_kid_is_refused(session, rt, ready):
    foreign = ECKey.generate_key("P-256", parameters={"alg": "ES256"})
    foreign_token = jws.serialize_compact({"alg": "ES256", "kid": "someone-else"}, b'{"sub":"1"}', foreign,
                                          algorithms=["ES256"])
    with pytest.raises(signing.InvalidSignature):
        signing.verify(session, foreign_token)
    # A foreign key that claims our kid is refused too.
    kid, _ = signing.active_key(session, rt.keys, "ES256")
    spoof = jws.serialize_compact({"alg": "ES256", "kid": kid}, b'{"sub":"1"}', foreign, algorithms=["ES256"])
    with pytest.raises(signing.InvalidSignature):
        signing.verify(session, spoof)
    # Our key, but no kid in the header (joserfc would otherwise pick the only key of a set).
    _, ours = signing.active_key(session, rt.keys, "ES256")
    no_kid = jws.serialize_compact({"alg": "ES256"}, b'{"sub":"1"}', ours, algorithms=["ES256"])
    with pytest.raises(signing.InvalidSignature):
        signing.verify(session, no_kid)
    # The algorithm of the header must be the key's.
    rs_kid, _ = signing.active_key(session, rt.keys, "RS256")
    mixed = jws.serialize_compact({"alg": "ES256", "kid": rs_kid}, b'{"sub":"1"}', ours, algorithms=["ES256"])
    with pytest.raises(signing.InvalidSignature):
        signing.verify(session, mixed)


@pytest.mark.parametrize("junk", ["", "abc", "a.b", "a.b.c.d", "!!!.e30.sig", "e30.e30.", "W10.e30.x"])
def test_malformed_tokens_are_refused(session, rt, ready, junk):
    with pytest.raises(signing.InvalidSignature):
        signing.verify(session, junk)


def test_non_object_payload_is_refused(session, rt, ready):
    kid, key = signing.active_key(session, rt.keys, "ES256")
    token = jws.serialize_compact({"alg": "ES256", "kid": kid}, b"[1, 2]", key, algorithms=["ES256"])
    with pytest.raises(signing.InvalidSignature):
        signing.verify(session, token)


def test_claims_are_not_validated_by_verify(session, rt, ready):
    """An expired id_token_hint still has a valid signature: callers judge exp and aud."""
    token = signing.sign(session, rt.keys, {"sub": "1", "exp": 1})
    assert signing.verify(session, token)["exp"] == 1


def test_no_active_key_is_a_clear_error(session, rt):
    with pytest.raises(signing.NoSigningKey) as info:
        signing.sign(session, rt.keys, {"sub": "1"})
    assert "hospiconnect init" in info.value.message


def test_private_key_is_stored_encrypted_only(session, rt, ready):
    for row in session.scalars(select(SigningKey)):
        kid, key = signing.active_key(session, rt.keys, row.alg)
        assert kid == row.kid
        private = key.as_dict(private=True)
        assert private["d"] not in row.private_jwk_enc
        assert '"d"' not in row.private_jwk_enc
        assert crypto.kid_of(row.private_jwk_enc) == rt.keys.current_kek_id
        public = json.loads(row.public_jwk_json)
        assert "d" not in public and "p" not in public
        # Bound to its row: the ciphertext does not decrypt as another key's.
        with pytest.raises(crypto.DecryptionFailed):
            crypto.decrypt(rt.keys, row.private_jwk_enc, b"signing-key:other")
    for jwk in signing.public_jwks(session)["keys"]:
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(jwk)


def test_public_jwks_lists_kid_alg_and_use(session, rt, ready):
    document = signing.public_jwks(session)
    assert sorted(k["alg"] for k in document["keys"]) == ["ES256", "RS256"]
    assert {k["kid"] for k in document["keys"]} == set(ready)
    assert all(k["use"] == "sig" for k in document["keys"])


def test_rotation_keeps_old_keys_published_until_unpublish_after(session, rt, settings):
    with time_machine.travel(T0, tick=False):
        signing.ensure_keys(session, rt.keys)
        old_es, _ = signing.active_key(session, rt.keys, "ES256")
        old_rs, _ = signing.active_key(session, rt.keys, "RS256")
        before_es = signing.sign(session, rt.keys, {"sub": "1"}, alg="ES256")
        before_rs = signing.sign(session, rt.keys, {"sub": "1"}, alg="RS256")
        session.commit()
    rotated_at = T0 + dt.timedelta(minutes=1)
    with time_machine.travel(rotated_at, tick=False):
        result = signing.rotate(session, rt.keys, settings, actor="rssi")
        session.commit()
        assert set(result["retired"]) == {old_es, old_rs}
        new_es, _ = signing.active_key(session, rt.keys, "ES256")
        assert new_es != old_es and new_es in result["created"]
        after = signing.sign(session, rt.keys, {"sub": "2"})
        assert _segments(after)[0]["kid"] == new_es
        # Tokens signed before the rotation still verify, the new one too.
        assert signing.verify(session, before_es)["sub"] == "1"
        assert signing.verify(session, before_rs)["sub"] == "1"
        assert signing.verify(session, after)["sub"] == "2"
        assert {k["kid"] for k in signing.public_jwks(session)["keys"]} == {old_es, old_rs, *result["created"]}
    old_row = session.scalar(select(SigningKey).where(SigningKey.kid == old_es))
    delay = max(settings.id_token_minutes, settings.access_token_minutes)
    assert old_row.retired_at == rotated_at
    assert old_row.unpublish_after == rotated_at + dt.timedelta(minutes=delay) + signing.UNPUBLISH_MARGIN
    assert old_row.unpublish_after > rotated_at + dt.timedelta(minutes=delay)
    # Just before unpublish_after: still there; after it: gone from the JWKS and from verification.
    just_before = old_row.unpublish_after - dt.timedelta(seconds=1)
    assert old_es in {k["kid"] for k in signing.public_jwks(session, now=just_before)["keys"]}
    assert signing.verify(session, before_es, now=just_before)
    with time_machine.travel(old_row.unpublish_after + dt.timedelta(seconds=1), tick=False):
        kids = {k["kid"] for k in signing.public_jwks(session)["keys"]}
        assert kids == set(result["created"])
        with pytest.raises(signing.InvalidSignature):
            signing.verify(session, before_es)
        assert signing.verify(session, after)["sub"] == "2"
    event = session.scalar(select(AuditEvent).where(AuditEvent.tag == "admin:signing_key:rotated"))
    assert event.actor == "rssi" and old_es in event.details
    assert audit.verify(session).ok


def test_rotation_is_seen_by_another_instance_without_restart(session, rt, settings, ready):
    """Two runtimes on the same database: no process cache hides the new key."""
    from hospiconnect.runtime import Runtime

    other = Runtime(settings)
    try:
        with other.db.session() as s2:
            kid_before, _ = signing.active_key(s2, other.keys, "ES256")
        signing.rotate(session, rt.keys, settings, actor="test")
        session.commit()
        with other.db.session() as s2:
            kid_after, _ = signing.active_key(s2, other.keys, "ES256")
            token = signing.sign(s2, other.keys, {"sub": "x"})
        assert kid_after != kid_before
        assert signing.verify(session, token)["sub"] == "x"
    finally:
        other.db.dispose()


def test_reencrypt_moves_every_private_key_to_the_current_kek(session, rt, settings, ready):
    signing.rotate(session, rt.keys, settings, actor="test")
    token = signing.sign(session, rt.keys, {"sub": "1"})
    session.commit()
    # In memory (source=None), so the shared key file of the test session is left alone.
    rotated = dataclasses.replace(rt.keys, kek={**rt.keys.kek, "k9": secrets.token_bytes(32)},
                                  current_kek_id="k9", source=None)
    assert signing.reencrypt(session, rotated) == 4
    assert signing.reencrypt(session, rotated) == 0  # idempotent
    session.commit()
    rows = session.scalars(select(SigningKey)).all()
    assert all(crypto.kid_of(r.private_jwk_enc) == "k9" for r in rows)
    # The old KEK can now be removed from the key file: keys still sign, and to the same public keys.
    only_new = dataclasses.replace(rotated, kek={"k9": rotated.kek["k9"]})
    again = signing.sign(session, only_new, {"sub": "1"})
    assert _segments(again)[0]["kid"] == _segments(token)[0]["kid"]
    assert signing.verify(session, again)["sub"] == "1"
    with pytest.raises(crypto.UnknownKeyId):
        signing.active_key(session, dataclasses.replace(rt.keys, source=None), "ES256")


def test_reencrypt_follows_a_rotation_of_the_key_file(session, rt, settings, ready, tmp_path):
    """``keys rotate-kek`` rewrites the key file, then re-encrypts with the keys the process loaded."""
    path = tmp_path / "keys.json"
    path.write_bytes(rt.settings.secret_key_file.read_bytes())
    path.chmod(0o600)
    loaded = crypto.load_keys(path)
    new_kid = crypto.rotate_kek(path)
    assert signing.reencrypt(session, loaded) == 2
    session.commit()
    assert {crypto.kid_of(r.private_jwk_enc) for r in session.scalars(select(SigningKey))} == {new_kid}
    token = signing.sign(session, crypto.load_keys(path), {"sub": "1"}, alg="RS256")
    assert signing.verify(session, token)["sub"] == "1"
