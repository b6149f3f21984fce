"""Tables behind the database-backed throttling (hospiconnect.ratelimit)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from hospiconnect.db import Base, UTCDateTime


class ThrottleCounter(Base):
    """Consecutive failures for one key (``account:<id>:<kind>`` or ``ip:<addr>:<kind>``)."""

    __tablename__ = "throttle_counters"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    locked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), index=True)
