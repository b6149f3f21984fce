"""Identity matching between the directory and the FranceConnect+ identity-pivot claims (pure).

A remote enrollment is only allowed when the person who signed in with FranceConnect+ is the person the
officer registered in the directory. FranceConnect+ sends the « identité pivot » (DOMAIN.md):

- ``family_name``: the birth name (the usage name travels separately in ``preferred_username`` and is
  deliberately ignored here: it changes with marriage and is not part of the pivot identity);
- ``given_name``: ALL the given names, separated by spaces;
- ``birthdate``: ``YYYY-MM-DD``, possibly a « presumed » date where an unknown day or month is sent as 01;
- ``gender``: ``male`` or ``female``;
- ``birthplace``: the INSEE commune code, empty when the person was born abroad;
- ``birthcountry``: the INSEE country code, ``99100`` for France.

:func:`match_identity` is the single place where these rules live. It never stops at the first difference:
every differing field is listed so that the officer who reviews a rejected case sees them all.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hospiconnect.directory.normalize import first_given_name, normalize_name

if TYPE_CHECKING:  # pragma: no cover - typing only
    from hospiconnect.directory.models import Identity

FRANCE_COUNTRY_CODE = "99100"

_FCPLUS_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_FCPLUS_GENDERS = frozenset({"male", "female"})


@dataclass(frozen=True)
class IdentityFacts:
    """The directory's side of the comparison: the pivot identity recorded by the officer."""

    birth_family_name: str
    given_names: str
    birth_date: dt.date
    birth_place: str | None
    birth_country: str
    gender: str


@dataclass(frozen=True)
class Difference:
    """One field that differs; ``reason`` is a French sentence shown to the officer."""

    field: str
    directory_value: str
    fcplus_value: str
    reason: str


@dataclass(frozen=True)
class MatchResult:
    """Outcome of :func:`match_identity`.

    ``matched`` is true only when ``differences`` is empty. ``presumed_birth_date`` is true when the birth
    date was accepted under the presumed-date rule (not an exact equality), so that the journal and the
    officer can see that the match relied on it.
    """

    matched: bool
    differences: list[Difference] = field(default_factory=list)
    presumed_birth_date: bool = False

    @property
    def fields(self) -> list[str]:
        """Return the names of the differing fields, in the order they were checked."""
        return [d.field for d in self.differences]


def identity_facts(identity: Identity) -> IdentityFacts:
    """Return the :class:`IdentityFacts` of a directory identity (reads attributes only)."""
    return IdentityFacts(
        birth_family_name=identity.birth_family_name,
        given_names=identity.given_names,
        birth_date=identity.birth_date,
        birth_place=identity.birth_place,
        birth_country=identity.birth_country or FRANCE_COUNTRY_CODE,
        gender=identity.gender,
    )


def _text(value: Any) -> str:
    """Return a claim as stripped text ("" when absent or not a string)."""
    return value.strip() if isinstance(value, str) else ""


def _code(value: str | None) -> str:
    """Return an INSEE code ready for comparison (upper case for the Corsican 2A/2B departments)."""
    return (value or "").strip().upper()


def _given_name_tokens(given_names: str) -> list[str]:
    """Return the normalised words of a list of given names (« Jean-Pierre Éric » → jean, pierre, eric)."""
    return normalize_name(given_names.replace(",", " ")).split()


def _compact(name: str) -> str:
    """Return the comparison key of a name without any separator (« D'Artagnan » → dartagnan)."""
    return normalize_name(name).replace(" ", "")


def _among_given_names(first: str, fcplus_tokens: list[str]) -> bool:
    """Return True when the given name ``first`` is one or several consecutive FranceConnect+ given names.

    Separators are ignored inside the run, so « Jean-Pierre », « Jean Pierre » and « Jeanpierre » all match
    the FranceConnect+ list « JEAN PIERRE LOUIS », but the words must be consecutive and complete (« Mari »
    does not match « Marie », « Jean-Pierre » does not match « Jean Louis Pierre »).
    """
    wanted = _compact(first)
    if not wanted:
        return False
    for start in range(len(fcplus_tokens)):
        run = ""
        for token in fcplus_tokens[start:]:
            run += token
            if run == wanted:
                return True
            if len(run) >= len(wanted):
                break
    return False


def _compare_birth_date(directory: dt.date, claim: str, accept_presumed: bool) -> tuple[str | None, bool]:
    """Compare the birth dates.

    Returns ``(reason, presumed)``: ``reason`` is None when the dates are accepted, otherwise the French
    explanation; ``presumed`` is True when the acceptance relied on the presumed-date rule.
    """
    found = _FCPLUS_DATE.match(claim)
    if not found:
        return "Date de naissance FranceConnect+ absente ou illisible.", False
    year, month, day = (int(part) for part in found.groups())
    try:
        fc_date = dt.date(year, month, day)
    except ValueError:
        return "Date de naissance FranceConnect+ invalide.", False
    if fc_date == directory:
        return None, False
    # Presumed dates: FranceConnect+ sends the civil-registry date where an unknown day (or unknown day and
    # month) is replaced by 01, and does not say so. We accept:
    #   - YYYY-01-01 when the directory has the same year (day and month unknown);
    #   - YYYY-MM-01 when the directory has the same year and month (day unknown).
    # A month of 01 with a known day other than 01 is never treated as presumed.
    # Risk: a person genuinely born on the 1st of a month (or on 1 January) matches a directory entry with the
    # same year (and month) but another day. This is bounded by the other pivot fields (birth name, given
    # name, birth place and country, gender), which must all match exactly, and the acceptance is reported
    # in MatchResult.presumed_birth_date for the journal and the officer.
    if accept_presumed and fc_date.year == directory.year and day == 1:
        if month == 1:
            return None, True
        if month == directory.month:
            return None, True
    if accept_presumed and day == 1 and fc_date.year == directory.year:
        return "Date de naissance différente (même présumée, le mois ne correspond pas).", False
    return "Date de naissance différente.", False


