from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import Date, ForeignKey, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, lazyload, mapped_column, relationship

from hospiconnect.db import Base, UTCDateTime, utcnow

#: Query options loading an identity without its establishments, units and roles (three statements saved),
#: which then load on first access: for the sign-in path, where most requests never read them.
ONLY_IDENTITY = (lazyload("*"),)


def new_public_id() -> str:
    return str(uuid.uuid4())


class Establishment(Base):
    """An establishment (or a site) identified by its FINESS number."""

    __tablename__ = "establishments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    finess: Mapped[str] = mapped_column(String(9), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    legal_finess: Mapped[str | None] = mapped_column(String(9))


class OrgUnit(Base):
    """An organisational unit: a pôle or a service, optionally inside a parent unit."""

    __tablename__ = "org_units"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(50), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    kind: Mapped[str] = mapped_column(String(20), default="service")  # pole | service
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("org_units.id"))


class Identity(Base):
    __tablename__ = "identities"
    __table_args__ = (
        Index("ix_identities_dedup", "birth_family_name_norm", "first_given_name_norm", "birth_date"),
        # SCIM sorting and filtering at 100,000 identities (migration 0005).
        Index("ix_identities_family_sort", text("coalesce(usage_name_norm, birth_family_name_norm)"), "id"),
        Index("ix_identities_created_id", "created_at", "id"),
        Index("ix_identities_birth_date", "birth_date"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(36), unique=True, default=new_public_id)
    user_name: Mapped[str] = mapped_column(String(100), unique=True)
    external_id: Mapped[str | None] = mapped_column(String(100), unique=True)

    birth_family_name: Mapped[str] = mapped_column(String(100))
    usage_name: Mapped[str | None] = mapped_column(String(100))
    given_names: Mapped[str] = mapped_column(String(200))
    birth_date: Mapped[dt.date] = mapped_column(Date)
    birth_place: Mapped[str | None] = mapped_column(String(5))
    birth_country: Mapped[str] = mapped_column(String(5), default="99100")
    gender: Mapped[str] = mapped_column(String(12))
    email: Mapped[str | None] = mapped_column(String(254), index=True)
    rpps: Mapped[str | None] = mapped_column(String(11), unique=True)
    population: Mapped[str] = mapped_column(String(20), index=True)  # rpps | local
    contract_type: Mapped[str] = mapped_column(String(20), index=True)
    start_date: Mapped[dt.date | None] = mapped_column(Date)
    end_date: Mapped[dt.date | None] = mapped_column(Date, index=True)
    status: Mapped[str] = mapped_column(String(12), index=True, default="pending")
    status_reason: Mapped[str | None] = mapped_column(String(200))
    status_changed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    birth_family_name_norm: Mapped[str] = mapped_column(String(100), index=True)
    usage_name_norm: Mapped[str | None] = mapped_column(String(100), index=True)
    first_given_name_norm: Mapped[str] = mapped_column(String(100), index=True)

    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)

    establishments: Mapped[list["IdentityEstablishment"]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", back_populates="identity"
    )
    units: Mapped[list["IdentityUnit"]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", back_populates="identity"
    )
    roles: Mapped[list["IdentityRole"]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", back_populates="identity"
    )

    @property
    def display_name(self) -> str:
        family = self.usage_name or self.birth_family_name
        return f"{self.given_names.split()[0] if self.given_names else ''} {family}".strip()

    @property
    def finess_numbers(self) -> list[str]:
        return sorted(link.finess for link in self.establishments)

    @property
    def unit_codes(self) -> list[str]:
        return sorted(link.unit_code for link in self.units)

    @property
    def role_names(self) -> list[str]:
        return sorted(link.role for link in self.roles)

    @property
    def is_active(self) -> bool:
        return self.status == "active"


class IdentityEstablishment(Base):
    __tablename__ = "identity_establishments"
    __table_args__ = (UniqueConstraint("identity_id", "finess"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    identity_id: Mapped[int] = mapped_column(ForeignKey("identities.id", ondelete="CASCADE"), index=True)
    finess: Mapped[str] = mapped_column(String(9), index=True)
    identity: Mapped[Identity] = relationship(back_populates="establishments")


class IdentityUnit(Base):
    __tablename__ = "identity_units"
    __table_args__ = (UniqueConstraint("identity_id", "unit_code"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    identity_id: Mapped[int] = mapped_column(ForeignKey("identities.id", ondelete="CASCADE"), index=True)
    unit_code: Mapped[str] = mapped_column(String(50), index=True)
    identity: Mapped[Identity] = relationship(back_populates="units")


class IdentityRole(Base):
    __tablename__ = "identity_roles"
    __table_args__ = (UniqueConstraint("identity_id", "role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    identity_id: Mapped[int] = mapped_column(ForeignKey("identities.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(50), index=True)
    identity: Mapped[Identity] = relationship(back_populates="roles")

