"""The trajectory's person-level indicators (hospiconnect.trajectory.indicators), on small hand-computed fixtures."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random

import pytest

from hospiconnect.trajectory.indicators import (
    DEFAULT_MIE_KINDS,
    DIMENSION_LABELS_FR,
    DIMENSIONS,
    INDICATOR_LABELS_FR,
    PERSON_INDICATORS,
    STATUS_LABELS_FR,
    STATUSES,
    MieFact,
    PersonStatus,
    change_days,
    count_day,
    daily_person_counts,
    indicator_label_fr,
    is_active,
    make_person,
    normalize,
    person_status,
    person_timeline,
    person_vector,
    policy_change_days,
)
from tests.unit.policies.helpers import SHIPPED, policy

D = dt.date.fromisoformat
TODAY = D("2026-03-10")
YESTERDAY = TODAY - dt.timedelta(days=1)
SINCE = ((D("2024-01-01"), None),)


def mie(mie_type: str = "totp", start: str = "2025-06-01", end: str | None = None, *, proofed: bool = True,
        kind: str | None = None, proofed_at: str | None = None) -> MieFact:
    return MieFact(type=mie_type, kind=kind or mie_type, active_from=D(start), active_until=D(end) if end else None,
                   proofed=proofed, proofing_method="face_to_face" if proofed else None,
                   proofed_at=D(proofed_at) if proofed_at else (D(start) if proofed else None))


def person(identity_id: int = 1, *mies: MieFact, active=SINCE, rpps: bool = False, contract_type: str = "permanent",
           units=("CARDIO",), poles=("POLE-MED",), roles=("ide",), establishments=("750712184",),
           enrollment=(), exceptions=(), paired=()):
    return make_person(identity_id=identity_id, public_id=f"p{identity_id}", user_name=f"u{identity_id}",
                       display_name=f"Personne {identity_id}", rpps=rpps, contract_type=contract_type, units=units,
                       poles=poles, roles=roles, establishments=establishments, mies=mies,
                       active_intervals=active, enrollment_intervals=enrollment, exception_intervals=exceptions,
                       psc_intervals=paired)


def all_counts(counts, *names):
    return tuple(counts[(name, "all", "")] for name in names)


# -- vocabularies ------------------------------------------------------------------------------------------------

def test_vocabularies_and_french_labels():
    assert STATUSES == ("compliant", "exempt", "pending", "non_compliant")
    assert DIMENSIONS == ("all", "rpps", "contract_type", "establishment", "pole", "unit", "role")
    assert set(STATUSES) <= set(PERSON_INDICATORS) and set(STATUS_LABELS_FR) == set(STATUSES)
    assert set(DIMENSIONS) <= set(DIMENSION_LABELS_FR)
    assert set(PERSON_INDICATORS) <= set(INDICATOR_LABELS_FR)
    assert indicator_label_fr("compliant") == "avec un MIE conforme"
    assert indicator_label_fr("signins_acr:health-data:eidas2") == "connexions de niveau eidas2 (health-data)"
    assert indicator_label_fr("signins_password_only:standard") == "connexions par mot de passe seul (standard)"
    assert indicator_label_fr("mie_active:webauthn:platform") == "MIE actifs : authentificateur intégré à l'appareil"
    assert indicator_label_fr("mie_active:sms") == "MIE actifs : sms"


# -- status and its precedence -----------------------------------------------------------------------------------

def test_a_proofed_totp_is_compliant():
    assert person_status(SHIPPED, person(1, mie("totp")), TODAY) == PersonStatus("compliant", "")


def test_compliant_wins_over_an_exception_and_an_open_enrollment():
    p = person(1, mie("totp"), enrollment=[(D("2026-03-01"), None)], exceptions=[(D("2026-03-01"), None)])
    assert person_status(SHIPPED, p, TODAY).status == "compliant"


def test_exempt_wins_over_pending_and_pending_over_non_compliant():
    window = [(D("2026-03-01"), D("2026-03-20"))]
    both = person(1, mie("password"), enrollment=window, exceptions=window)
    assert person_status(SHIPPED, both, TODAY) == PersonStatus("exempt", "exception")
    pending = person(2, mie("password"), enrollment=window)
    assert person_status(SHIPPED, pending, TODAY) == PersonStatus("pending", "enrollment")
    nothing = person(3, mie("password"))
    assert person_status(SHIPPED, nothing, TODAY) == PersonStatus("non_compliant", "mie_single_factor")


def test_non_compliant_reasons():
    assert person_status(SHIPPED, person(1), TODAY) == PersonStatus("non_compliant", "no_mie")
    unproofed = person(2, mie("password"), mie("totp", proofed=False))
    assert person_status(SHIPPED, unproofed, TODAY) == PersonStatus("non_compliant", "mie_single_factor")
    only_unproofed = person(3, mie("totp", proofed=False))
    assert person_status(SHIPPED, only_unproofed, TODAY) == PersonStatus("non_compliant", "mie_not_proofed")
    # A revoked MIE says less than the one still held: the reason is the telling one.
    revoked_then_password = person(4, mie("totp", end="2026-01-01"), mie("password"))
    assert person_status(SHIPPED, revoked_then_password, TODAY).reason == "mie_single_factor"
    only_revoked = person(5, mie("totp", end="2026-01-01"))
    assert person_status(SHIPPED, only_revoked, TODAY).reason == "mie_not_active"


def test_an_mie_revoked_yesterday():
    p = person(1, mie("totp", "2025-06-01", TODAY.isoformat()), mie("password", "2025-01-01", proofed=False))
    assert person_status(SHIPPED, p, YESTERDAY).status == "compliant"
    assert person_status(SHIPPED, p, TODAY) == PersonStatus("non_compliant", "mie_single_factor")
    assert person_vector(SHIPPED, p, YESTERDAY) == {"active": 1, "compliant": 1, "mie_active:totp": 1,
                                                    "mie_active:password": 1, "proofed": 1}
    assert person_vector(SHIPPED, p, TODAY) == {"active": 1, "non_compliant": 1, "mie_active:password": 1,
                                                "password_only": 1}


def test_an_expired_exception():
    p = person(1, mie("password"), exceptions=[(D("2026-02-01"), TODAY)])  # its last day was yesterday
    assert person_status(SHIPPED, p, YESTERDAY) == PersonStatus("exempt", "exception")
    assert person_status(SHIPPED, p, TODAY) == PersonStatus("non_compliant", "mie_single_factor")
    counts = count_day(SHIPPED, [p], TODAY)
    assert all_counts(counts, "exempt", "non_compliant") == (0, 1)


def test_a_suspended_identity_is_not_counted_at_all():
    suspended = person(1, mie("totp"), active=[(D("2024-01-01"), D("2026-03-01"))])
    back = person(2, mie("totp"), active=[(D("2024-01-01"), D("2026-03-01")), (TODAY, None)])
    assert not is_active(suspended, TODAY) and is_active(suspended, D("2026-02-28"))
    assert person_vector(SHIPPED, suspended, TODAY) == {}
    counts = count_day(SHIPPED, [suspended, back], TODAY)
    assert all_counts(counts, "active", "compliant") == (1, 1)
    assert counts[("active", "unit", "CARDIO")] == 1
    counts = count_day(SHIPPED, [suspended, back], YESTERDAY)
    assert all_counts(counts, "active", "compliant", "mie_active:totp") == (0, 0, 0)
    assert ("active", "unit", "CARDIO") not in counts


def test_a_not_homologated_type_after_its_deadline():
    # TOTP homologated until 1 April 2026; from then on it no longer counts (health-data refuses it).
    local = policy("""\
        rules:
          - id: homologation
            description: MIE non homologués refusés
            from: 2026-01-01
            applies_to: {class: health-data}
            set: {accept_not_homologated: false}
        """)
    totp = dataclasses.replace(local.mie_types["totp"], decision_date=D("2025-06-01"),
                               decision_valid_until=D("2026-04-01"))
    local = dataclasses.replace(local, mie_types={**local.mie_types, "totp": totp})
    p1 = person(1, mie("totp", "2025-07-01"))
    assert person_status(local, p1, D("2026-03-31")).status == "compliant"
    assert person_status(local, p1, D("2026-04-01")) == PersonStatus("non_compliant", "mie_type_not_homologated")
    assert D("2026-04-01") in policy_change_days(local) and D("2026-01-01") in policy_change_days(local)
    # The shipped policy: the password is not homologated, and a password alone never was compliant.
    p2 = person(2, mie("password", "2020-01-01", proofed=False))
    assert person_status(SHIPPED, p2, D("2025-06-01")).reason == "mie_single_factor"


def test_an_identity_check_dated_after_the_day_does_not_count_yet():
    p = person(1, mie("totp", "2025-06-01", proofed_at="2026-03-05"))
    assert person_status(SHIPPED, p, D("2026-03-04")) == PersonStatus("non_compliant", "mie_not_proofed")
    assert person_status(SHIPPED, p, D("2026-03-05")).status == "compliant"
    assert D("2026-03-05") in change_days(p)


# -- the other person-level indicators ---------------------------------------------------------------------------

def test_proofed_password_only_rpps_and_mie_kinds():
    people = [
        person(1, mie("password", proofed=False), mie("totp", proofed=False), rpps=True),
        person(2, mie("password", proofed=False)),
        person(3, mie("webauthn", kind="webauthn:platform"), mie("webauthn", kind="webauthn:cross-platform"),
               mie("webauthn", "2025-01-01", "2025-06-01", kind="webauthn:platform")),
        person(4, mie("password", proofed=False), mie("webauthn")),
        person(5, mie("cps", proofed=False), rpps=True),
    ]
    counts = count_day(SHIPPED, people, TODAY)
    assert all_counts(counts, "active", "compliant", "non_compliant", "proofed", "password_only", "rpps_linked") == (
        5, 3, 2, 2, 1, 2)
    assert all_counts(counts, "mie_active:password", "mie_active:totp", "mie_active:webauthn",
                      "mie_active:webauthn:platform", "mie_active:webauthn:cross-platform", "mie_active:cps") == (
        3, 1, 3, 1, 1, 1)
    assert counts[("mie_active:webauthn", "all", "")] == 3  # the MIE of person 4 has no known attachment


def test_a_pairing_with_pro_sante_connect_counts_on_its_days_only():
    # Paired on 1 March, unpaired on 5 March (that day no longer counts), paired again from 8 March.
    paired = [(D("2026-03-01"), D("2026-03-05")), (D("2026-03-08"), None)]
    doctor = person(1, mie("cps"), rpps=True, contract_type="interim", units=("URG",), paired=paired)
    nurse = person(2, mie("password", proofed=False))
    assert PERSON_INDICATORS[-1] == "psc_paired" and indicator_label_fr("psc_paired") == \
        "associées à Pro Santé Connect"
    expected = {"2026-02-28": 0, "2026-03-01": 1, "2026-03-04": 1, "2026-03-05": 0, "2026-03-07": 0,
                "2026-03-08": 1, "2026-03-10": 1}
    for day, paired_count in expected.items():
        counts = count_day(SHIPPED, [doctor, nurse], D(day))
        assert all_counts(counts, "active", "psc_paired", "rpps_linked") == (2, paired_count, 1), day
        assert counts[("psc_paired", "unit", "URG")] == counts[("psc_paired", "rpps", "with")] == paired_count, day
        assert counts[("psc_paired", "contract_type", "interim")] == paired_count, day
        assert counts[("psc_paired", "rpps", "without")] == counts[("psc_paired", "unit", "CARDIO")] == 0, day
    assert person_vector(SHIPPED, doctor, TODAY)["psc_paired"] == 1
    assert "psc_paired" not in person_vector(SHIPPED, doctor, D("2026-03-06"))
    assert {D("2026-03-01"), D("2026-03-05"), D("2026-03-08")} <= change_days(doctor)
    # An identity that is not active is not counted, paired or not.
    suspended = person(3, mie("cps"), active=[(D("2024-01-01"), D("2026-03-09"))], paired=paired)
    assert all_counts(count_day(SHIPPED, [suspended], TODAY), "active", "psc_paired") == (0, 0)
    assert all_counts(count_day(SHIPPED, [suspended], D("2026-03-08")), "active", "psc_paired") == (1, 1)


def test_every_dimension_counts_a_person_once_per_value():
    p = person(1, mie("totp"), rpps=True, contract_type="interim", units=("CARDIO", "URG"),
               poles=("POLE-MED", "POLE-URG"), roles=("ide", "cadre"), establishments=("750712184", "750100042"))
    q = person(2, mie("password", proofed=False), contract_type="permanent", units=("CARDIO",), poles=("POLE-MED",),
               roles=("ide",), establishments=("750712184",))
    counts = count_day(SHIPPED, [p, q], TODAY)
    expected = {
        ("all", ""): (2, 1), ("rpps", "with"): (1, 1), ("rpps", "without"): (1, 0),
        ("contract_type", "interim"): (1, 1), ("contract_type", "permanent"): (1, 0),
        ("establishment", "750712184"): (2, 1), ("establishment", "750100042"): (1, 1),
        ("pole", "POLE-MED"): (2, 1), ("pole", "POLE-URG"): (1, 1),
        ("unit", "CARDIO"): (2, 1), ("unit", "URG"): (1, 1),
        ("role", "ide"): (2, 1), ("role", "cadre"): (1, 1),
    }
    for (dimension, value), (active, compliant) in expected.items():
        assert counts[("active", dimension, value)] == active, (dimension, value)
        assert counts[("compliant", dimension, value)] == compliant, (dimension, value)
        assert counts[("non_compliant", dimension, value)] == active - compliant
    assert counts[("mie_active:totp", "unit", "URG")] == 1 and counts[("password_only", "role", "ide")] == 1
    # No other breakdown value appears.
    assert {(d, v) for (_, d, v) in counts} == set(expected)


def test_zeros_are_stored_for_populated_breakdowns_and_for_everyone():
    counts = count_day(SHIPPED, [], TODAY)
    assert counts == {**{(name, "all", ""): 0 for name in PERSON_INDICATORS},
                      **{("mie_active:" + kind, "all", ""): 0 for kind in DEFAULT_MIE_KINDS}}
    counts = normalize({("active", "unit", "A"): 1, ("compliant", "unit", "A"): 1, ("active", "unit", "B"): 0,
                        ("mie_active:totp", "unit", "A"): 0})
    assert counts[("exempt", "unit", "A")] == 0 and ("active", "unit", "B") not in counts
    assert ("mie_active:totp", "unit", "A") not in counts


# -- over time ------------------------------------------------------------------------------------------------

def test_a_timeline_has_one_point_per_change():
    p = person(1, mie("password", "2026-01-10", proofed=False), mie("totp", "2026-01-15", "2026-01-20"),
               active=[(D("2026-01-05"), None)], enrollment=[(D("2026-01-12"), D("2026-01-15"))])
    timeline = person_timeline(SHIPPED, p, D("2026-01-01"), D("2026-01-31"), policy_change_days(SHIPPED))
    assert [(day.day, vector.get("non_compliant", 0), vector.get("pending", 0), vector.get("compliant", 0))
            for day, vector in timeline] == [(1, 0, 0, 0), (5, 1, 0, 0), (10, 1, 0, 0), (12, 0, 1, 0),
                                             (15, 0, 0, 1), (20, 1, 0, 0)]
    assert timeline[1][1] == {"active": 1, "non_compliant": 1}
    assert timeline[2][1] == {"active": 1, "non_compliant": 1, "mie_active:password": 1, "password_only": 1}


def _pairings(rnd: random.Random, day) -> list:  # type: ignore[no-untyped-def]
    """Up to two successive pairings (one live at a time, as the links table allows), the first maybe ended."""
    if rnd.random() < 0.4:
        return []
    start = day()
    end = start + dt.timedelta(days=rnd.randrange(1, 15))
    if rnd.random() < 0.3:
        return [(start, None)]
    return [(start, end)] + ([(end + dt.timedelta(days=rnd.randrange(1, 10)), None)] if rnd.random() < 0.5 else [])


def _random_people(rnd: random.Random, count: int, first: dt.date, days: int) -> list:
    def day(offset: int | None = None) -> dt.date:
        return first + dt.timedelta(days=rnd.randrange(-5, days + 5) if offset is None else offset)

    def interval():
        start = day()
        return (start, None if rnd.random() < 0.4 else start + dt.timedelta(days=rnd.randrange(1, 20)))

    people = []
    for n in range(count):
        mies = []
        for _ in range(rnd.randrange(0, 4)):
            start, end = interval()
            mie_type = rnd.choice(["password", "totp", "webauthn", "cps"])
            proofed = rnd.random() < 0.7
            mies.append(MieFact(mie_type, mie_type + (":platform" if mie_type == "webauthn" and rnd.random() < 0.5
                                                      else ""), start, end, proofed,
                                proofing_method="fcplus" if proofed else None,
                                proofed_at=day() if proofed and rnd.random() < 0.3 else None))
        people.append(person(n, *mies, active=sorted([interval() for _ in range(rnd.randrange(1, 3))]),
                             rpps=rnd.random() < 0.5, contract_type=rnd.choice(["permanent", "interim"]),
                             units=tuple(rnd.sample(["A", "B", "C"], rnd.randrange(0, 3))),
                             enrollment=[interval() for _ in range(rnd.randrange(0, 2))],
                             exceptions=[interval() for _ in range(rnd.randrange(0, 2))],
                             paired=_pairings(rnd, day)))
    return people


@pytest.mark.parametrize("seed", range(5))
def test_counting_change_points_gives_the_counts_of_each_day(seed):
    """The backfill's difference arrays give, every day, exactly what count_day computes for that day (here across
    the 2026 deadline, where the policy's answer changes for unchanged people)."""
    rnd = random.Random(seed)
    first, days = D("2025-12-10"), 40
    people = _random_people(rnd, 30, first, days)
    series = list(daily_person_counts(SHIPPED, people, first, first + dt.timedelta(days=days - 1)))
    assert [day for day, _ in series] == [first + dt.timedelta(days=n) for n in range(days)]
    for day, counts in series:
        assert counts == count_day(SHIPPED, people, day), day
