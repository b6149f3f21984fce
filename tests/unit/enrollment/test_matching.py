"""Identity matching between the directory and FranceConnect+ claims (table-driven)."""

from __future__ import annotations

import datetime as dt
import types
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hospiconnect.enrollment.matching import (
    Difference,
    IdentityFacts,
    MatchResult,
    identity_facts,
    match_identity,
)

DIRECTORY = IdentityFacts(
    birth_family_name="Lefèvre-Durand",
    given_names="Marie Hélène",
    birth_date=dt.date(1980, 5, 17),
    birth_place="75056",
    birth_country="99100",
    gender="female",
)

CLAIMS: dict[str, Any] = {
    "family_name": "LEFEVRE-DURAND",
    "given_name": "Marie Hélène Claire",
    "birthdate": "1980-05-17",
    "birthplace": "75056",
    "birthcountry": "99100",
    "gender": "female",
    "preferred_username": "",
    "email": "marie.lefevre@example.org",
}


def facts(**changes: Any) -> IdentityFacts:
    data = {**DIRECTORY.__dict__, **changes}
    return IdentityFacts(**data)


def claims(**changes: Any) -> dict[str, Any]:
    data = {**CLAIMS, **changes}
    return {k: v for k, v in data.items() if v is not None}


ABROAD = {"birth_place": None, "birth_country": "99134"}

