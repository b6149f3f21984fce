"""The trajectory's stored values: daily counts per indicator and breakdown, the latest per-person statuses, and
the targets the RSSI adds (those of the policy file are read from the policy, never stored)."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import Boolean, CheckConstraint, Date, ForeignKey, Index, Integer, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from hospiconnect.db import Base, UTCDateTime, utcnow


class TrajectorySnapshot(Base):
    """One count of one day: ``indicator`` (``active``, ``compliant``, ``signins:health-data``…) for one value of a
    breakdown (``dimension`` ``all`` with value ``""``, ``unit`` with a unit code…). A day is replaced as a whole
    (hospiconnect.trajectory.snapshots.take_snapshot)."""

    __tablename__ = "trajectory_snapshots"
    __table_args__ = (
        UniqueConstraint("day", "indicator", "dimension", "value", name="uq_trajectory_snapshots_day_key"),
        # Series of one indicator for one breakdown, in day order (the dashboard's charts).
        Index("ix_trajectory_snapshots_series", "indicator", "dimension", "day"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date)
    indicator: Mapped[str] = mapped_column(String(60))
    dimension: Mapped[str] = mapped_column(String(20))
    value: Mapped[str] = mapped_column(String(100), default="")
    count: Mapped[int] = mapped_column(Integer)
    taken_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class TrajectoryPersonStatus(Base):
    """The status of one active identity on the latest snapshot day (the actionable lists and their CSV export).

    ``reason``: the first compliance reason code (``no_mie``, ``mie_not_proofed``…), or ``exception`` /
    ``enrollment`` for the exempt and pending; empty for the compliant. ``psc_paired``: a live link to the
    national identity (Pro Santé Connect) that day; its server default lets a server of the previous release,
    which does not name the column, still write the table during a rolling upgrade. ``units``, ``poles``, ``roles``,
    ``establishments`` and ``mie_types``: space-separated codes (filtering with LIKE stays an index-free scan
    of one small table)."""

    __tablename__ = "trajectory_person_status"
    __table_args__ = (Index("ix_trajectory_person_status_status", "status", "identity_id"),)

    identity_id: Mapped[int] = mapped_column(ForeignKey("identities.id", ondelete="CASCADE"), primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(String(60), default="")
    rpps: Mapped[bool] = mapped_column(Boolean, default=False)
    psc_paired: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    contract_type: Mapped[str] = mapped_column(String(20), default="")
    units: Mapped[str] = mapped_column(String(500), default="")
    poles: Mapped[str] = mapped_column(String(500), default="")
    roles: Mapped[str] = mapped_column(String(500), default="")
    establishments: Mapped[str] = mapped_column(String(500), default="")
    mie_types: Mapped[str] = mapped_column(String(200), default="")


class TrajectoryTarget(Base):
    """A target added by the RSSI: ``percent`` % of the active identities of a breakdown (``dimension``/``value``)
    counted by ``indicator`` by ``due``. Never deleted: a removed target keeps who removed it and when."""

    __tablename__ = "trajectory_targets"
    __table_args__ = (CheckConstraint("percent >= 1 AND percent <= 100", name="percent_range"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(36), unique=True, default=lambda: str(uuid.uuid4()))
    label: Mapped[str] = mapped_column(String(200))
    dimension: Mapped[str] = mapped_column(String(20), default="all")
    value: Mapped[str] = mapped_column(String(100), default="")
    indicator: Mapped[str] = mapped_column(String(60), default="compliant")
    percent: Mapped[int] = mapped_column(Integer)
    due: Mapped[dt.date] = mapped_column(Date)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    removed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), index=True)
    removed_by: Mapped[str | None] = mapped_column(String(200))
