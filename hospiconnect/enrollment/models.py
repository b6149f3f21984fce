"""Enrollment cases, their activation codes and their history.

No scan, photo or full number of an identity document is ever stored: only its type, issuing country,
expiry date and the last 4 characters of its number.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid

from sqlalchemy import Date, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from hospiconnect.db import Base, UTCDateTime, utcnow


class EnrollmentCase(Base):
    __tablename__ = "enrollment_cases"
    __table_args__ = (Index("ix_enrollment_cases_state_expires", "state", "expires_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(36), unique=True, default=lambda: str(uuid.uuid4()))
    identity_id: Mapped[int] = mapped_column(ForeignKey("identities.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # first_mie | additional_mie | replacement
    state: Mapped[str] = mapped_column(String(20), default="opened")
    # The officer's identity when an officer opened it, else None (HR import, invitation job…).
    opened_by_identity_id: Mapped[int | None] = mapped_column(ForeignKey("identities.id"))
    opened_by: Mapped[str] = mapped_column(String(200))  # actor string, as in the journal
    opened_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())

    # Identity check
    identity_check_method: Mapped[str | None] = mapped_column(String(20))  # face_to_face | fcplus
    identity_checked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    identity_check_officer_id: Mapped[int | None] = mapped_column(ForeignKey("identities.id"))
    identity_check_place: Mapped[str | None] = mapped_column(String(200))
    document_type: Mapped[str | None] = mapped_column(String(20))
    document_issuing_country: Mapped[str | None] = mapped_column(String(3))
    document_expiry_date: Mapped[dt.date | None] = mapped_column(Date)
    document_last4: Mapped[str | None] = mapped_column(String(4))

    # Replacement after loss or theft: the MIE revoked when the case was opened.
    replaced_mie_id: Mapped[int | None] = mapped_column(ForeignKey("mies.id"))
    # The MIE activated by this case.
    activated_mie_id: Mapped[int | None] = mapped_column(ForeignKey("mies.id"))
    rejection_reasons_json: Mapped[str | None] = mapped_column(Text)
    # Remote check: the FranceConnect+ identity that proved it, keyed by (issuer, sub), never by e-mail.
    fcplus_issuer: Mapped[str | None] = mapped_column(String(300))
    fcplus_sub: Mapped[str | None] = mapped_column(String(255))

    identity_verified_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    mie_issued_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    activated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())  # expired, cancelled or rejected
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    @property
    def rejection_reasons(self) -> list[object]:
        return list(json.loads(self.rejection_reasons_json)) if self.rejection_reasons_json else []


class EnrollmentTransition(Base):
    """Every state change of a case, kept forever."""

    __tablename__ = "enrollment_transitions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("enrollment_cases.id"), index=True)
    event: Mapped[str] = mapped_column(String(30))
    from_state: Mapped[str | None] = mapped_column(String(20))
    to_state: Mapped[str] = mapped_column(String(20))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    actor: Mapped[str] = mapped_column(String(200))


class ActivationCode(Base):
    """An activation code, stored as a keyed hash. ``selector`` (the code's first group, not secret) finds
    the code a mistyped entry was meant for, so wrong attempts are counted per code."""

    __tablename__ = "activation_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("enrollment_cases.id"), index=True)
    selector: Mapped[str] = mapped_column(String(8), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    invalidated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())  # replaced by a newer code


class Invitation(Base):
    """An e-mail inviting a person to verify their identity remotely (FranceConnect+) for a case.

    The link's token is stored only as a keyed hash. An invitation stops working when it expires, when a
    newer one replaces it (``revoked_at``), when its case closes, or once the remote check was completed
    with it (``used_at``)."""

    __tablename__ = "enrollment_invitations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("enrollment_cases.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str] = mapped_column(String(320))
    sent_by: Mapped[str] = mapped_column(String(200))  # actor string, as in the journal
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    opened_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class FcPlusTransaction(Base):
    """A FranceConnect+ authorization request in flight (between the redirection and the callback).

    Found by the keyed hash of its ``state``; deleted by the one statement that consumes it, so that a
    callback is processed at most once. ``browser_hash`` binds it to the browser that started it."""

    __tablename__ = "fcplus_transactions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    state_hash: Mapped[str] = mapped_column(String(64), unique=True)
    browser_hash: Mapped[str] = mapped_column(String(64))
    nonce: Mapped[str] = mapped_column(String(128))
    issuer: Mapped[str] = mapped_column(String(300))
    acr_values: Mapped[str] = mapped_column(String(20))
    case_id: Mapped[int] = mapped_column(ForeignKey("enrollment_cases.id"), index=True)
    invitation_id: Mapped[int | None] = mapped_column(ForeignKey("enrollment_invitations.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)


# A live link has ``unlinked_at IS NULL``; PostgreSQL and SQLite both enforce these partial unique indexes,
# and hospiconnect.enrollment.national checks them first to give a French refusal.
_LIVE_LINK = text("unlinked_at IS NULL")


class NationalLink(Base):
    """The pairing (« appairage ») of a local identity with its national identity at Pro Santé Connect.

    The national identity is keyed by (``issuer``, ``sub``), never by e-mail. ``method`` says what proved it is
    the same person: ``rpps`` (SubjectNameID equals the directory's RPPS) or ``names`` (the directory had no
    RPPS, the names matched and the RPPS was filled in). A link is never deleted: unlinking fills
    ``unlinked_at``/``unlinked_by``/``unlink_reason``; at most one live link per identity and per (issuer, sub).
    """

    __tablename__ = "national_links"
    __table_args__ = (
        Index("uq_national_links_live_identity", "identity_id", unique=True,
              postgresql_where=_LIVE_LINK, sqlite_where=_LIVE_LINK),
        Index("uq_national_links_live_subject", "issuer", "sub", unique=True,
              postgresql_where=_LIVE_LINK, sqlite_where=_LIVE_LINK),
        Index("ix_national_links_issuer_sub", "issuer", "sub"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(36), unique=True, default=lambda: str(uuid.uuid4()))
    identity_id: Mapped[int] = mapped_column(ForeignKey("identities.id"), index=True)
    issuer: Mapped[str] = mapped_column(String(300))
    sub: Mapped[str] = mapped_column(String(255))
    rpps: Mapped[str | None] = mapped_column(String(11))
    method: Mapped[str] = mapped_column(String(10))  # rpps | names
    linked_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    linked_by: Mapped[str] = mapped_column(String(200))  # actor string, as in the journal
    unlinked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    unlinked_by: Mapped[str | None] = mapped_column(String(200))
    unlink_reason: Mapped[str | None] = mapped_column(String(300))


class PscTransaction(Base):
    """A Pro Santé Connect authorization request in flight (between the redirection and ``/psc/retour``).

    As :class:`FcPlusTransaction` (found by the keyed hash of its ``state``, bound to the browser by
    ``browser_hash``, consumed by one conditional DELETE), with its ``purpose``: ``pairing`` (``identity_id``
    is the signed-in person who asked) or ``login`` (``interaction_id`` is the sign-in interaction)."""

    __tablename__ = "psc_transactions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    state_hash: Mapped[str] = mapped_column(String(64), unique=True)
    browser_hash: Mapped[str] = mapped_column(String(64))
    purpose: Mapped[str] = mapped_column(String(10))  # pairing | login
    nonce: Mapped[str] = mapped_column(String(128))
    issuer: Mapped[str] = mapped_column(String(300))
    acr_values: Mapped[str] = mapped_column(String(20))
    identity_id: Mapped[int | None] = mapped_column(ForeignKey("identities.id"), index=True)
    interaction_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)


class UpstreamEncryptionKey(Base):
    """A private key with which upstream providers (FranceConnect+) encrypt ID tokens and userinfo for us.

    The private JWK is encrypted at rest under the key-encryption key (AES-256-GCM, like signing keys); the
    public part is published at ``/franceconnect/jwks.json``."""

    __tablename__ = "upstream_encryption_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kid: Mapped[str] = mapped_column(String(64), unique=True)
    alg: Mapped[str] = mapped_column(String(20))  # RSA-OAEP | ECDH-ES
    private_jwk_enc: Mapped[str] = mapped_column(Text)
    public_jwk_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    retired_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
