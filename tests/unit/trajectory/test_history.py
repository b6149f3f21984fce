"""How histories become day intervals (the pure helpers of hospiconnect.trajectory.facts) and how journal details
become sign-in counts (hospiconnect.trajectory.events.signin_counts)."""

from __future__ import annotations

import datetime as dt
import json

from hospiconnect.trajectory.events import signin_counts
from hospiconnect.trajectory.facts import (
    DayOf,
    case_interval,
    exception_interval,
    lifecycle_intervals,
    link_intervals,
    mie_intervals,
    pole_of_units,
)

D = dt.date.fromisoformat
PARIS = DayOf("Europe/Paris")


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc)


def test_days_are_the_policy_s_local_days():
    assert PARIS(utc("2026-03-09T23:30:00")) == D("2026-03-10")  # 00:30 in Paris
    assert PARIS(dt.datetime(2026, 3, 9, 22, 59)) == D("2026-03-09")  # naive: UTC
    assert PARIS.start(D("2026-03-10")) == utc("2026-03-09T23:00:00")
    assert PARIS.start(D("2026-07-10")) == utc("2026-07-09T22:00:00")  # summer time


def test_lifecycle_from_the_journal():
    # Created pending, activated on the 3rd, suspended on the 8th, reactivated on the 12th.
    intervals = lifecycle_intervals(
        created_day=D("2026-01-01"), created_status="pending",
        changes=[(D("2026-01-03"), "active", "pending"), (D("2026-01-08"), "suspended", "active"),
                 (D("2026-01-12"), "active", "suspended")],
        current_status="active", status_changed_day=D("2026-01-12"))
    assert intervals == ((D("2026-01-03"), D("2026-01-08")), (D("2026-01-12"), None))


def test_lifecycle_without_a_journal_uses_today_s_status():
    # Imported active with a start date years before: active from the start date.
    assert lifecycle_intervals(created_day=D("2026-01-10"), created_status=None, changes=[],
                               current_status="active", status_changed_day=D("2026-01-10"),
                               start_date=D("2019-09-01")) == ((D("2019-09-01"), None),)
    # Journal purged: suspended since the last status change, active before (created active).
    assert lifecycle_intervals(created_day=D("2026-01-01"), created_status="active", changes=[],
                               current_status="suspended", status_changed_day=D("2026-02-01")) == (
        (D("2026-01-01"), D("2026-02-01")),)
    # No creation event: the first change says what it was before.
    assert lifecycle_intervals(created_day=D("2026-01-01"), created_status=None,
                               changes=[(D("2026-01-05"), "suspended", "active")], current_status="suspended",
                               status_changed_day=D("2026-01-05")) == ((D("2026-01-01"), D("2026-01-05")),)


def test_lifecycle_changes_of_one_day_keep_the_last():
    assert lifecycle_intervals(created_day=D("2026-01-01"), created_status="active",
                               changes=[(D("2026-01-04"), "suspended", "active"),
                                        (D("2026-01-04"), "active", "suspended")],
                               current_status="active", status_changed_day=D("2026-01-04")) == (
        (D("2026-01-01"), None),)
    assert lifecycle_intervals(created_day=D("2026-01-04"), created_status="active",
                               changes=[(D("2026-01-04"), "departed", "active")], current_status="departed",
                               status_changed_day=D("2026-01-04")) == ()


def test_pairing_intervals_from_the_links():
    # Linked on the 2nd, unlinked on the 5th (not paired at the end of that day), linked again on the 9th.
    links = [(utc("2026-03-09T08:00:00"), None), (utc("2026-03-02T10:00:00"), utc("2026-03-05T16:00:00"))]
    assert link_intervals(PARIS, links) == ((D("2026-03-02"), D("2026-03-05")), (D("2026-03-09"), None))
    # Linked and unlinked the same day: no paired day at all.
    assert link_intervals(PARIS, [(utc("2026-03-02T08:00:00"), utc("2026-03-02T17:00:00"))]) == ()
    # Unlinked and linked again the same day (another national identity): paired without a gap.
    assert link_intervals(PARIS, [(utc("2026-03-02T08:00:00"), utc("2026-03-06T09:00:00")),
                                  (dt.datetime(2026, 3, 6, 9), None)]) == ((D("2026-03-02"), None),)
    # The policy's local days: 23:30 UTC is already the next day in Paris.
    assert link_intervals(PARIS, [(utc("2026-03-09T23:30:00"), None)]) == ((D("2026-03-10"), None),)
    assert link_intervals(PARIS, []) == ()


