"""What the enrollment desk (:mod:`hospiconnect.web.enrollment_desk`) and its JSON API
(:mod:`hospiconnect.web.enrollment_api`) share: who may use them, how their input is read and cleaned, and
the address printed on an activation sheet. One place, so that the two doors cannot drift apart. The security
pages (:mod:`hospiconnect.web.security_pages`) use the same access rule with their own roles.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from typing import Sequence
from zoneinfo import ZoneInfo

from hospiconnect.authenticators.emergency import EMERGENCY_AMR
from hospiconnect.directory.models import Identity

OFFICER_ROLE = "enrollment_officer"
PARIS = ZoneInfo("Europe/Paris")
MAX_SEARCH_CHARS = 100
MAX_FIELD_CHARS = 200
SEARCH_LIMIT = 50
# Public ids are UUIDs; the desk also finds a person by user name, external id or RPPS.
PUBLIC_ID_RE = re.compile(r"[A-Za-z0-9._@-]{1,100}")
# How far ahead of the server clock a declared check time may be (clocks of desk workstations drift).
CHECKED_AT_TOLERANCE = dt.timedelta(minutes=5)
MAX_DATETIME_CHARS = 40


def officer_actor(identity: Identity) -> str:
    """Return the journal actor of a registration officer (``officer:<user name>``)."""
    return f"officer:{identity.user_name}"


def access_denial(*, has_session: bool, roles: list[str], mfa_time: dt.datetime | None, recovery_only: bool,
                  now: dt.datetime, recent_minutes: int, role: str = OFFICER_ROLE,
                  amr: Sequence[str] = ()) -> str | None:
    """Return why a page for the directory role ``role`` is refused, or None.

    Reasons: ``no_session``, ``emergency_session`` (``amr`` has ``emergency``: a session opened with an emergency
    credential is one factor handed over by phone, it never administers anything, whatever its ``mfa_time`` kept
    from an earlier sign-in), ``not_officer`` (``role`` missing; the enrollment desk's role by default),
    ``mfa_not_recent`` (no second factor within ``recent_minutes``, or a recovery-code session).
    """
    if not has_session:
        return "no_session"
    if EMERGENCY_AMR in amr:
        return "emergency_session"
    if role not in roles:
        return "not_officer"
    # A recovery-code session proves no second factor: it may not enroll anyone.
    if recovery_only or mfa_time is None or now - mfa_time > dt.timedelta(minutes=recent_minutes):
        return "mfa_not_recent"
    return None


def clean(value: str) -> str:
    """Drop control characters from free text: PostgreSQL refuses a NUL byte outright, and none belongs in a
    name, a place or a code."""
    return "".join(ch for ch in value if unicodedata.category(ch) != "Cc")


def search_query(raw: str) -> str:
    """Return the directory search typed at the desk, cleaned and cut to ``MAX_SEARCH_CHARS``."""
    return clean(raw[:MAX_SEARCH_CHARS * 2]).strip()[:MAX_SEARCH_CHARS]


def parse_date(raw: str) -> dt.date | None:
    """Read an ISO date (``AAAA-MM-JJ``); None when it is empty or unreadable."""
    try:
        return dt.date.fromisoformat(raw.strip()[:10]) if raw.strip() else None
    except ValueError:
        return None


def parse_local_datetime(raw: str) -> dt.datetime | None:
    """Read an ISO date and time; one without an offset (a browser's ``datetime-local``) is in the
    establishment's time zone. Return it in UTC, or None when it is unreadable."""
    text = raw.strip()
    if len(text) > MAX_DATETIME_CHARS:
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=PARIS)
    return value.astimezone(dt.timezone.utc)


def activation_url(issuer: str, code: str) -> str:
    """The address printed on the sheet (and in its QR code): the activation page with the code filled in."""
    return f"{issuer.rstrip('/')}/activation?code={code}"
