"""A software WebAuthn authenticator and client for tests (ES256 on P-256).

It plays both the browser and the authenticator: from the JSON options that the server hands to
``PublicKeyCredential.parseCreationOptionsFromJSON`` / ``parseRequestOptionsFromJSON`` it builds the JSON that
``credential.toJSON()`` gives (``id``, ``rawId``, ``type``, ``response{…}``, ``clientExtensionResults``,
``authenticatorAttachment``). Every part a test may want to falsify is a keyword argument: origin, RP ID,
challenge, flags, counter, attestation format and statement, signature, user handle.

Layouts follow WebAuthn Level 2: authenticator data §6.1 (rpIdHash ‖ flags ‖ signCount ‖ attested credential
data), attested credential data §6.5.1 (AAGUID ‖ length ‖ credential id ‖ COSE key), "packed" self
attestation §8.2 (``alg`` and a signature over authData ‖ SHA-256(clientDataJSON) with the credential key).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
import uuid
from typing import Any, Mapping

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fido2 import cbor

FLAG_UP = 0x01
FLAG_UV = 0x04
FLAG_BE = 0x08
FLAG_BS = 0x10
FLAG_AT = 0x40
FLAG_ED = 0x80

# An arbitrary AAGUID for the software authenticator (not a real model's).
DEFAULT_AAGUID = "0a5f6d6e-8e1c-4b8b-9f0a-5c0f1e2d3c4b"
DEFAULT_ORIGIN = "http://localhost:5000"

_UNSET: Any = object()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class NotAllowed(Exception):
    """What a browser reports when the authenticator cannot (or will not) answer the options."""


class SoftAuthenticator:
    """One credential on one software authenticator.

    ``counting=False`` imitates authenticators without a signature counter (always 0). ``counter`` is the
    current value; each assertion increments it first when counting.
    """

    def __init__(self, *, aaguid: str = DEFAULT_AAGUID, origin: str = DEFAULT_ORIGIN, user_verification: bool = True,
                 resident_key: bool = True, attachment: str | None = "cross-platform",
                 transports: tuple[str, ...] = ("usb", "nfc"), counter: int = 0, counting: bool = True,
                 backup_eligible: bool = False, credential_id: bytes | None = None) -> None:
        self.private_key = ec.generate_private_key(ec.SECP256R1())
        self.aaguid = uuid.UUID(aaguid).bytes
        self.origin = origin
        self.user_verification = user_verification
        self.resident_key = resident_key
        self.attachment = attachment
        self.transports = list(transports)
        self.counter = counter
        self.counting = counting
        self.backup_eligible = backup_eligible
        self.credential_id = credential_id if credential_id is not None else os.urandom(32)
        self.rp_id: str | None = None
        self.user_handle: bytes | None = None

    # --- keys and binary structures ----------------------------------------------------------------------
    def cose_key(self, alg: int = -7) -> dict[int, Any]:
        numbers = self.private_key.public_key().public_numbers()
        return {1: 2, 3: alg, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")}

    def spki(self) -> bytes:
        return self.private_key.public_key().public_bytes(serialization.Encoding.DER,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(self, data: bytes) -> bytes:
        return self.private_key.sign(data, ec.ECDSA(hashes.SHA256()))

    def flags(self, *, up: bool, uv: bool, attested: bool) -> int:
        value = (FLAG_UP if up else 0) | (FLAG_UV if uv else 0) | (FLAG_AT if attested else 0)
        return value | (FLAG_BE if self.backup_eligible else 0)

    @staticmethod
    def authenticator_data(rp_id: str, flags: int, counter: int, attested: bytes = b"") -> bytes:
        return hashlib.sha256(rp_id.encode()).digest() + struct.pack(">BI", flags, counter) + attested

    def attested_credential_data(self, *, aaguid: bytes | None = None, alg: int = -7) -> bytes:
        return ((aaguid if aaguid is not None else self.aaguid) + struct.pack(">H", len(self.credential_id))
                + self.credential_id + cbor.encode(self.cose_key(alg)))

    @staticmethod
    def client_data(kind: str, challenge: str, origin: str, *, cross_origin: bool = False) -> bytes:
        return json.dumps({"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": cross_origin},
                          separators=(",", ":")).encode()

    # --- ceremonies ---------------------------------------------------------------------------------------
    def create(self, options: Mapping[str, Any], *, origin: str | None = None, rp_id: str | None = None,
               challenge: str | None = None, kind: str = "webauthn.create", fmt: str = "none",
               att_stmt: Mapping[str, Any] | None = None, uv: bool | None = None, up: bool = True,
               aaguid: bytes | None = None, alg: int = -7, counter: int | None = None,
               cross_origin: bool = False, check_exclude: bool = True) -> dict[str, Any]:
        """Answer PublicKeyCredentialCreationOptions (JSON form); return RegistrationResponseJSON.

        ``fmt`` "none" or "packed" (self attestation) builds the statement; any other ``fmt`` needs ``att_stmt``.
        """
        excluded = {item["id"] for item in options.get("excludeCredentials") or []}
        if check_exclude and b64url(self.credential_id) in excluded:
            raise NotAllowed("InvalidStateError: credential already registered with this RP")
        self.rp_id = options["rp"]["id"]
        self.user_handle = b64url_decode(options["user"]["id"])
        uv = self.user_verification if uv is None else uv
        counter = self.counter if counter is None else counter
        auth_data = self.authenticator_data(rp_id or self.rp_id, self.flags(up=up, uv=uv, attested=True), counter,
                                            self.attested_credential_data(aaguid=aaguid, alg=alg))
        client_data = self.client_data(kind, challenge or options["challenge"], origin or self.origin,
                                       cross_origin=cross_origin)
        if att_stmt is None:
            if fmt == "none":
                att_stmt = {}
            elif fmt == "packed":
                att_stmt = {"alg": alg, "sig": self.sign(auth_data + hashlib.sha256(client_data).digest())}
            else:
                raise ValueError(f"give att_stmt for format {fmt!r}")
        attestation_object = cbor.encode({"fmt": fmt, "attStmt": dict(att_stmt), "authData": auth_data})
        result: dict[str, Any] = {
            "id": b64url(self.credential_id),
            "rawId": b64url(self.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation_object),
                "authenticatorData": b64url(auth_data),
                "transports": list(self.transports),
                "publicKey": b64url(self.spki()),
                "publicKeyAlgorithm": alg,
            },
            "clientExtensionResults": {},
        }
        if self.attachment is not None:
            result["authenticatorAttachment"] = self.attachment
        return result

    def get(self, options: Mapping[str, Any], *, origin: str | None = None, rp_id: str | None = None,
            challenge: str | None = None, kind: str = "webauthn.get", uv: bool | None = None, up: bool = True,
            counter: int | None = None, user_handle: bytes | None = _UNSET, bad_signature: bool = False,
            cross_origin: bool = False, check_allow: bool = True) -> dict[str, Any]:
        """Answer PublicKeyCredentialRequestOptions (JSON form); return AuthenticationResponseJSON.

        The counter is incremented first (when counting) unless ``counter`` is given. The user handle is
        sent by discoverable credentials, as real authenticators do.
        """
        allowed = {item["id"] for item in options.get("allowCredentials") or []}
        if check_allow:
            if allowed and b64url(self.credential_id) not in allowed:
                raise NotAllowed("the authenticator holds none of the allowed credentials")
            if not allowed and not self.resident_key:
                raise NotAllowed("no discoverable credential on this authenticator")
        if counter is None:
            if self.counting:
                self.counter += 1
            counter = self.counter if self.counting else 0
        uv = self.user_verification if uv is None else uv
        auth_data = self.authenticator_data(rp_id or options.get("rpId") or self.rp_id or "localhost",
                                            self.flags(up=up, uv=uv, attested=False), counter)
        client_data = self.client_data(kind, challenge or options["challenge"], origin or self.origin,
                                       cross_origin=cross_origin)
        signature = self.sign(auth_data + hashlib.sha256(client_data).digest())
        if bad_signature:
            signature = self.sign(auth_data + hashlib.sha256(client_data + b" ").digest())
        if user_handle is _UNSET:
            user_handle = self.user_handle if self.resident_key else None
        result: dict[str, Any] = {
            "id": b64url(self.credential_id),
            "rawId": b64url(self.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
                "userHandle": b64url(user_handle) if user_handle is not None else None,
            },
            "clientExtensionResults": {},
        }
        if self.attachment is not None:
            result["authenticatorAttachment"] = self.attachment
        return result