def test_mie_intervals():
    assert mie_intervals([(D("2026-01-05"), "active"), (D("2026-01-08"), "suspended"),
                          (D("2026-01-10"), "active"), (D("2026-01-20"), "revoked")],
                         status="revoked", activated_day=D("2026-01-05"), revoked_day=D("2026-01-20")) == (
        (D("2026-01-05"), D("2026-01-08")), (D("2026-01-10"), D("2026-01-20")))
    # No transitions (rows written directly): activation to revocation.
    assert mie_intervals([], status="active", activated_day=D("2025-09-01"), revoked_day=None) == (
        (D("2025-09-01"), None),)
    assert mie_intervals([], status="revoked", activated_day=D("2025-09-01"), revoked_day=D("2025-10-01")) == (
        (D("2025-09-01"), D("2025-10-01")),)
    assert mie_intervals([], status="suspended", activated_day=D("2025-09-01"), revoked_day=None) == ()
    assert mie_intervals([], status="pending", activated_day=None, revoked_day=None) == ()


def test_case_intervals():
    assert case_interval(opened_day=D("2026-01-04"), final_day=D("2026-01-06"), expires_day=D("2026-02-04"),
                         state="activated") == (D("2026-01-04"), D("2026-01-06"))
    # Still open: until its expiry date (an expired case is no longer "under way").
    assert case_interval(opened_day=D("2026-01-04"), final_day=None, expires_day=D("2026-02-04"),
                         state="identity_verified") == (D("2026-01-04"), D("2026-02-04"))
    assert case_interval(opened_day=D("2026-01-04"), final_day=D("2026-01-04"), expires_day=None,
                         state="cancelled") is None


def test_exception_intervals_cover_every_day_they_meet():
    # 09:00 on the 6th to 18:00 on the 7th (Paris): in force on the 6th and the 7th.
    assert exception_interval(PARIS, utc("2026-01-06T08:00:00"), utc("2026-01-07T17:00:00"), None) == (
        D("2026-01-06"), D("2026-01-08"))
    # Ending exactly at midnight: the day that starts then is not covered.
    assert exception_interval(PARIS, utc("2026-01-06T08:00:00"), utc("2026-01-07T23:00:00"), None) == (
        D("2026-01-06"), D("2026-01-08"))
    # Revoked early; revoked before it started: never.
    assert exception_interval(PARIS, utc("2026-01-06T08:00:00"), utc("2026-03-01T00:00:00"),
                              utc("2026-01-06T12:00:00")) == (D("2026-01-06"), D("2026-01-07"))
    assert exception_interval(PARIS, utc("2026-01-06T08:00:00"), utc("2026-03-01T00:00:00"),
                              utc("2026-01-05T12:00:00")) is None


def test_poles_of_units():
    rows = [(1, "POLE-MED", "pole", None), (2, "CARDIO", "service", 1), (3, "USIC", "service", 2),
            (4, "ORPHAN", "service", None), (5, "LOOP-A", "service", 6), (6, "LOOP-B", "service", 5)]
    assert pole_of_units(rows) == {"POLE-MED": "POLE-MED", "CARDIO": "POLE-MED", "USIC": "POLE-MED"}


def test_signin_counts_from_journal_details():
    def event(client_id, app_class, acr, amr):
        data = {"client_id": client_id, "acr": acr, "amr": amr, "sid": "s", "scope": "openid"}
        if app_class is not None:
            data["class"] = app_class
        return json.dumps(data, sort_keys=True)

    counts = signin_counts([
        event("dpi", "health-data", "eidas2", ["mfa", "otp", "pwd"]),
        event("dpi", "health-data", "eidas1", ["pwd"]),
        event("labo", "health-data", "eidas1", ["pwd"]),
        event("labo", "health-data", "eidas1", ["pwd"]),
        event("mail", "standard", "eidas1", ["pwd"]),
        event("old", None, "eidas3", ["hwk", "mfa", "pin"]),
        event("urg", "health-data", "eidas1", ["emergency", "pwd"]),
        "not json",
    ])
    assert counts == {
        ("signins:health-data", "all", ""): 5,
        ("signins_mfa:health-data", "all", ""): 1,
        ("signins_acr:health-data:eidas2", "all", ""): 1,
        ("signins_acr:health-data:eidas1", "all", ""): 4,
        ("signins_password_only:health-data", "all", ""): 3,
        ("signins_password_only:health-data", "client", "dpi"): 1,
        ("signins_password_only:health-data", "client", "labo"): 2,
        ("signins:standard", "all", ""): 1,
        ("signins_acr:standard:eidas1", "all", ""): 1,
        ("signins_password_only:standard", "all", ""): 1,
        ("signins_password_only:standard", "client", "mail"): 1,
        ("signins:unknown", "all", ""): 2,
        ("signins_mfa:unknown", "all", ""): 1,
        ("signins_acr:unknown:eidas3", "all", ""): 1,
        ("signins_acr:unknown:unknown", "all", ""): 1,
    }
