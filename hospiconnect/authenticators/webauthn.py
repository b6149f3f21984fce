"""WebAuthn relying party: registration and authentication ceremonies (W3C Web Authentication Level 2,
§7.1 "Registering a new credential" and §7.2 "Verifying an authentication assertion").

This is the only module of HospiConnect that imports ``fido2``. ``Fido2Server`` checks what is inside a
response (client data type, challenge, origin, RP ID hash, user presence, signature, attestation
statement); the rest is left to the application by the library, so it is done here (SECURITY.md item 14):

- the ceremony state lives server-side in ``webauthn_challenges`` (id of 256 random bits, five-minute
  lifetime) and is consumed by one conditional ``DELETE … RETURNING``, so two concurrent completions of
  the same ceremony cannot both get it;
- user verification is judged here, after the signature, so that its absence gives its own refusal;
- the signature counter is stored and compared with one conditional ``UPDATE`` (fido2 does not look at it);
- the attestation format and AAGUID are recorded, the statement's own signature is checked for the formats
  fido2 knows, and an optional AAGUID allow-list is applied. There is no metadata service here, so the
  allow-list only filters authenticators that tell the truth about their model.

Transactions: a successful ``complete_*`` call leaves its writes in the caller's session, to be committed
with the rest of the caller's operation (the login, the enrollment step). A refused one journals the
refusal and **commits** before raising, so that the consumed challenge and the journal entry survive the
rollback the error handler performs; call it with no other pending change in the session.

SECURITY.md item 12: a WebAuthn MIE counts as two factors only with user verification; its ``amr`` is then
``["hwk", "mfa", "pin"]``, and ``["hwk", "user"]`` with user presence only.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import logging
import re
import secrets
import typing
import uuid
from typing import Any, Callable, Mapping, TypeVar

from cryptography.exceptions import InvalidSignature
import fido2.utils
from fido2 import cbor
from fido2.attestation import Attestation, UnsupportedAttestation
from fido2.cose import CoseKey
from fido2.server import Fido2Server
from fido2.utils import websafe_decode, websafe_encode
from fido2.webauthn import (
    Aaguid,
    AttestationConveyancePreference,
    AttestationObject,
    AttestedCredentialData,
    AuthenticationResponse,
    AuthenticatorAttachment,
    AuthenticatorData,
    PublicKeyCredentialDescriptor,
    PublicKeyCredentialParameters,
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialType,
    PublicKeyCredentialUserEntity,
    RegistrationResponse,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, lazyload
from sqlalchemy.orm.attributes import set_committed_value

from hospiconnect.audit import service as audit
from hospiconnect.authenticators.models import Mie, MieTransition, WebAuthnChallenge, WebAuthnCredential
from hospiconnect.db import utcnow
from hospiconnect.directory.models import Identity
from hospiconnect.errors import HospiConnectError, ValidationError
from hospiconnect.settings import Settings

log = logging.getLogger("hospiconnect.webauthn")


# fido2 2.x evaluates the string annotations of its data classes (typing.get_type_hints, which compiles
# each one) every time it builds one: about 1 ms of CPU per ceremony, a fifth of a whole sign-in with a
# security key. A class's hints never change, so they are computed once per class here.
_TYPE_HINTS: dict[type, dict[str, Any]] = {}


def _class_type_hints(obj: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    if args or kwargs or not isinstance(obj, type):
        return typing.get_type_hints(obj, *args, **kwargs)
    hints = _TYPE_HINTS.get(obj)
    if hints is None:
        hints = _TYPE_HINTS[obj] = typing.get_type_hints(obj)
    return hints


fido2.utils.get_type_hints = _class_type_hints  # type: ignore[attr-defined]

# --- audit tags (source:subject:action) -----------------------------------------------------------------
AUTHN_WEBAUTHN_SUCCESS = "authn:webauthn:success"
AUTHN_WEBAUTHN_FAILURE = "authn:webauthn:failure"
AUTHN_WEBAUTHN_COUNTER_REGRESSION = "authn:webauthn:counter_regression"
MIE_WEBAUTHN_REGISTERED = "mie:webauthn:registered"
MIE_WEBAUTHN_REGISTRATION_REFUSED = "mie:webauthn:registration_refused"

# --- parameters -------------------------------------------------------------------------------------------
CHALLENGE_TTL = dt.timedelta(minutes=5)
PURPOSE_REGISTER = "register"
PURPOSE_AUTHENTICATE = "authenticate"
# RFC 8176 values. With UV the authenticator checked a PIN or a biometric: something held + something
# known or owned, hence "mfa"; "pin" is the usual value since the RP cannot tell which method was used.
AMR_USER_VERIFIED = ("hwk", "mfa", "pin")
AMR_USER_PRESENT = ("hwk", "user")
# COSE algorithms offered and accepted: ES256, EdDSA, ES384, PS256, RS256. fido2 would also offer
# secp256k1 and post-quantum algorithms, which no authenticator in a hospital fleet uses, and it does not
# check at registration that the key's algorithm was one of those offered: we do.
ALLOWED_ALGORITHMS = (-7, -8, -35, -37, -257)
# A browser response is a few kilobytes (an attestation certificate chain at most); refuse larger input
# before parsing it.
MAX_RESPONSE_CHARS = 64 * 1024
# webauthn_credentials.credential_id is String(400): base64url of at most 300 bytes.
MAX_CREDENTIAL_ID_BYTES = 300
# The transports fido2 can put back in a descriptor (AuthenticatorTransport); others are not recorded.
KNOWN_TRANSPORTS = ("ble", "hybrid", "internal", "nfc", "usb")
REGISTRABLE_IDENTITY_STATUSES = ("pending", "active")
ANONYMOUS = "anonymous"

_B64URL = re.compile(r"^[A-Za-z0-9_-]*={0,2}$")
_T = TypeVar("_T")

# Statements of the login path, built once: Core statements on the tables skip the ORM's bulk-statement
# machinery, and a login is a few small statements, so building them is a visible part of its cost.
_CHALLENGES = WebAuthnChallenge.__table__
_CREDENTIALS = WebAuthnCredential.__table__
_MIES = Mie.__table__
_INSERT_CHALLENGE = _CHALLENGES.insert()
_CONSUME = (
    _CHALLENGES.delete()
    .where(_CHALLENGES.c.id == bindparam("challenge_id"), _CHALLENGES.c.purpose == bindparam("purpose"))
    .returning(_CHALLENGES.c.state, _CHALLENGES.c.identity_id, _CHALLENGES.c.expires_at)
)
_CONSUME_FOR_IDENTITY = _CONSUME.where(_CHALLENGES.c.identity_id == bindparam("identity_id"))
_ACTIVE_CREDENTIALS_OF = (
    select(_CREDENTIALS.c.credential_id, _CREDENTIALS.c.transports)
    .join(_MIES, _MIES.c.id == _CREDENTIALS.c.mie_id)
    .where(_MIES.c.identity_id == bindparam("identity_id"), _MIES.c.type == "webauthn", _MIES.c.status == "active")
    .order_by(_MIES.c.id)
)
_CREDENTIAL_BY_ID = (
    select(Mie, WebAuthnCredential.public_key, WebAuthnCredential.sign_count,
           Identity.status.label("identity_status"), Identity.public_id.label("identity_public_id"),
           Identity.user_name.label("user_name"))
    .join(WebAuthnCredential, WebAuthnCredential.mie_id == Mie.id)
    .join(Identity, Identity.id == Mie.identity_id)
    .where(WebAuthnCredential.credential_id == bindparam("credential_id"), Mie.type == "webauthn")
    .options(lazyload(Mie.transitions))
)
# The signature counter only moves forward: the row count of this UPDATE is the decision.
_ADVANCE_COUNTER = (
    _CREDENTIALS.update()
    .where(_CREDENTIALS.c.mie_id == bindparam("b_mie_id"), _CREDENTIALS.c.sign_count < bindparam("new_count"))
    .values(sign_count=bindparam("new_count"))
)
_TOUCH_MIE = _MIES.update().where(_MIES.c.id == bindparam("b_mie_id")).values(last_used_at=bindparam("now"))
# PostgreSQL: both in one statement; the MIE is touched only when the counter advanced (row count 1).
_ADVANCED = _ADVANCE_COUNTER.returning(_CREDENTIALS.c.mie_id).cte("advanced")
_ADVANCE_AND_TOUCH = (_MIES.update().where(_MIES.c.id.in_(select(_ADVANCED.c.mie_id)))
                      .values(last_used_at=bindparam("now")).add_cte(_ADVANCED))


# --- errors ---------------------------------------------------------------------------------------------
class WebAuthnError(HospiConnectError):
    """A WebAuthn ceremony was refused; ``code`` names the reason (also written to the journal)."""

    code = "webauthn_refused"
    http_status = 400
    default_message = "L'opération avec la clé de sécurité a échoué. Recommencez."

    def __init__(self, message: str | None = None, *, details: dict | None = None) -> None:
        super().__init__(message or self.default_message, details=details)


class ChallengeExpired(WebAuthnError):
    code = "challenge_expired"
    default_message = "Le délai pour utiliser la clé de sécurité est dépassé. Recommencez."


class ChallengeUnknown(WebAuthnError):
    code = "challenge_unknown"
    default_message = ("Cette demande n'est plus valable (déjà utilisée ou inconnue). "
                       "Rechargez la page et recommencez.")


class InvalidResponse(WebAuthnError):
    code = "invalid_response"
    default_message = ("La réponse de la clé de sécurité est invalide ou ne correspond pas à ce site. "
                       "Recommencez.")


class CounterRegression(WebAuthnError):
    code = "counter_regression"
    http_status = 403
    default_message = ("Cette clé de sécurité a été refusée : son compteur de signatures est incohérent, "
                       "ce qui peut indiquer une copie de la clé. Contactez le support informatique.")


class UserVerificationRequired(WebAuthnError):
    code = "user_verification_required"
    default_message = ("La clé de sécurité doit vérifier que c'est bien vous (code PIN ou empreinte) : "
                       "recommencez en la déverrouillant.")


class AaguidNotAllowed(WebAuthnError):
    code = "aaguid_not_allowed"
    http_status = 403
    default_message = "Ce modèle de clé de sécurité n'est pas autorisé par l'établissement."


class CredentialUnknown(WebAuthnError):
    code = "credential_unknown"
    http_status = 401
    default_message = "Cette clé de sécurité n'est pas reconnue ou n'est plus active."


class CredentialAlreadyRegistered(WebAuthnError):
    code = "credential_already_registered"
    http_status = 409
    default_message = "Cette clé de sécurité est déjà enregistrée."


class NoActiveCredential(WebAuthnError):
    code = "no_active_credential"
    default_message = "Aucune clé de sécurité active n'est associée à ce compte."


class IdentityNotEligible(WebAuthnError):
    code = "identity_not_eligible"
    http_status = 403
    default_message = "Ce compte ne permet pas d'enregistrer une clé de sécurité (compte suspendu ou parti)."


@dataclasses.dataclass(frozen=True)
class AuthenticationResult:
    """A verified assertion: who, with which MIE, whether the authenticator verified the user, and the
    RFC 8176 ``amr`` values this login earns."""

    identity_id: int
    mie: Mie
    user_verified: bool
    amr: list[str]


# --- fido2 glue -------------------------------------------------------------------------------------------
def _check_attestation_statement(attestation_object: AttestationObject, client_data_hash: bytes) -> None:
    """Check the statement's own signature for the formats fido2 implements; other formats are only
    recorded. The trust path is not judged: that needs the FIDO metadata service, which we do not use."""
    verifier = Attestation.for_type(attestation_object.fmt)
    if issubclass(verifier, UnsupportedAttestation):
        return
    verifier().verify(attestation_object.att_stmt, attestation_object.auth_data, client_data_hash)


@functools.lru_cache(maxsize=16)
def _server(rp_id: str, rp_name: str, origins: tuple[str, ...]) -> Fido2Server:
    allowed = frozenset(origins)
    server = Fido2Server(
        PublicKeyCredentialRpEntity(id=rp_id, name=rp_name),
        attestation=AttestationConveyancePreference.DIRECT,
        # Exact match against the configured origins. fido2's default would accept any https origin under
        # the RP ID (and http://localhost); we want only the origins this deployment serves.
        verify_origin=lambda origin: isinstance(origin, str) and origin in allowed,
        verify_attestation=_check_attestation_statement,
    )
    server.timeout = int(CHALLENGE_TTL.total_seconds() * 1000)
    server.allowed_algorithms = [
        PublicKeyCredentialParameters(type=PublicKeyCredentialType.PUBLIC_KEY, alg=alg) for alg in ALLOWED_ALGORITHMS
    ]
    return server


def server_for(settings: Settings) -> Fido2Server:
    """Return the (cached) ``Fido2Server`` for the RP ID, name and origins in ``settings``."""
    return _server(settings.webauthn_rp_id, settings.establishment_name, tuple(settings.webauthn_origins))


def _fido2(step: Callable[[], _T]) -> _T:
    """Run one fido2 parsing or verification step on the client's data and return its result.

    Raises :class:`InvalidResponse` whatever fido2 raised: its parsers of attacker-controlled JSON, CBOR and
    base64 report bad input with an open set of exceptions (ValueError, KeyError, TypeError, IndexError,
    AttributeError, struct.error, AssertionError, InvalidSignature…). Only client data and our own stored
    key reach these calls (no database access inside), so any failure means "does not verify".
    """
    try:
        return step()
    except Exception as exc:  # noqa: BLE001 - see the docstring
        log.debug("réponse WebAuthn refusée par fido2 : %s: %s", type(exc).__name__, exc)
        raise InvalidResponse() from exc


def _loads_as_public_key(key: CoseKey) -> bool:
    """Return True when ``key`` loads as a public key of its algorithm.

    fido2's CBOR decoder accepts a byte string shorter than the length it announces, so a truncated response
    can carry a key that no signature will ever match. Verifying an empty signature can only end in
    InvalidSignature once the key has loaded; any other outcome means the key is unusable.
    """
    try:
        key.verify(b"probe", b"")
    except InvalidSignature:
        return True
    except Exception:  # noqa: BLE001 - bad coordinates, wrong lengths, unknown curve…
        return False
    return False


def user_handle_for(public_id: str) -> bytes:
    """Return the WebAuthn user handle of an identity: the 16 bytes of its public UUID (stable, opaque,
    no personal data, as WebAuthn §14.6.1 asks)."""
    try:
        return uuid.UUID(public_id).bytes
    except ValueError:
        return public_id.encode()


def _relaxed_state(state: Mapping[str, Any]) -> dict[str, Any]:
    # fido2 would refuse a missing UV flag with the same ValueError as a forged response, before checking
    # the signature. We give it the challenge only and judge UV ourselves once the response is authentic.
    return {"challenge": state["challenge"], "user_verification": None}


# --- parsing of the browser's JSON ---------------------------------------------------------------------
def _is_b64url(value: Any) -> bool:
    return isinstance(value, str) and bool(_B64URL.match(value)) and len(value.rstrip("=")) % 4 != 1


def _load_json(credential: Mapping[str, Any] | str | bytes) -> dict[str, Any]:
    if isinstance(credential, (str, bytes, bytearray)):
        if len(credential) > MAX_RESPONSE_CHARS:
            raise InvalidResponse()
        try:
            credential = json.loads(credential)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise InvalidResponse() from exc
    if not isinstance(credential, Mapping):
        raise InvalidResponse()
    return dict(credential)


def _common_fields(data: Mapping[str, Any], binary: tuple[str, ...], optional_binary: tuple[str, ...]) -> dict:
    """Check the shape that PublicKeyCredential.toJSON() gives and return only the fields fido2 reads.

    Strict base64url (fido2's decoder silently skips characters outside the alphabet), exact types, and
    ``id`` equal to ``rawId``. Raises :class:`InvalidResponse`.
    """
    if data.get("type") != "public-key" or not _is_b64url(data.get("rawId")) or not data["rawId"]:
        raise InvalidResponse()
    if "id" in data and data["id"] != data["rawId"]:
        raise InvalidResponse()
    response = data.get("response")
    if not isinstance(response, Mapping):
        raise InvalidResponse()
    cleaned: dict[str, Any] = {}
    for name in binary:
        if not _is_b64url(response.get(name)) or not response[name]:
            raise InvalidResponse()
        cleaned[name] = response[name]
    for name in optional_binary:
        value = response.get(name)
        if value is not None:
            if not _is_b64url(value):
                raise InvalidResponse()
            cleaned[name] = value
    attachment = data.get("authenticatorAttachment")
    if attachment is not None and not isinstance(attachment, str):
        raise InvalidResponse()
    extensions = data.get("clientExtensionResults")
    if extensions is not None and not isinstance(extensions, Mapping):
        raise InvalidResponse()
    # No extension is requested, so none of their outputs is read: they are not passed on.
    result: dict[str, Any] = {"type": "public-key", "id": data["rawId"], "rawId": data["rawId"],
                              "response": cleaned}
    if attachment in ("platform", "cross-platform"):
        result["authenticatorAttachment"] = attachment
    return result


def _parse_registration(credential: Mapping[str, Any] | str | bytes) -> tuple[RegistrationResponse, list[str]]:
    """Return fido2's RegistrationResponse and the reported transports; raise :class:`InvalidResponse`."""
    data = _load_json(credential)
    cleaned = _common_fields(data, ("clientDataJSON", "attestationObject"), ())
    transports = data["response"].get("transports") or []
    if not isinstance(transports, list) or not all(isinstance(t, str) for t in transports):
        raise InvalidResponse()
    known = sorted({t for t in transports if t in KNOWN_TRANSPORTS})
    return _fido2(lambda: RegistrationResponse.from_dict(cleaned)), known


def _parse_authentication(credential: Mapping[str, Any] | str | bytes) -> AuthenticationResponse:
    """Return fido2's AuthenticationResponse; raise :class:`InvalidResponse`."""
    data = _load_json(credential)
    cleaned = _common_fields(data, ("clientDataJSON", "authenticatorData", "signature"), ("userHandle",))
    return _fido2(lambda: AuthenticationResponse.from_dict(cleaned))


# --- challenges -----------------------------------------------------------------------------------------
def _store_state(session: Session, purpose: str, identity_id: int | None, state: Mapping[str, Any],
                 require_uv: bool) -> str:
    challenge_id = secrets.token_urlsafe(32)  # 256 bits
    payload = {"challenge": state["challenge"], "user_verification": str(state["user_verification"]),
               "require_uv": bool(require_uv)}
    session.execute(_INSERT_CHALLENGE, {"id": challenge_id, "purpose": purpose, "identity_id": identity_id,
                                        "state": json.dumps(payload), "expires_at": utcnow() + CHALLENGE_TTL})
    return challenge_id


@dataclasses.dataclass(frozen=True)
class _Consumed:
    state: dict[str, Any]
    identity_id: int | None


_ANY_IDENTITY = object()


def _consume(session: Session, challenge_id: Any, purpose: str, identity_id: Any = _ANY_IDENTITY) -> _Consumed:
    """Delete the challenge row and return what it held; the row count decides, so of two concurrent
    callers exactly one gets it (the other waits for the first to commit, then finds nothing).

    Raises :class:`ChallengeUnknown` (absent, already used, other purpose or person) or
    :class:`ChallengeExpired` (the row is deleted all the same).
    """
    if not isinstance(challenge_id, str) or not 0 < len(challenge_id) <= 64:
        raise ChallengeUnknown()
    params: dict[str, Any] = {"challenge_id": challenge_id, "purpose": purpose}
    if identity_id is _ANY_IDENTITY:
        stmt = _CONSUME
    else:
        stmt, params["identity_id"] = _CONSUME_FOR_IDENTITY, identity_id
    row = session.execute(stmt, params).one_or_none()
    if row is None:
        raise ChallengeUnknown()
    if row.expires_at <= utcnow():
        raise ChallengeExpired()
    return _Consumed(json.loads(row.state), row.identity_id)


def purge_expired_challenges(session: Session, now: dt.datetime | None = None) -> int:
    """Delete the challenges that expired before ``now`` (default: the current time); return how many.

    For the periodic job; safe to run twice. Does not commit.
    """
    result = session.execute(_CHALLENGES.delete().where(_CHALLENGES.c.expires_at < (now or utcnow())))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# --- registration ---------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4096)
def _descriptor(credential_id: str, transports: str) -> PublicKeyCredentialDescriptor:
    # Immutable, and fido2 builds its dataclasses slowly (type hints resolved on every construction).
    return PublicKeyCredentialDescriptor(
        type=PublicKeyCredentialType.PUBLIC_KEY, id=websafe_decode(credential_id),
        transports=[t for t in transports.split(",") if t] or None,  # type: ignore[misc]
    )


def _options_json(options: Any) -> dict[str, Any]:
    # fido2 gives a Mapping whose values are str-enums and nested Mappings; a JSON round trip yields
    # plain dicts, lists and strings for the template and the JSON API.
    result: dict[str, Any] = json.loads(json.dumps(dict(options)))
    return result


def begin_registration(session: Session, identity: Identity, settings: Settings, *, require_uv: bool,
                       attachment: str | None = None) -> tuple[str, dict[str, Any]]:
    """Start registering a new authenticator for ``identity``.

    Returns ``(challenge_id, options)``: ``options`` is the JSON form of PublicKeyCredentialCreationOptions
    for ``PublicKeyCredential.parseCreationOptionsFromJSON`` (binary values base64url), excluding the
    person's existing credentials, asking for a discoverable credential when possible and for direct
    attestation. The state is stored server-side (not committed here: the caller commits).

    The caller must have checked SECURITY.md item 17 (an authenticated session at the level the new MIE
    will be used at, or a fresh identity check) before calling this.

    Raises :class:`IdentityNotEligible` for a suspended or departed identity, ``ValueError`` for an
    unknown ``attachment`` (``"platform"``, ``"cross-platform"`` or None).
    """
    if identity.status not in REGISTRABLE_IDENTITY_STATUSES:
        raise IdentityNotEligible()
    if attachment not in (None, "platform", "cross-platform"):
        raise ValueError(f"unknown authenticator attachment {attachment!r}")
    existing = session.execute(
        select(WebAuthnCredential.credential_id, WebAuthnCredential.transports)
        .join(Mie, Mie.id == WebAuthnCredential.mie_id)
        .where(Mie.identity_id == identity.id)
    ).all()
    user = PublicKeyCredentialUserEntity(id=user_handle_for(identity.public_id), name=identity.user_name,
                                         display_name=identity.display_name or identity.user_name)
    options, state = server_for(settings).register_begin(
        user,
        credentials=[_descriptor(row.credential_id, row.transports) for row in existing],
        resident_key_requirement=ResidentKeyRequirement.PREFERRED,
        user_verification=(UserVerificationRequirement.REQUIRED if require_uv
                           else UserVerificationRequirement.PREFERRED),
        authenticator_attachment=AuthenticatorAttachment(attachment) if attachment else None,
    )
    challenge_id = _store_state(session, PURPOSE_REGISTER, identity.id, state, require_uv)
    return challenge_id, _options_json(options.public_key)


def _clean_label(label: str) -> str:
    cleaned = " ".join(str(label or "").split())
    if not 1 <= len(cleaned) <= 100:
        raise ValidationError("Le nom de la clé doit comporter entre 1 et 100 caractères.", field="label")
    return cleaned


def _normalise_aaguid(value: str) -> str:
    return value.replace("-", "").strip().lower()


def complete_registration(session: Session, identity: Identity, settings: Settings, challenge_id: str,
                          credential: Mapping[str, Any] | str, *, label: str, actor: str,
                          client_ip: str | None = None) -> Mie:
    """Verify the browser's answer to :func:`begin_registration` and bind the new authenticator.

    Returns the new active :class:`Mie` (type ``webauthn``; its ``amr`` depends on whether the authenticator
    verified the user), with its :class:`WebAuthnCredential`, a ``pending → active`` transition and a
    ``mie:webauthn:registered`` journal entry, all left uncommitted in ``session``.

    Raises, after journaling ``mie:webauthn:registration_refused`` and committing (the challenge stays
    consumed, nothing else is written): :class:`ChallengeUnknown`, :class:`ChallengeExpired`,
    :class:`InvalidResponse` (malformed or not verifying: origin, RP ID, challenge, attestation statement,
    algorithm), :class:`UserVerificationRequired`, :class:`AaguidNotAllowed`,
    :class:`CredentialAlreadyRegistered`, :class:`IdentityNotEligible`. Raises ``ValidationError`` for a bad
    ``label`` before touching the challenge, so the person can correct it.
    """
    label = _clean_label(label)
    details: dict[str, Any] = {"factor": "webauthn"}
    try:
        consumed = _consume(session, challenge_id, PURPOSE_REGISTER, identity.id)
        if identity.status not in REGISTRABLE_IDENTITY_STATUSES:
            raise IdentityNotEligible()
        registration, transports = _parse_registration(credential)
        server = server_for(settings)
        auth_data: AuthenticatorData = _fido2(
            lambda: server.register_complete(_relaxed_state(consumed.state), registration))
        client_data = registration.response.client_data
        credential_data = auth_data.credential_data
        if credential_data is None or client_data.cross_origin:
            # An embedded (cross-origin iframe) ceremony is never ours: our pages refuse framing.
            raise InvalidResponse()
        if credential_data.credential_id != registration.raw_id:
            # The id the browser reports must be the one the authenticator attested (fido2 does not compare).
            raise InvalidResponse()
        key = credential_data.public_key
        if key.get(3) not in ALLOWED_ALGORITHMS or not _loads_as_public_key(key):
            raise InvalidResponse()
        if len(credential_data.credential_id) > MAX_CREDENTIAL_ID_BYTES:
            raise InvalidResponse()
        fmt = registration.response.attestation_object.fmt
        if not isinstance(fmt, str) or not 0 < len(fmt) <= 40:
            raise InvalidResponse()
        aaguid = str(credential_data.aaguid)
        credential_id = websafe_encode(credential_data.credential_id)
        user_verified = auth_data.is_user_verified()
        details.update(aaguid=aaguid, attestation_format=fmt, user_verified=user_verified)
        if consumed.state.get("require_uv") and not user_verified:
            raise UserVerificationRequired()
        allowlist = {_normalise_aaguid(a) for a in settings.webauthn_aaguid_allowlist}
        if allowlist and _normalise_aaguid(aaguid) not in allowlist:
            raise AaguidNotAllowed()
        # Checked before inserting so that the refusal is journaled; a concurrent registration of the same
        # credential id still fails on the unique constraint (IntegrityError, nothing committed).
        if session.scalar(select(WebAuthnCredential.mie_id)
                          .where(WebAuthnCredential.credential_id == credential_id)) is not None:
            raise CredentialAlreadyRegistered()
    except WebAuthnError as exc:
        audit.record(session, MIE_WEBAUTHN_REGISTRATION_REFUSED, actor=actor, subject=identity.public_id,
                     client_ip=client_ip, outcome="failure", details={**details, "reason": exc.code})
        session.commit()
        raise

    now = utcnow()
    attachment = registration.authenticator_attachment
    # Lifecycle kept minimal here (create active, one pending → active transition); the MIE services
    # own notifications and the other transitions.
    mie = Mie(identity_id=identity.id, type="webauthn", label=label, status="active", created_at=now,
              activated_at=now)
    mie.amr = list(AMR_USER_VERIFIED if user_verified else AMR_USER_PRESENT)
    mie.transitions.append(MieTransition(from_status="pending", to_status="active", at=now, actor=actor,
                                         reason="clé de sécurité enregistrée"))
    session.add(mie)
    session.flush()
    session.add(WebAuthnCredential(
        mie_id=mie.id,
        credential_id=credential_id,
        public_key=cbor.encode(dict(credential_data.public_key)),
        sign_count=auth_data.counter,
        aaguid=aaguid,
        attestation_format=fmt,
        transports=",".join(transports),
        user_verified_at_registration=user_verified,
        attachment=str(attachment) if attachment else None,
        backup_eligible=auth_data.is_backup_eligible(),
    ))
    session.flush()
    audit.record(session, MIE_WEBAUTHN_REGISTERED, actor=actor, subject=identity.public_id, client_ip=client_ip,
                 details={**details, "mie": mie.public_id, "label": label, "transports": transports,
                          "attachment": str(attachment) if attachment else None,
                          "backup_eligible": auth_data.is_backup_eligible(), "amr": mie.amr})
    return mie


# --- authentication -------------------------------------------------------------------------------------
def begin_authentication(session: Session, settings: Settings, *, identity: Identity | None = None,
                         require_uv: bool) -> tuple[str, dict[str, Any]]:
    """Start an authentication ceremony.

    Returns ``(challenge_id, options)``: ``options`` is the JSON form of PublicKeyCredentialRequestOptions for
    ``PublicKeyCredential.parseRequestOptionsFromJSON``. With ``identity`` (second factor after a password),
    ``allowCredentials`` lists that person's active WebAuthn MIE and the ceremony is bound to the person;
    without it (passwordless, discoverable credential) the list is empty and the person is found from the
    credential. ``userVerification`` is ``required`` when ``require_uv``, else ``preferred``. The state is
    stored server-side (not committed here: the caller commits).

    Raises :class:`NoActiveCredential` when ``identity`` is given and has no active WebAuthn MIE (or is not
    active itself).
    """
    descriptors: list[PublicKeyCredentialDescriptor] = []
    if identity is not None:
        rows = session.execute(_ACTIVE_CREDENTIALS_OF, {"identity_id": identity.id}).all()
        if not rows or not identity.is_active:
            raise NoActiveCredential()
        descriptors = [_descriptor(row.credential_id, row.transports) for row in rows]
    options, state = server_for(settings).authenticate_begin(
        descriptors,
        user_verification=(UserVerificationRequirement.REQUIRED if require_uv
                           else UserVerificationRequirement.PREFERRED),
    )
    challenge_id = _store_state(session, PURPOSE_AUTHENTICATE, identity.id if identity else None, state, require_uv)
    return challenge_id, _options_json(options.public_key)


@dataclasses.dataclass
class _Attempt:
    """What is known so far about an authentication attempt, for the journal entry of a refusal."""

    actor: str = ANONYMOUS
    subject: str | None = None
    details: dict[str, Any] = dataclasses.field(default_factory=lambda: {"factor": "webauthn"})


def complete_authentication(session: Session, settings: Settings, challenge_id: str,
                            credential: Mapping[str, Any] | str, *, client_ip: str | None = None
                            ) -> AuthenticationResult:
    """Verify the browser's answer to :func:`begin_authentication`.

    Returns an :class:`AuthenticationResult`. On success the signature counter and ``Mie.last_used_at`` are
    updated and ``authn:webauthn:success`` is journaled, uncommitted in ``session``.

    Raises, after journaling ``authn:webauthn:failure`` (``authn:webauthn:counter_regression`` for a counter
    regression) and committing: :class:`ChallengeUnknown`, :class:`ChallengeExpired`,
    :class:`InvalidResponse` (malformed; wrong origin, RP ID, challenge or signature; user handle not the
    credential's owner), :class:`CredentialUnknown` (unknown credential, MIE not active, identity not active,
    or a credential of another person than the one the ceremony was started for),
    :class:`UserVerificationRequired`, :class:`CounterRegression`.
    """
    attempt = _Attempt()
    try:
        return _authenticate(session, settings, challenge_id, credential, client_ip, attempt)
    except WebAuthnError as exc:
        tag = AUTHN_WEBAUTHN_COUNTER_REGRESSION if isinstance(exc, CounterRegression) else AUTHN_WEBAUTHN_FAILURE
        audit.record(session, tag, actor=attempt.actor, subject=attempt.subject, client_ip=client_ip,
                     outcome="failure", details={**attempt.details, "reason": exc.code})
        session.commit()
        raise


def _authenticate(session: Session, settings: Settings, challenge_id: str, credential: Any,
                  client_ip: str | None, attempt: _Attempt) -> AuthenticationResult:
    consumed = _consume(session, challenge_id, PURPOSE_AUTHENTICATE)
    response = _parse_authentication(credential)
    credential_id = websafe_encode(response.raw_id)
    attempt.details["credential_id"] = credential_id[:64]
    row = session.execute(_CREDENTIAL_BY_ID, {"credential_id": credential_id}).one_or_none()
    if row is None:
        raise CredentialUnknown()
    mie: Mie = row.Mie
    attempt.actor, attempt.subject = row.user_name, row.identity_public_id
    attempt.details["mie"] = mie.public_id
    if consumed.identity_id is not None and consumed.identity_id != mie.identity_id:
        # The ceremony was started for someone else: a credential they did not list cannot answer it.
        attempt.details["expected_identity_id"] = consumed.identity_id
        raise CredentialUnknown()
    if mie.status != "active" or row.identity_status != "active":
        attempt.details.update(mie_status=mie.status, identity_status=row.identity_status)
        raise CredentialUnknown()

    # WebAuthn §7.2 step 6: a discoverable-credential login must name its user, and the handle must be
    # the credential owner's whenever it is given.
    expected_handle = user_handle_for(row.identity_public_id)
    if response.response.user_handle is None:
        if consumed.identity_id is None:
            raise InvalidResponse()
    elif response.response.user_handle != expected_handle:
        raise InvalidResponse()

    public_key = row.public_key
    stored = AttestedCredentialData.create(
        Aaguid.NONE, response.raw_id, _fido2(lambda: CoseKey.parse(cbor.decode(public_key))))
    server = server_for(settings)
    _fido2(lambda: server.authenticate_complete(_relaxed_state(consumed.state), [stored], response))
    if response.response.client_data.cross_origin:
        raise InvalidResponse()
    auth_data = response.response.authenticator_data
    user_verified = auth_data.is_user_verified()
    attempt.details["user_verified"] = user_verified
    if consumed.state.get("require_uv") and not user_verified:
        raise UserVerificationRequired()

    # The signature counter (WebAuthn §6.1.1, §7.2 step 21) is not checked by fido2: it is ours. An
    # authenticator that does not count always sends 0; otherwise the new value must be strictly greater
    # than the stored one. One conditional UPDATE decides, so two logins racing with the same counter value
    # (a cloned key) cannot both pass.
    new_count = auth_data.counter
    now = utcnow()
    params = {"b_mie_id": mie.id, "new_count": new_count, "now": now}
    if new_count == 0 and row.sign_count == 0:
        session.execute(_TOUCH_MIE, params)
    else:
        together = session.get_bind().dialect.name == "postgresql"
        result = session.execute(_ADVANCE_AND_TOUCH if together else _ADVANCE_COUNTER, params)
        if result.rowcount != 1:  # type: ignore[attr-defined]
            attempt.details.update(stored_count=row.sign_count, received_count=new_count)
            raise CounterRegression()
        if not together:
            session.execute(_TOUCH_MIE, params)
    set_committed_value(mie, "last_used_at", now)
    amr = sorted(AMR_USER_VERIFIED if user_verified else AMR_USER_PRESENT)
    audit.record(session, AUTHN_WEBAUTHN_SUCCESS, actor=row.user_name, subject=row.identity_public_id,
                 client_ip=client_ip, details={**attempt.details, "amr": amr,
                                               "passwordless": consumed.identity_id is None})
    return AuthenticationResult(identity_id=mie.identity_id, mie=mie, user_verified=user_verified, amr=amr)
