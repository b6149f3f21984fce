"""The FranceConnect+ encryption keys of the instance: created once, private parts encrypted at rest,
public parts published, usable to decrypt what a provider encrypts to them, re-encrypted after a KEK
rotation."""

from __future__ import annotations

import json
import shutil

from joserfc import jwe
from joserfc.jwk import KeySet
from sqlalchemy import select

from hospiconnect import crypto
from hospiconnect.audit.models import AuditEvent
from hospiconnect.enrollment import upstream_keys
from hospiconnect.enrollment.models import UpstreamEncryptionKey

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi"}


def test_keys_are_created_once_and_journaled(session, rt):
    created = upstream_keys.ensure_keys(session, rt.keys)
    assert len(created) == 2
    assert upstream_keys.ensure_keys(session, rt.keys) == []
    rows = session.scalars(select(UpstreamEncryptionKey)).all()
    assert sorted(r.alg for r in rows) == ["ECDH-ES", "RSA-OAEP"]
    events = session.scalars(select(AuditEvent).where(AuditEvent.tag == "admin:upstream_key:created")).all()
    assert sorted(e.subject for e in events) == sorted(f"upstream_key:{kid}" for kid in created)


def test_private_parts_are_encrypted_at_rest_and_never_published(session, rt):
    upstream_keys.ensure_keys(session, rt.keys)
    for row in session.scalars(select(UpstreamEncryptionKey)):
        assert '"d"' not in row.private_jwk_enc
        assert crypto.kid_of(row.private_jwk_enc) == rt.keys.current_kek_id
    published = upstream_keys.public_jwks(session)["keys"]
    assert len(published) == 2
    assert all(not PRIVATE_MEMBERS & set(key) for key in published)
    assert all(key["use"] == "enc" and key["kid"] for key in published)


def test_what_a_provider_encrypts_to_the_published_keys_decrypts(session, rt):
    upstream_keys.ensure_keys(session, rt.keys)
    public = KeySet.import_key_set(upstream_keys.public_jwks(session))
    private = upstream_keys.private_key_set(session, rt.keys)
    for key in public:
        alg = "ECDH-ES" if key.key_type == "EC" else "RSA-OAEP"
        token = jwe.encrypt_compact({"alg": alg, "enc": "A256GCM", "kid": key.kid}, b"pivot", key)
        assert jwe.decrypt_compact(token, private.get_by_kid(key.kid)).plaintext == b"pivot"


def test_rotate_kek_reencrypts_them(session, rt, tmp_path):
    path = tmp_path / "keys.json"
    shutil.copy(rt.settings.secret_key_file, path)
    keys = crypto.load_keys(path)
    upstream_keys.ensure_keys(session, keys)
    before = {r.kid: r.private_jwk_enc for r in session.scalars(select(UpstreamEncryptionKey))}
    new_kid = crypto.rotate_kek(path)
    keys = crypto.load_keys(path)
    assert upstream_keys.reencrypt(session, keys) == 2
    assert upstream_keys.reencrypt(session, keys) == 0
    for row in session.scalars(select(UpstreamEncryptionKey)):
        assert crypto.kid_of(row.private_jwk_enc) == new_kid != crypto.kid_of(before[row.kid])
    assert len(list(upstream_keys.private_key_set(session, keys))) == 2
    assert json.loads(session.scalars(select(UpstreamEncryptionKey)).first().public_jwk_json)["use"] == "enc"