def match_identity(
    directory: IdentityFacts, fcplus_claims: dict[str, Any], *, accept_presumed_dates: bool = True
) -> MatchResult:
    """Compare the directory's pivot identity with the FranceConnect+ claims.

    Rules (each differing field gives one :class:`Difference`):

    1. **Birth family name** (``family_name``): equal after :func:`normalize_name` with the remaining spaces
       removed (case, accents, hyphens, apostrophes and spaces are ignored, so « D'Artagnan » equals
       « DARTAGNAN »). The usage name (``preferred_username``) is not compared.
    2. **Given names** (``given_name``, all given names separated by spaces): the directory's FIRST given name
       must be among the FranceConnect+ given names, at any position — people are often known by their second
       given name, and directories often hold only the given name in use. A compound first given name
       (« Jean-Pierre ») must appear as consecutive complete words (separators ignored). The other directory
       given names are NOT required: HR files frequently hold an incomplete or re-ordered list, and requiring
       them would reject genuine people for a clerical difference while adding little assurance on top of
       the other fields.
    3. **Birth date** (``birthdate``): equal, or accepted as a presumed date — see
       :func:`_compare_birth_date` (``YYYY-01-01`` with the same year, ``YYYY-MM-01`` with the same year and
       month). ``accept_presumed_dates=False`` demands strict equality.
    4. **Birth place** (``birthplace``): the INSEE commune codes are equal; both are empty for a person born
       abroad.
    5. **Birth country** (``birthcountry``): the INSEE country codes are equal (99100 = France).
    6. **Gender** (``gender``): FranceConnect+ sends ``male``/``female``; it must equal the directory's gender
       (a directory gender of ``unspecified`` cannot be verified and is a difference).

    Returns a :class:`MatchResult`; never raises on malformed claims (they are differences).
    """
    differences: list[Difference] = []

    def differ(name: str, directory_value: str, fcplus_value: str, reason: str) -> None:
        differences.append(Difference(name, directory_value, fcplus_value, reason))

    family = _text(fcplus_claims.get("family_name"))
    if not family or _compact(family) != _compact(directory.birth_family_name):
        differ("birth_family_name", directory.birth_family_name, family,
               "Le nom de naissance ne correspond pas." if family else "Nom de naissance absent de FranceConnect+.")

    given = _text(fcplus_claims.get("given_name"))
    first = first_given_name(directory.given_names)
    if not _among_given_names(first, _given_name_tokens(given)):
        differ("given_names", directory.given_names, given,
               f"Le premier prénom de l'annuaire (« {first} ») ne figure pas parmi les prénoms FranceConnect+."
               if given else "Prénoms absents de FranceConnect+.")

    birthdate = _text(fcplus_claims.get("birthdate"))
    reason, presumed = _compare_birth_date(directory.birth_date, birthdate, accept_presumed_dates)
    if reason:
        differ("birth_date", directory.birth_date.isoformat(), birthdate, reason)

    place_dir, place_fc = _code(directory.birth_place), _code(_text(fcplus_claims.get("birthplace")))
    if place_dir != place_fc:
        if not place_fc:
            reason_place = "FranceConnect+ n'indique pas de commune de naissance (naissance à l'étranger ?)."
        elif not place_dir:
            reason_place = "L'annuaire n'indique pas de commune de naissance, FranceConnect+ en indique une."
        else:
            reason_place = "La commune de naissance (code INSEE) ne correspond pas."
        differ("birth_place", place_dir, place_fc, reason_place)

    country_dir = _code(directory.birth_country) or FRANCE_COUNTRY_CODE
    country_fc = _code(_text(fcplus_claims.get("birthcountry")))
    if country_dir != country_fc:
        differ("birth_country", country_dir, country_fc,
               "Le pays de naissance (code INSEE) ne correspond pas." if country_fc
               else "Pays de naissance absent de FranceConnect+.")

    gender_fc = _text(fcplus_claims.get("gender")).lower()
    gender_dir = (directory.gender or "").strip().lower()
    if gender_fc not in _FCPLUS_GENDERS:
        differ("gender", gender_dir, gender_fc, "Genre FranceConnect+ absent ou inconnu.")
    elif gender_fc != gender_dir:
        differ("gender", gender_dir, gender_fc, "Le genre ne correspond pas.")

    return MatchResult(matched=not differences, differences=differences, presumed_birth_date=presumed)


def match_names(identity: Identity, family_name: str, given_name: str) -> list[str]:
    """Compare the directory's names with the names a national provider sends (Pro Santé Connect's
    ``family_name`` and ``given_name``); return the differing fields (``family_name``, ``given_names``), empty
    when they match.

    Rules 1 and 2 of :func:`match_identity`, with one difference: the family name may equal the birth name
    OR the usage name, because PSC sends the « nom d'exercice », which is often the usage name. PSC sends no
    birth date or place: names alone only fill in a missing RPPS number for a person already signed in with
    two factors (hospiconnect.enrollment.national), never create or verify an identity.
    """
    differing: list[str] = []
    family = _compact(_text(family_name))
    known = {_compact(identity.birth_family_name), _compact(identity.usage_name or "")} - {""}
    if not family or family not in known:
        differing.append("family_name")
    if not _among_given_names(first_given_name(identity.given_names or ""), _given_name_tokens(_text(given_name))):
        differing.append("given_names")
    return differing
