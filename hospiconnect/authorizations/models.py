"""Exceptions to the access policy (dérogations). A row is never deleted: revoked and expired exceptions stay."""

from __future__ import annotations

import datetime as dt
import json
import uuid

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from hospiconnect.db import Base, UTCDateTime, utcnow
from hospiconnect.policies.relaxations import ExceptionGrant, Relaxation

TARGET_IDENTITY = "identity"
TARGET_POPULATION = "population"


class PolicyException(Base):
    """One exception: for one class, to one identity **or** one population (optionally narrowed to units)."""

    __tablename__ = "policy_exceptions"
    __table_args__ = (
        CheckConstraint("(identity_id IS NULL) <> (population IS NULL)", name="one_target"),
        # The lookup at sign-in: exceptions of a class still in force (ends_at ahead).
        Index("ix_policy_exceptions_class_ends", "app_class", "ends_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(36), unique=True, default=lambda: str(uuid.uuid4()))
    identity_id: Mapped[int | None] = mapped_column(ForeignKey("identities.id"), index=True)
    # A contract type of the directory (the policy's populations), and optionally unit codes (JSON list).
    population: Mapped[str | None] = mapped_column(String(20), index=True)
    units_json: Mapped[str] = mapped_column(Text, default="[]")
    app_class: Mapped[str] = mapped_column(String(40))
    # hospiconnect.policies.relaxations.Relaxation.as_json()
    relaxation_json: Mapped[str] = mapped_column(Text)
    justification: Mapped[str] = mapped_column(Text)
    starts_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), index=True)
    granted_by: Mapped[str] = mapped_column(String(200))
    granted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # The policy file (sha256) the grant was checked against.
    policy_digest: Mapped[str] = mapped_column(String(64), default="")
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    revoked_by: Mapped[str | None] = mapped_column(String(200))
    revoke_reason: Mapped[str | None] = mapped_column(String(500))
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    use_count: Mapped[int] = mapped_column(Integer, default=0)
    # Set once by the periodic jobs when the end date has passed (journaled once).
    expiry_reported_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    @property
    def target_kind(self) -> str:
        return TARGET_IDENTITY if self.identity_id is not None else TARGET_POPULATION

    @property
    def units(self) -> list[str]:
        return list(json.loads(self.units_json or "[]"))

    @property
    def relaxation(self) -> Relaxation:
        return Relaxation.from_json(json.loads(self.relaxation_json))

    def in_force(self, as_of: dt.datetime) -> bool:
        return self.revoked_at is None and self.starts_at <= as_of < self.ends_at

    def state(self, as_of: dt.datetime) -> str:
        """``revoked``, ``expired``, ``scheduled`` (not started yet) or ``active``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.ends_at <= as_of:
            return "expired"
        return "scheduled" if self.starts_at > as_of else "active"

    def grant(self) -> ExceptionGrant:
        """Return the plain value the evaluator receives."""
        return ExceptionGrant(id=self.public_id, app_class=self.app_class, relaxation=self.relaxation,
                              starts_at=self.starts_at, ends_at=self.ends_at, justification=self.justification,
                              target=self.target_kind)