# (id, directory changes, claims changes, expected differing fields)
CASES: list[tuple[str, dict[str, Any], dict[str, Any], list[str]]] = [
    ("exact", {}, {}, []),
    ("exact-same-spelling", {}, {"family_name": "Lefèvre-Durand", "given_name": "Marie Hélène"}, []),
    ("family-lower-no-accent", {}, {"family_name": "lefevre durand"}, []),
    ("family-spaces", {}, {"family_name": "  Lefevre   Durand "}, []),
    ("family-apostrophe", {"birth_family_name": "D'Artagnan"}, {"family_name": "DARTAGNAN"}, []),
    ("family-no-hyphen", {}, {"family_name": "LEFEVREDURAND"}, []),
    ("family-part-only", {}, {"family_name": "Lefèvre"}, ["birth_family_name"]),
    ("family-apostrophe-space", {"birth_family_name": "D'Artagnan"}, {"family_name": "d artagnan"}, []),
    ("family-curly-apostrophe", {"birth_family_name": "N’Diaye"}, {"family_name": "N'DIAYE"}, []),
    ("family-ligature", {"birth_family_name": "Lœuvre"}, {"family_name": "LOEUVRE"}, []),
    ("family-different", {}, {"family_name": "Martin"}, ["birth_family_name"]),
    ("family-absent", {}, {"family_name": None}, ["birth_family_name"]),
    ("usage-name-irrelevant", {}, {"preferred_username": "Martin"}, []),
    ("usage-name-as-family-refused", {}, {"family_name": "Martin", "preferred_username": "Lefèvre-Durand"},
     ["birth_family_name"]),
    ("given-extra-fcplus-names", {"given_names": "Marie"}, {"given_name": "Marie Hélène Claire Anne"}, []),
    ("given-first-is-second-fcplus", {"given_names": "Hélène"}, {"given_name": "Marie Hélène"}, []),
    ("given-accent-case", {"given_names": "Hélène"}, {"given_name": "MARIE HELENE"}, []),
    ("given-compound", {"given_names": "Jean-Pierre"}, {"given_name": "Jean-Pierre Louis"}, []),
    ("given-compound-spaced", {"given_names": "Jean-Pierre"}, {"given_name": "Jean Pierre Louis"}, []),
    ("given-compound-glued", {"given_names": "Jean-Pierre"}, {"given_name": "JEANPIERRE Louis"}, []),
    ("given-compound-in-directory-glued", {"given_names": "Jeanpierre"}, {"given_name": "Jean-Pierre"}, []),
    ("given-compound-partial-refused", {"given_names": "Jean-Pierre"}, {"given_name": "Jean Louis"},
     ["given_names"]),
    ("given-compound-split-refused", {"given_names": "Jean-Pierre"}, {"given_name": "Jean Louis Pierre"},
     ["given_names"]),
    ("given-comma-directory", {"given_names": "Marie, Hélène"}, {"given_name": "Marie"}, []),
    ("given-other-directory-names-not-required", {"given_names": "Marie Sophie"}, {"given_name": "Marie Hélène"},
     []),
    ("given-first-missing", {"given_names": "Sophie Marie"}, {"given_name": "Marie Hélène"}, ["given_names"]),
    ("given-prefix-not-enough", {"given_names": "Mari"}, {"given_name": "Marie Hélène"}, ["given_names"]),
    ("given-absent", {}, {"given_name": None}, ["given_names"]),
    ("given-empty", {}, {"given_name": ""}, ["given_names"]),
    ("date-wrong-day", {}, {"birthdate": "1980-05-18"}, ["birth_date"]),
    ("date-wrong-year", {}, {"birthdate": "1981-05-17"}, ["birth_date"]),
    ("date-illegible", {}, {"birthdate": "17/05/1980"}, ["birth_date"]),
    ("date-impossible", {}, {"birthdate": "1980-02-30"}, ["birth_date"]),
    ("date-absent", {}, {"birthdate": None}, ["birth_date"]),
    ("date-presumed-day-month", {}, {"birthdate": "1980-01-01"}, []),
    ("date-presumed-day", {}, {"birthdate": "1980-05-01"}, []),
    ("date-presumed-other-year", {}, {"birthdate": "1979-01-01"}, ["birth_date"]),
    ("date-presumed-other-month", {}, {"birthdate": "1980-06-01"}, ["birth_date"]),
    ("date-month-01-known-day-not-presumed", {}, {"birthdate": "1980-01-17"}, ["birth_date"]),
    ("date-directory-presumed-not-symmetric", {"birth_date": dt.date(1980, 1, 1)}, {"birthdate": "1980-05-17"},
     ["birth_date"]),
    ("abroad-both-empty", ABROAD, {"birthplace": "", "birthcountry": "99134"}, []),
    ("abroad-claim-absent", ABROAD, {"birthplace": None, "birthcountry": "99134"}, []),
    ("abroad-vs-france", ABROAD, {}, ["birth_place", "birth_country"]),
    ("france-vs-abroad", {}, {"birthplace": "", "birthcountry": "99134"}, ["birth_place", "birth_country"]),
    ("other-country", ABROAD, {"birthplace": "", "birthcountry": "99109"}, ["birth_country"]),
    ("country-absent", {}, {"birthcountry": None}, ["birth_country"]),
    ("wrong-commune", {}, {"birthplace": "69123"}, ["birth_place"]),
    ("corsica-case", {"birth_place": "2a004"}, {"birthplace": "2A004"}, []),
    ("directory-commune-missing", {"birth_place": None}, {}, ["birth_place"]),
    ("wrong-gender", {}, {"gender": "male"}, ["gender"]),
    ("gender-case", {"gender": "Female"}, {"gender": "FEMALE"}, []),
    ("gender-unspecified", {"gender": "unspecified"}, {}, ["gender"]),
    ("gender-absent", {}, {"gender": None}, ["gender"]),
    ("gender-unknown-value", {}, {"gender": "f"}, ["gender"]),
    ("multiple-differences", {}, {"family_name": "Martin", "birthdate": "1981-05-17", "gender": "male"},
     ["birth_family_name", "birth_date", "gender"]),
    ("everything-differs", {},
     {"family_name": "X", "given_name": "Y", "birthdate": "2000-12-12", "birthplace": "01001",
      "birthcountry": "99134", "gender": "male"},
     ["birth_family_name", "given_names", "birth_date", "birth_place", "birth_country", "gender"]),
    ("empty-claims", {}, {k: None for k in CLAIMS},
     ["birth_family_name", "given_names", "birth_date", "birth_place", "birth_country", "gender"]),
]


