"""The private keys with which FranceConnect+ encrypts ID tokens and userinfo for this instance.

FranceConnect+ signs, then encrypts to the keys its client publishes at a JWKS URL (RSA-OAEP or ECDH-ES,
content encryption A256GCM). This instance keeps one RSA 2048 key and one EC P-256 key, each private JWK
encrypted at rest under the key-encryption key of the key file (AES-256-GCM, like the signing keys), and
publishes the public parts at ``/franceconnect/jwks.json``. ``hospiconnect init`` creates them;
``hospiconnect keys rotate-kek`` re-encrypts them.
"""

from __future__ import annotations

import json
from typing import Any

from joserfc.jwk import KeySet
from sqlalchemy import select
from sqlalchemy.orm import Session

from hospiconnect import crypto
from hospiconnect.audit import service as audit
from hospiconnect.audit import tags
from hospiconnect.crypto import InstanceKeys
from hospiconnect.db import utcnow
from hospiconnect.enrollment import fcplus
from hospiconnect.enrollment.models import UpstreamEncryptionKey


def _aad(kid: str) -> bytes:
    return f"upstream-encryption-key:{kid}".encode()


def _active(session: Session) -> list[UpstreamEncryptionKey]:
    return list(session.scalars(select(UpstreamEncryptionKey).where(UpstreamEncryptionKey.retired_at.is_(None))
                                .order_by(UpstreamEncryptionKey.id)))


def ensure_keys(session: Session, keys: InstanceKeys) -> list[str]:
    """Create the encryption key pair when none is active; return the ``kid`` of each key created (empty when
    nothing was needed). Journals ``admin:upstream_key:created``. Safe to run again."""
    if _active(session):
        return []
    now = utcnow()
    created: list[str] = []
    for key in fcplus.generate_encryption_keys():
        key.ensure_kid()  # RFC 7638 thumbprint of the public key
        kid = str(key.kid)
        alg = "ECDH-ES" if key.key_type == "EC" else "RSA-OAEP"
        private = json.dumps(key.as_dict(private=True), separators=(",", ":")).encode()
        session.add(UpstreamEncryptionKey(
            kid=kid, alg=alg, private_jwk_enc=crypto.encrypt(keys, private, _aad(kid)),
            public_jwk_json=json.dumps(key.as_dict(private=False), separators=(",", ":")), created_at=now))
        audit.record(session, tags.UPSTREAM_KEY_CREATED, actor="system", subject=f"upstream_key:{kid}",
                     details={"alg": alg, "use": "enc"})
        created.append(kid)
    session.flush()
    return created


def public_jwks(session: Session) -> dict[str, Any]:
    """Return the JWKS to publish: the public part of every active key (never a private member)."""
    return {"keys": [json.loads(row.public_jwk_json) for row in _active(session)]}


def private_key_set(session: Session, keys: InstanceKeys) -> KeySet:
    """Return the active private keys, decrypted, for :func:`fcplus.handle_callback`.

    Raises :class:`hospiconnect.crypto.CryptoError` when the key file cannot decrypt them, and
    :class:`fcplus.FcPlusConfigurationError` when there is none (the instance was not initialised)."""
    rows = _active(session)
    if not rows:
        raise fcplus.FcPlusConfigurationError("aucune clé de chiffrement : lancez « hospiconnect init »")
    document = {"keys": [json.loads(crypto.decrypt(keys, row.private_jwk_enc, _aad(row.kid))) for row in rows]}
    return fcplus.load_private_keys(document)


def reencrypt(session: Session, keys: InstanceKeys) -> int:
    """Re-encrypt under the current key-encryption key every private key still under an older one; return how
    many rows were rewritten (0 when all are current)."""
    keys = crypto.refresh_keys(keys)
    count = 0
    for row in session.scalars(select(UpstreamEncryptionKey).order_by(UpstreamEncryptionKey.id)):
        if crypto.kid_of(row.private_jwk_enc) == keys.current_kek_id:
            continue
        row.private_jwk_enc = crypto.encrypt(keys, crypto.decrypt(keys, row.private_jwk_enc, _aad(row.kid)),
                                             _aad(row.kid))
        count += 1
    session.flush()
    return count
