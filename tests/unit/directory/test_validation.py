import datetime as dt

import pytest

from hospiconnect.directory import services
from hospiconnect.directory import validation as v
from hospiconnect.errors import ValidationError
from tests.factories import IdentityRawFactory, make_rpps


def test_rpps_check_key():
    good = v.luhn_complete("1000000001")
    assert v.check_rpps(good) == good
    bad = good[:-1] + str((int(good[-1]) + 1) % 10)
    with pytest.raises(ValidationError, match="clé de contrôle"):
        v.check_rpps(bad)
    with pytest.raises(ValidationError, match="11 chiffres"):
        v.check_rpps("1234")
    for seed in range(20):
        assert v.luhn_valid(make_rpps(seed))


def test_finess_and_insee_codes():
    assert v.check_finess("750712184") == "750712184"
    assert v.check_finess("2a0000012") == "2A0000012"
    with pytest.raises(ValidationError):
        v.check_finess("75071218")
    assert v.check_birth_place("75056", "99100") == ("75056", "99100")
    assert v.check_birth_place("", "99134") == (None, "99134")
    with pytest.raises(ValidationError, match="commune"):
        v.check_birth_place("", "99100")
    with pytest.raises(ValidationError):
        v.check_birth_place("75056", "99134")
    with pytest.raises(ValidationError):
        v.check_birth_place(None, "FR")


def test_dates_in_both_formats():
    assert v.parse_date("12/04/1985", "d", "Date") == dt.date(1985, 4, 12)
    assert v.parse_date("1985-04-12", "d", "Date") == dt.date(1985, 4, 12)
    with pytest.raises(ValidationError, match="date invalide"):
        v.parse_date("31/02/1985", "d", "Date")


def test_validate_identity_collects_every_error():
    raw = IdentityRawFactory(birth_date="demain", rpps="12345678901", gender="?", contract_type="cdi-ish",
                             email="pas-un-email", establishments="123")
    with pytest.raises(ValidationError) as info:
        services.validate_identity(raw, today=dt.date(2026, 11, 27))
    assert set(info.value.errors) >= {"birth_date", "rpps", "gender", "contract_type", "email", "establishments"}


def test_validate_identity_requires_core_fields():
    with pytest.raises(ValidationError) as info:
        services.validate_identity({}, today=dt.date(2026, 11, 27))
    assert set(info.value.errors) == {"birth_family_name", "given_names", "birth_date", "birth_country",
                                      "gender", "contract_type"}


def test_validate_identity_normalises_lists():
    data = services.validate_identity(IdentityRawFactory(units="B|A|A", roles="IDE, Cadre"),
                                      today=dt.date(2026, 11, 27))
    assert data.units == ["A", "B"]
    assert data.roles == ["cadre", "ide"]


def test_future_birth_date_refused():
    with pytest.raises(ValidationError):
        services.validate_identity(IdentityRawFactory(birth_date="2030-01-01"), today=dt.date(2026, 11, 27))
