"""Signing keys of the OpenID provider: creation, rotation, signing, publication and verification.

Each key is a JWK (RFC 7517) whose ``kid`` is its RFC 7638 thumbprint, so two keys never share a ``kid``
(SECURITY.md item 7). The private JWK is stored only encrypted with the instance key-encryption key
(AES-256-GCM, :func:`hospiconnect.crypto.encrypt`, associated data ``b"signing-key:<kid>"`` so a ciphertext
copied onto another row does not decrypt); the public JWK is stored in clear for the JWKS document.

Which key signs is never cached in the process: every signature reads the ``signing_keys`` table — on its
own, or, on the token endpoint, within the statement that reads the grant (:func:`active_kid`) — so a
rotation made by one instance (or by the command line) is used by every other instance at its next request.
Only the decrypted key material is kept, by ``kid``. A retired key stays published until
``unpublish_after``, long enough for every token it signed to expire, so that rotation needs no downtime and
tokens in flight keep verifying.

Private key material is never logged nor put in an exception message.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
from typing import Any, Iterable, Union

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateNumbers, RSAPublicNumbers
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey
from joserfc.util import base64_to_int, json_b64decode
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hospiconnect import crypto
from hospiconnect.audit import service as audit
from hospiconnect.crypto import InstanceKeys
from hospiconnect.db import utcnow
from hospiconnect.errors import HospiConnectError, ServiceUnavailable
from hospiconnect.idp.models import SigningKey
from hospiconnect.settings import Settings

SigningJWK = Union[ECKey, RSAKey]

#: The algorithms the provider signs with (RFC 7518 §3.4 ES256 on P-256, §3.3 RS256). Never "none".
SUPPORTED_ALGS: tuple[str, ...] = ("ES256", "RS256")
RSA_BITS = 3072
#: Added to the longest token lifetime before a retired key leaves the JWKS: clock skew between hosts,
#: relying parties' JWKS caches (the document is served with max-age 300) and back-channel retries.
UNPUBLISH_MARGIN = dt.timedelta(minutes=15)

TAG_KEY_CREATED = "admin:signing_key:created"
TAG_KEY_ROTATED = "admin:signing_key:rotated"


class InvalidSignature(HospiConnectError):
    """A JWS that is malformed, uses an algorithm or a ``kid`` that is not published, or whose signature
    does not verify."""

    code = "invalid_signature"
    http_status = 400

    def __init__(self, message: str = "Signature invalide.") -> None:
        super().__init__(message)


class NoSigningKey(ServiceUnavailable):
    """No active key of the requested algorithm: the instance was not initialised."""


def _aad(kid: str) -> bytes:
    return f"signing-key:{kid}".encode()


def _generate(alg: str) -> SigningJWK:
    params = {"alg": alg, "use": "sig"}
    if alg == "ES256":
        key: SigningJWK = ECKey.generate_key("P-256", parameters=params)  # type: ignore[arg-type]
    elif alg == "RS256":
        key = RSAKey.generate_key(RSA_BITS, parameters=params)  # type: ignore[arg-type]
    else:
        raise ValueError(f"unsupported signing algorithm {alg!r}")
    key.ensure_kid()  # RFC 7638 thumbprint of the public key
    return key


def _create(session: Session, keys: InstanceKeys, alg: str, now: dt.datetime) -> SigningKey:
    key = _generate(alg)
    kid = str(key.kid)
    private = json.dumps(key.as_dict(private=True), separators=(",", ":")).encode()
    row = SigningKey(
        kid=kid,
        alg=alg,
        private_jwk_enc=crypto.encrypt(keys, private, _aad(kid)),
        public_jwk_json=json.dumps(key.as_dict(private=False), separators=(",", ":")),
        created_at=now,
    )
    session.add(row)
    session.flush()
    return row


def _active_rows(session: Session, alg: str) -> list[SigningKey]:
    return list(session.scalars(
        select(SigningKey)
        .where(SigningKey.alg == alg, SigningKey.retired_at.is_(None))
        .order_by(SigningKey.created_at.desc(), SigningKey.id.desc())
    ))


def ensure_keys(session: Session, keys: InstanceKeys) -> list[str]:
    """Create one ES256 (P-256) and one RS256 (RSA 3072) key for each algorithm that has no active key.

    Returns the ``kid`` of every key created (empty when nothing was needed); journals
    ``admin:signing_key:created`` for each. Safe to run again.
    """
    now = utcnow()
    created: list[str] = []
    for alg in SUPPORTED_ALGS:
        if not _active_rows(session, alg):
            row = _create(session, keys, alg, now)
            created.append(row.kid)
            audit.record(session, TAG_KEY_CREATED, actor="system", subject=f"signing_key:{row.kid}",
                         details={"alg": alg})
    return created


def unpublish_delay(settings: Settings) -> dt.timedelta:
    """How long a retired key stays in the JWKS: the longest lifetime of a token it may have signed
    (ID tokens, access tokens), plus :data:`UNPUBLISH_MARGIN`."""
    minutes = max(settings.id_token_minutes, settings.access_token_minutes)
    return dt.timedelta(minutes=minutes) + UNPUBLISH_MARGIN


def rotate(session: Session, keys: InstanceKeys, settings: Settings, *, actor: str) -> dict[str, Any]:
    """Create a new key for every algorithm and retire the keys that were active until now.

    New tokens are signed with the new keys at once; the retired keys get ``retired_at = now`` and stay
    published until ``now + unpublish_delay(settings)`` so tokens they signed still verify (OpenID Connect
    Core §10.1.1, rotation of asymmetric signing keys). Journals ``admin:signing_key:rotated``.

    Returns ``{"created": [kid…], "retired": [kid…], "unpublish_after": ISO 8601}``.
    """
    now = utcnow()
    unpublish_after = now + unpublish_delay(settings)
    created: list[str] = []
    retired: list[str] = []
    for alg in SUPPORTED_ALGS:
        previous = _active_rows(session, alg)
        row = _create(session, keys, alg, now)
        created.append(row.kid)
        ids = [p.id for p in previous]
        if ids:
            # Conditional: a key retired meanwhile by a concurrent rotation keeps its own dates.
            session.execute(
                update(SigningKey)
                .where(SigningKey.id.in_(ids), SigningKey.retired_at.is_(None))
                .values(retired_at=now, unpublish_after=unpublish_after)
                .execution_options(synchronize_session="fetch")
            )
            retired.extend(p.kid for p in previous)
    result = {"created": created, "retired": retired, "unpublish_after": unpublish_after.isoformat()}
    audit.record(session, TAG_KEY_ROTATED, actor=actor, subject="signing_keys", details=result)
    session.flush()
    return result


# Decrypted keys by (kid, ciphertext): decrypting and importing a key at every signature costs more than
# signing. Which key signs is still decided from the database at every call, and a key is only served from
# here while the key file still holds the KEK its ciphertext names.
_PRIVATE_CACHE: dict[tuple[str, str], SigningJWK] = {}
# The same keys by kid alone, with their algorithm and ciphertext: for a signature whose kid was read from the
# database by the caller's statement (:func:`active_kid`).
_BY_KID: dict[str, tuple[str, str, SigningJWK]] = {}


def _load_private(keys: InstanceKeys, row: SigningKey) -> SigningJWK:
    cache_key = (row.kid, row.private_jwk_enc)
    cached = _PRIVATE_CACHE.get(cache_key)
    if cached is not None and crypto.kid_of(row.private_jwk_enc) in keys.kek:
        return cached
    key = _decrypt_private(keys, row)
    if len(_PRIVATE_CACHE) > 64:
        _PRIVATE_CACHE.clear()
        _BY_KID.clear()
    _PRIVATE_CACHE[cache_key] = key
    _BY_KID[row.kid] = (row.alg, row.private_jwk_enc, key)
    return key


def _private_by_kid(session: Session, keys: InstanceKeys, kid: str, alg: str) -> SigningJWK:
    cached = _BY_KID.get(kid)
    if cached is not None and cached[0] == alg and crypto.kid_of(cached[1]) in keys.kek:
        return cached[2]
    row = session.scalar(select(SigningKey).where(SigningKey.kid == kid, SigningKey.alg == alg))
    if row is None:
        raise NoSigningKey(f"Clé de signature {alg} « {kid} » introuvable.")
    return _load_private(keys, row)


def _decrypt_private(keys: InstanceKeys, row: SigningKey) -> SigningJWK:
    data = json.loads(crypto.decrypt(keys, row.private_jwk_enc, _aad(row.kid)))
    params = {"alg": row.alg, "use": "sig", "kid": row.kid}
    if data.get("kty") == "RSA":
        # The material was generated here and is authenticated by AES-GCM: the full RSA key validation
        # (about 0.1 s for 3072 bits) would be paid at every signature for nothing.
        numbers = RSAPrivateNumbers(
            p=base64_to_int(data["p"]), q=base64_to_int(data["q"]), d=base64_to_int(data["d"]),
            dmp1=base64_to_int(data["dp"]), dmq1=base64_to_int(data["dq"]), iqmp=base64_to_int(data["qi"]),
            public_numbers=RSAPublicNumbers(base64_to_int(data["e"]), base64_to_int(data["n"])),
        )
        return RSAKey.import_key(numbers.private_key(unsafe_skip_rsa_key_validation=True),
                                 params)  # type: ignore[arg-type]
    return ECKey.import_key(data, params)  # type: ignore[arg-type]


def active_key(session: Session, keys: InstanceKeys, alg: str = "ES256") -> tuple[str, SigningJWK]:
    """Return ``(kid, private key)`` of the newest non-retired key of ``alg``.

    Raises :class:`NoSigningKey` when there is none (run ``hospiconnect init``) and
    :class:`hospiconnect.crypto.CryptoError` when the key file cannot decrypt it.
    """
    if alg not in SUPPORTED_ALGS:
        raise ValueError(f"unsupported signing algorithm {alg!r}")
    rows = _active_rows(session, alg)
    if not rows:
        raise NoSigningKey(f"Aucune clé de signature {alg} active : lancez « hospiconnect init ».")
    return rows[0].kid, _load_private(keys, rows[0])


def active_kid(alg: Any) -> Any:
    """Return a scalar subquery: the ``kid`` of the newest non-retired key of ``alg`` (a value or a bound
    parameter), NULL when there is none — to read along with other rows in one statement and pass to
    :func:`sign` as ``kid``."""
    return (select(SigningKey.kid).where(SigningKey.alg == alg, SigningKey.retired_at.is_(None))
            .order_by(SigningKey.created_at.desc(), SigningKey.id.desc()).limit(1).scalar_subquery())


def _numeric_dates(claims: dict[str, Any]) -> dict[str, Any]:
    out = dict(claims)
    for name in ("exp", "iat", "nbf", "auth_time"):
        value = out.get(name)
        if isinstance(value, dt.datetime):
            out[name] = calendar.timegm(value.utctimetuple())
    return out


def sign(session: Session, keys: InstanceKeys, claims: dict[str, Any], *, alg: str = "ES256",
         typ: str = "JWT", kid: str | None = None) -> str:
    """Sign ``claims`` with the active key of ``alg`` and return a compact JWS (RFC 7515 §7.1) whose
    protected header is ``{"alg", "kid", "typ"}`` (e.g. ``typ="logout+jwt"`` for OpenID Connect
    Back-Channel Logout §2.4). ``datetime`` values of ``exp``/``iat``/``nbf``/``auth_time`` become
    NumericDate (RFC 7519 §2). ``claims`` is not modified.

    ``kid``: the active key of ``alg`` as the caller read it in this transaction (:func:`active_kid`), which
    spares reading it again; None reads it here.

    Raises :class:`NoSigningKey` when no key of ``alg`` is active.
    """
    if kid is not None:
        if alg not in SUPPORTED_ALGS:
            raise ValueError(f"unsupported signing algorithm {alg!r}")
        key = _private_by_kid(session, keys, kid, alg)
    else:
        kid, key = active_key(session, keys, alg)
    header = {"alg": alg, "kid": kid, "typ": typ}
    payload = json.dumps(_numeric_dates(claims), ensure_ascii=False, separators=(",", ":"))
    return jws.serialize_compact(header, payload, key, algorithms=[alg])


def _published_filter(now: dt.datetime):  # type: ignore[no-untyped-def]
    return (SigningKey.unpublish_after.is_(None)) | (SigningKey.unpublish_after > now)


def published_keys(session: Session, now: dt.datetime | None = None) -> list[SigningKey]:
    """Return the rows of every key still published at ``now``: active keys first, newest first."""
    now = now or utcnow()
    return list(session.scalars(
        select(SigningKey).where(_published_filter(now))
        .order_by(SigningKey.retired_at.is_not(None), SigningKey.created_at.desc(), SigningKey.id.desc())
    ))


def public_jwks(session: Session, now: dt.datetime | None = None) -> dict[str, list[dict[str, Any]]]:
    """Return the JWK Set (RFC 7517 §5) of every key not yet past ``unpublish_after``, each with its
    ``kid``, ``alg`` and ``use: "sig"`` and no private member."""
    out = []
    for row in published_keys(session, now):
        jwk = json.loads(row.public_jwk_json)
        jwk.update({"kid": row.kid, "alg": row.alg, "use": "sig"})
        out.append(jwk)
    return {"keys": out}


def _public_key(row: SigningKey) -> SigningJWK:
    data = json.loads(row.public_jwk_json)
    for private_member in ("d", "p", "q", "dp", "dq", "qi", "oth"):
        data.pop(private_member, None)
    params = {"alg": row.alg, "use": "sig", "kid": row.kid}
    if data.get("kty") == "RSA":
        return RSAKey.import_key(data, params)  # type: ignore[arg-type]
    return ECKey.import_key(data, params)  # type: ignore[arg-type]


def verify(session: Session, token: str, *, algs: Iterable[str] = SUPPORTED_ALGS,
           now: dt.datetime | None = None) -> dict[str, Any]:
    """Check the signature of a compact JWS signed by this provider and return its claims.

    The ``kid`` of the protected header must name a key published at ``now`` whose algorithm is the
    header's ``alg``, and that algorithm must be in ``algs`` (RFC 8725 §3.1: the algorithm is never
    taken from the token alone; ``none`` is never accepted). Claims (``exp``, ``aud``…) are NOT validated
    here: callers do it, because an ``id_token_hint`` may legitimately be expired (OpenID Connect
    RP-Initiated Logout §2).

    Raises :class:`InvalidSignature` for anything else: malformed token, ``crit`` header, unknown or
    unpublished ``kid``, algorithm mismatch, modified header, payload or signature, non-object payload.
    """
    allowed = [a for a in algs if a in SUPPORTED_ALGS]
    if not isinstance(token, str) or token.count(".") != 2 or len(token) > 16_000:
        raise InvalidSignature("Jeton mal formé.")
    try:
        header = json_b64decode(token.split(".", 1)[0].encode("ascii"))
    except (ValueError, TypeError, UnicodeError) as exc:
        raise InvalidSignature("En-tête de jeton illisible.") from exc
    if not isinstance(header, dict):
        raise InvalidSignature("En-tête de jeton illisible.")
    alg, kid = header.get("alg"), header.get("kid")
    if not isinstance(alg, str) or alg not in allowed:
        raise InvalidSignature("Algorithme de signature refusé.")
    if not isinstance(kid, str) or not kid:
        raise InvalidSignature("Identifiant de clé (kid) absent.")
    if "crit" in header or "b64" in header:
        raise InvalidSignature("En-tête de jeton non pris en charge.")
    row = session.scalar(
        select(SigningKey).where(SigningKey.kid == kid, _published_filter(now or utcnow()))
    )
    if row is None or row.alg != alg:
        raise InvalidSignature("Clé de signature inconnue.")
    try:
        obj = jws.deserialize_compact(token, _public_key(row), algorithms=[alg])
        claims = json.loads(obj.payload or b"")
    except (JoseError, ValueError, TypeError) as exc:
        raise InvalidSignature() from exc
    if not isinstance(claims, dict):
        raise InvalidSignature("Contenu de jeton invalide.")
    return claims


def reencrypt(session: Session, keys: InstanceKeys) -> int:
    """Re-encrypt under the current key-encryption key every private key still encrypted under an older
    one (``hospiconnect keys rotate-kek``). Returns how many rows were rewritten; 0 when all are current,
    so running it twice is harmless.

    Raises :class:`hospiconnect.crypto.CryptoError` when a ciphertext cannot be decrypted with the key
    file (nothing is written then: the caller's transaction rolls back).
    """
    # The key file may have been rotated since ``keys`` were loaded: target its current key, as encrypt does.
    keys = crypto.refresh_keys(keys)
    count = 0
    for row in session.scalars(select(SigningKey).order_by(SigningKey.id)):
        if crypto.kid_of(row.private_jwk_enc) == keys.current_kek_id:
            continue
        plaintext = crypto.decrypt(keys, row.private_jwk_enc, _aad(row.kid))
        row.private_jwk_enc = crypto.encrypt(keys, plaintext, _aad(row.kid))
        count += 1
    session.flush()
    return count
