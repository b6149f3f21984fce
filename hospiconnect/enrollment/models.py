"""Enrollment cases, their activation codes and their history.

No scan, photo or full number of an identity document is ever stored: only its type, issuing country,
expiry date and the last 4 characters of its number.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid

from sqlalchemy import Date, ForeignKey, Index, Integer, String, Text
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