@pytest.mark.parametrize(("directory_changes", "claim_changes", "expected"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_match_identity(directory_changes: dict[str, Any], claim_changes: dict[str, Any],
                        expected: list[str]) -> None:
    result = match_identity(facts(**directory_changes), claims(**claim_changes))
    assert isinstance(result, MatchResult)
    assert result.fields == expected
    assert result.matched is (not expected)
    for difference in result.differences:
        assert isinstance(difference, Difference)
        assert difference.reason  # a French sentence for the officer


@pytest.mark.parametrize(("birthdate", "presumed"), [("1980-05-17", False), ("1980-01-01", True),
                                                     ("1980-05-01", True)])
def test_presumed_date_is_reported(birthdate: str, presumed: bool) -> None:
    result = match_identity(DIRECTORY, claims(birthdate=birthdate))
    assert result.matched
    assert result.presumed_birth_date is presumed


def test_presumed_dates_can_be_refused() -> None:
    result = match_identity(DIRECTORY, claims(birthdate="1980-01-01"), accept_presumed_dates=False)
    assert result.fields == ["birth_date"]
    assert not result.presumed_birth_date


def test_difference_holds_both_values() -> None:
    result = match_identity(DIRECTORY, claims(birthplace="69123"))
    assert result.differences == [
        Difference("birth_place", "75056", "69123", "La commune de naissance (code INSEE) ne correspond pas.")
    ]


def test_given_name_difference_names_the_first_given_name() -> None:
    result = match_identity(facts(given_names="Sophie Marie"), claims())
    assert "« Sophie »" in result.differences[0].reason


def test_non_string_claims_are_differences_not_errors() -> None:
    result = match_identity(DIRECTORY, claims(family_name=42, given_name=["Marie"], birthdate=19800517))
    assert result.fields == ["birth_family_name", "given_names", "birth_date"]


def test_identity_facts_reads_an_identity() -> None:
    identity = types.SimpleNamespace(
        birth_family_name="Dupont", usage_name="Martin", given_names="Jean Paul", birth_date=dt.date(1970, 1, 2),
        birth_place=None, birth_country="99134", gender="male", email="jean@example.org",
    )
    assert identity_facts(identity) == IdentityFacts(  # type: ignore[arg-type]
        birth_family_name="Dupont", given_names="Jean Paul", birth_date=dt.date(1970, 1, 2), birth_place=None,
        birth_country="99134", gender="male",
    )


# --- property: a directory identity matches claims derived from it with spelling noise -------------------

_ACCENTS = {"e": "éèêë", "a": "àâä", "i": "îï", "o": "ôö", "u": "ùûü", "c": "ç"}
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_word = st.text(alphabet=_LETTERS, min_size=1, max_size=10)


@st.composite
def noisy(draw: st.DrawFn, text: str) -> str:
    """Return ``text`` with random accents, case changes and separators between its words."""
    out: list[str] = []
    for ch in text:
        if ch == " ":
            out.append(draw(st.sampled_from([" ", "-", "  ", " - ", "'", "’"])))
            continue
        variants = ch + _ACCENTS.get(ch, "")
        letter = draw(st.sampled_from(variants))
        out.append(letter.upper() if draw(st.booleans()) else letter)
    return "".join(out)


@st.composite
def directory_and_claims(draw: st.DrawFn) -> tuple[IdentityFacts, dict[str, Any]]:
    family = " ".join(draw(st.lists(_word, min_size=1, max_size=3)))
    given_words = draw(st.lists(_word, min_size=1, max_size=4))
    born_abroad = draw(st.booleans())
    directory = IdentityFacts(
        birth_family_name=family,
        given_names=given_words[0],
        birth_date=draw(st.dates(min_value=dt.date(1920, 1, 1), max_value=dt.date(2010, 12, 31))),
        birth_place=None if born_abroad else draw(st.from_regex(r"\A(\d{5}|2[AB]\d{3})\Z")),
        birth_country=draw(st.from_regex(r"\A99\d{3}\Z")) if born_abroad else "99100",
        gender=draw(st.sampled_from(["male", "female"])),
    )
    # FranceConnect+ lists every given name; the directory's first one may sit anywhere in the list.
    extra = draw(st.lists(_word, max_size=3))
    position = draw(st.integers(min_value=0, max_value=len(extra)))
    fc_given = [*extra[:position], given_words[0], *extra[position:]]
    fc_claims = {
        "family_name": draw(noisy(family)),
        "given_name": " ".join(draw(noisy(w)) for w in fc_given),
        "birthdate": directory.birth_date.isoformat(),
        "birthplace": directory.birth_place or "",
        "birthcountry": directory.birth_country,
        "gender": directory.gender,
        "preferred_username": draw(_word),
    }
    return directory, fc_claims


@settings(max_examples=300, deadline=None)
@given(directory_and_claims())
def test_identity_matches_its_noisy_claims(case: tuple[IdentityFacts, dict[str, Any]]) -> None:
    directory, fc_claims = case
    result = match_identity(directory, fc_claims)
    assert result.matched, result.differences
    assert result.differences == []


@settings(max_examples=100, deadline=None)
@given(directory_and_claims())
def test_changing_the_gender_is_always_detected(case: tuple[IdentityFacts, dict[str, Any]]) -> None:
    directory, fc_claims = case
    fc_claims["gender"] = "female" if directory.gender == "male" else "male"
    assert match_identity(directory, fc_claims).fields == ["gender"]
