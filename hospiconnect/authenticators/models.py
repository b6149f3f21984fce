"""MIE (moyens d'identification électroniques) and their secrets. An MIE is never deleted: its
transitions are kept forever in ``mie_transitions``."""

from __future__ import annotations

import datetime as dt
import json
import uuid

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from hospiconnect.db import Base, UTCDateTime, utcnow

# cps and e-cps: the national MIE issued by the ANS (card, app), used through Pro Santé Connect; they hold no
# secret here (hospiconnect.enrollment.national records them once the person is paired).
MIE_TYPES = ("password", "totp", "webauthn", "cps", "e-cps")
NATIONAL_MIE_TYPES = ("cps", "e-cps")
MIE_STATUSES = ("pending", "active", "suspended", "revoked")


class Mie(Base):
    __tablename__ = "mies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(36), unique=True, default=lambda: str(uuid.uuid4()))
    identity_id: Mapped[int] = mapped_column(ForeignKey("identities.id"), index=True)
    type: Mapped[str] = mapped_column(String(20), index=True)
    label: Mapped[str] = mapped_column(String(100), default="")
    status: Mapped[str] = mapped_column(String(12), index=True, default="pending")
    # RFC 8176 values this MIE produces when used, JSON list (e.g. ["hwk", "user"]).
    amr_json: Mapped[str] = mapped_column(String(100), default="[]")
    # Filled by enrollment: how and when the person's identity was checked before activation.
    proofing_method: Mapped[str | None] = mapped_column(String(30))
    proofing_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    activated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    transitions: Mapped[list["MieTransition"]] = relationship(
        back_populates="mie", order_by="MieTransition.id", lazy="selectin"
    )

    @property
    def amr(self) -> list[str]:
        return list(json.loads(self.amr_json))

    @amr.setter
    def amr(self, values: list[str]) -> None:
        self.amr_json = json.dumps(sorted(set(values)))

    @property
    def is_second_factor(self) -> bool:
        return self.type in ("totp", "webauthn")


class MieTransition(Base):
    __tablename__ = "mie_transitions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mie_id: Mapped[int] = mapped_column(ForeignKey("mies.id"), index=True)
    from_status: Mapped[str | None] = mapped_column(String(12))
    to_status: Mapped[str] = mapped_column(String(12))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    actor: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(String(300), default="")

    mie: Mapped[Mie] = relationship(back_populates="transitions")


class PasswordCredential(Base):
    __tablename__ = "password_credentials"

    mie_id: Mapped[int] = mapped_column(ForeignKey("mies.id"), primary_key=True)
    hash: Mapped[str] = mapped_column(String(200))
    changed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class TotpCredential(Base):
    __tablename__ = "totp_credentials"

    mie_id: Mapped[int] = mapped_column(ForeignKey("mies.id"), primary_key=True)
    # AES-256-GCM ciphertext of the seed, prefixed with the key id (see hospiconnect.crypto).
    secret_enc: Mapped[str] = mapped_column(String(300))
    # The last accepted time step: a code is accepted only for a later step (one conditional UPDATE).
    last_step: Mapped[int | None] = mapped_column(BigInteger)


class WebAuthnCredential(Base):
    __tablename__ = "webauthn_credentials"

    mie_id: Mapped[int] = mapped_column(ForeignKey("mies.id"), primary_key=True)
    credential_id: Mapped[str] = mapped_column(String(400), unique=True)  # base64url
    public_key: Mapped[bytes] = mapped_column(LargeBinary)  # COSE key
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)
    aaguid: Mapped[str] = mapped_column(String(36), default="")
    attestation_format: Mapped[str] = mapped_column(String(40), default="none")
    transports: Mapped[str] = mapped_column(String(100), default="")
    user_verified_at_registration: Mapped[bool] = mapped_column(Boolean, default=False)
    attachment: Mapped[str | None] = mapped_column(String(20))  # platform | cross-platform
    backup_eligible: Mapped[bool] = mapped_column(Boolean, default=False)


class WebAuthnChallenge(Base):
    """Ceremony state kept server-side; consumed once by a conditional DELETE."""

    __tablename__ = "webauthn_challenges"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    identity_id: Mapped[int | None] = mapped_column(ForeignKey("identities.id"), index=True)
    purpose: Mapped[str] = mapped_column(String(20))  # register | authenticate
    state: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)


class RecoveryCode(Base):
    __tablename__ = "recovery_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    identity_id: Mapped[int] = mapped_column(ForeignKey("identities.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    generation: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    replaced_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class Notification(Base):
    """Outbox of messages to people (MIE changes…), delivered by a pluggable sender."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    identity_id: Mapped[int | None] = mapped_column(ForeignKey("identities.id"), index=True)
    recipient: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(300))


#: Wrong codes typed for a person before their live emergency credentials stop working.
EMERGENCY_MAX_ATTEMPTS = 5


class EmergencyCredential(Base):
    """An emergency credential (bris de glace): a one-time code an on-duty officer hands to a person whose MIE is
    unavailable (hospiconnect.authenticators.emergency). Never deleted: the RSSI reviews each one."""

    __tablename__ = "emergency_credentials"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(36), unique=True, default=lambda: str(uuid.uuid4()))
    identity_id: Mapped[int] = mapped_column(ForeignKey("identities.id"), index=True)
    issued_by_identity_id: Mapped[int] = mapped_column(ForeignKey("identities.id"), index=True)
    issued_by: Mapped[str] = mapped_column(String(200))  # the actor that recorded the issue (page, CLI)
    issued_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    # First group of the code (not secret): tells credentials apart in lists and on the phone.
    selector: Mapped[str] = mapped_column(String(8))
    # Keyed hash of the whole code, bound to the person (InstanceKeys.keyed_hash).
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Where it may be used from: the names/CIDRs given (JSON list) and the networks they meant at issue time.
    networks_json: Mapped[str] = mapped_column(Text, default="[]")
    cidrs_json: Mapped[str] = mapped_column(Text, default="[]")
    reason: Mapped[str] = mapped_column(Text)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    used_from_ip: Mapped[str | None] = mapped_column(String(45))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    revoked_by: Mapped[str | None] = mapped_column(String(200))
    revoke_reason: Mapped[str | None] = mapped_column(String(500))
    reviewed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), index=True)
    reviewed_by_identity_id: Mapped[int | None] = mapped_column(ForeignKey("identities.id"))
    review_comment: Mapped[str | None] = mapped_column(Text)

    @property
    def networks(self) -> list[str]:
        return list(json.loads(self.networks_json or "[]"))

    @property
    def cidrs(self) -> list[str]:
        return list(json.loads(self.cidrs_json or "[]"))

    def state(self, as_of: dt.datetime) -> str:
        """``used``, ``revoked``, ``dead`` (too many wrong codes), ``expired`` or ``live``."""
        if self.used_at is not None:
            return "used"
        if self.revoked_at is not None:
            return "revoked"
        if self.failed_attempts >= EMERGENCY_MAX_ATTEMPTS:
            return "dead"
        return "expired" if self.expires_at <= as_of else "live"

