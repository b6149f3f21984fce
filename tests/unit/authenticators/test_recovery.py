"""Recovery codes (pure): entropy, format, normalisation, keyed hashing."""

from __future__ import annotations

import math
import re

from hospiconnect.authenticators import recovery
from hospiconnect.crypto import InstanceKeys

KEYS = InstanceKeys(b"s" * 32, b"h" * 32, {"k1": b"k" * 32}, "k1")


def test_ten_codes_of_at_least_64_bits():
    codes = recovery.generate()
    assert len(codes) == 10 == len(set(codes))
    assert recovery.LENGTH * math.log2(len(recovery.ALPHABET)) >= 64
    for code in codes:
        assert re.fullmatch(r"([0-9A-HJKMNP-TV-Z]{4}-){3}[0-9A-HJKMNP-TV-Z]{4}", code)


def test_normalisation_ignores_case_spaces_dashes_and_confusables():
    assert recovery.normalize("7k2m-9qxd h4tb_w1ze") == "7K2M9QXDH4TBW1ZE"
    assert recovery.normalize("OOOO-IIII-LLLL-0000") == "0000111111110000"
    assert recovery.normalize(" 7K2M9QXDH4TBW1ZE\n") == "7K2M9QXDH4TBW1ZE"


def test_impossible_codes_normalise_to_none():
    for bad in ["", "7K2M-9QXD-H4TB", "7K2M-9QXD-H4TB-W1ZEX", "7K2M-9QXD-H4TB-W1ZU", "ÉÉÉÉ-9QXD-H4TB-W1ZE"]:
        assert recovery.normalize(bad) is None


def test_hash_is_keyed_and_bound_to_the_person():
    h = recovery.hash_code(KEYS, "person-a", "7K2M9QXDH4TBW1ZE")
    assert len(h) == 64 and "7K2M" not in h
    assert h == recovery.hash_code(KEYS, "person-a", "7K2M9QXDH4TBW1ZE")
    assert h != recovery.hash_code(KEYS, "person-b", "7K2M9QXDH4TBW1ZE")
    other = InstanceKeys(b"s" * 32, b"x" * 32, {"k1": b"k" * 32}, "k1")
    assert h != recovery.hash_code(other, "person-a", "7K2M9QXDH4TBW1ZE")
