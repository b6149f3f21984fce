"""Test data: valid identity fields (factory_boy) and helpers that create identities through the services."""

from __future__ import annotations

import datetime as dt
import random

import factory

from hospiconnect.directory import services
from hospiconnect.directory.validation import luhn_complete


def make_rpps(seed: int | None = None) -> str:
    rnd = random.Random(seed)
    return luhn_complete("10" + "".join(rnd.choice("0123456789") for _ in range(8)))


class IdentityRawFactory(factory.DictFactory):
    """Raw identity fields as a form or an HR row gives them."""

    birth_family_name = factory.Sequence(lambda n: f"Martin{chr(65 + n % 26)}{chr(65 + (n // 26) % 26)}")
    given_names = "Claire Marie"
    birth_date = "1985-04-12"
    birth_place = "75056"
    birth_country = "99100"
    gender = "F"
    email = factory.Sequence(lambda n: f"agent{n}@chu-exemple.fr")
    contract_type = "permanent"
    start_date = "2020-01-01"
    establishments = "750712184"
    units = "POLE-MED|CARDIO"
    roles = "ide"

    class Params:
        with_rpps = factory.Trait(rpps=factory.Sequence(lambda n: make_rpps(n)), roles="medecin",
                                  contract_type="permanent")
        abroad = factory.Trait(birth_place="", birth_country="99134")


def create_identity(session, actor: str = "test", confirm_homonym: bool = False, **overrides):  # type: ignore[no-untyped-def]
    raw = IdentityRawFactory(**overrides)
    data = services.validate_identity(raw, today=dt.date(2026, 11, 27))
    identity = services.create_identity(session, data, actor=actor, confirm_homonym=confirm_homonym,
                                        today=dt.date(2026, 11, 27))
    session.commit()
    return identity
