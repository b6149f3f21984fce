"""Passwords: argon2id hashing with bounded concurrency, and the password policy (no database).

Hashing follows DESIGN.md: argon2id, m = 19 MiB, t = 2, p = 1 (the OWASP minimum), with the parameters
written explicitly so that a library upgrade cannot silently change them; :func:`verify` says when a stored
hash should be recomputed. Each hash holds 19 MiB for ~25 ms: a burst of logins could exhaust memory, so
a process computes at most ``max_concurrent`` hashes at a time (default: the CPU count) and the others wait.

The policy is NIST SP 800-63B's (SECURITY.md item 16): a length from 12 to 128 characters counted after
Unicode NFC normalisation, no composition rules, and refusal of common passwords, of passwords built on
the person's names or the establishment's name, and of obvious repetitions or sequences. The password is
NFC-normalised before hashing too, so the same password typed on another keyboard or system still matches.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import threading
import time
import unicodedata
from typing import Iterable

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from hospiconnect import metrics
from hospiconnect.directory.normalize import normalize_name

MIN_LENGTH = 12
MAX_LENGTH = 128

ARGON2_PARAMETERS = {
    "time_cost": 2,
    "memory_cost": 19456,  # KiB = 19 MiB
    "parallelism": 1,
    "hash_len": 32,
    "salt_len": 16,
    "type": Type.ID,
}

_hasher = PasswordHasher(**ARGON2_PARAMETERS)  # type: ignore[arg-type]
_slots = threading.BoundedSemaphore(os.cpu_count() or 1)
_slots_size = os.cpu_count() or 1


def configure(*, max_concurrent: int | None = None) -> None:
    """Set how many hashes this process may compute at once (default: the CPU count)."""
    global _slots, _slots_size
    size = max_concurrent or os.cpu_count() or 1
    if size < 1:
        raise ValueError("max_concurrent must be at least 1")
    _slots = threading.BoundedSemaphore(size)
    _slots_size = size


def max_concurrent() -> int:
    """Return the number of hashes this process computes at once."""
    return _slots_size


def prepare(password: str) -> str:
    """Return the form of ``password`` that is measured and hashed (Unicode NFC)."""
    return unicodedata.normalize("NFC", password)


def hash_password(password: str) -> str:
    """Return the argon2id hash (PHC string) of ``password``."""
    with _slots:
        return _hasher.hash(prepare(password))


@dataclasses.dataclass(frozen=True)
class Verification:
    """Result of :func:`verify`: whether it matched, and a new hash to store when parameters changed."""

    ok: bool
    new_hash: str | None = None


def verify(stored_hash: str, password: str) -> Verification:
    """Check ``password`` against ``stored_hash``.

    Returns ``Verification(ok, new_hash)``; ``new_hash`` is set on a match when the stored hash used other
    parameters than :data:`ARGON2_PARAMETERS` (the caller stores it: transparent rehash). A malformed
    stored hash is a mismatch, never an exception. Each call is counted and timed in the process's metrics
    (:func:`hospiconnect.metrics.password_validation`; the wait for a hashing slot is not timed).
    """
    prepared = prepare(password)
    with _slots:
        started = time.perf_counter()
        try:
            _hasher.verify(stored_hash, prepared)
        except (VerifyMismatchError, VerificationError, InvalidHashError) as exc:
            outcome = "invalid_hash" if isinstance(exc, InvalidHashError) else "mismatch"
            metrics.password_validation(outcome, time.perf_counter() - started)
            return Verification(False)
        metrics.password_validation("match", time.perf_counter() - started)
        if not _hasher.check_needs_rehash(stored_hash):
            return Verification(True)
        return Verification(True, _hasher.hash(prepared))


@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash("hospiconnect: no such account")


def verify_dummy(password: str) -> None:
    """Spend the time of a real verification, for an unknown account (timing must not reveal accounts)."""
    verify(_dummy_hash(), password)


def warm_up() -> None:
    """Compute the dummy hash now, so that the first unknown-user attempt does not cost two hashes."""
    _dummy_hash()


# --- Policy ---------------------------------------------------------------------------------------------

MESSAGES = {
    "too_short": f"Le mot de passe doit comporter au moins {MIN_LENGTH} caractères.",
    "too_long": f"Le mot de passe ne doit pas dépasser {MAX_LENGTH} caractères.",
    "common": "Ce mot de passe fait partie des mots de passe les plus courants : choisissez-en un autre.",
    "contains_name": "Le mot de passe ne doit contenir ni votre nom, ni vos prénoms, ni votre identifiant.",
    "contains_establishment": "Le mot de passe ne doit pas contenir le nom de l'établissement.",
    "repetitive": "Le mot de passe est une répétition ou une suite évidente (comme « aaaa… » ou « 1234… »).",
}


@dataclasses.dataclass(frozen=True)
class PolicyViolation:
    reason: str
    message: str


@functools.cache
def _common_passwords() -> frozenset[str]:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(p.casefold() for p in FREQUENCY_LISTS["passwords"])


def _words(values: Iterable[str | None], min_letters: int) -> set[str]:
    words: set[str] = set()
    for value in values:
        if not value:
            continue
        for part in re.split(r"[\s,]+", normalize_name(value)):
            if sum(ch.isalpha() for ch in part) >= min_letters:
                words.add(part)
    return words


def _skeleton(password: str) -> tuple[str, str]:
    """Return the password normalised like names, with separators as spaces and without them."""
    spaced = normalize_name(password)
    return spaced, spaced.replace(" ", "")


_SEQUENCES = (
    "abcdefghijklmnopqrstuvwxyz",
    "0123456789",
    "azertyuiopqsdfghjklmwxcvbn",
    "qwertyuiopasdfghjklzxcvbnm",
)


def _is_repetitive(password: str) -> bool:
    text = password.casefold()
    if len(set(text)) <= 3:
        return True
    # A short unit repeated: "abcabcabcabc", "12121212…".
    for size in range(1, 5):
        unit = text[:size]
        if (unit * (len(text) // size + 1))[:len(text)] == text:
            return True
    # A run along the alphabet, the digits or a keyboard row, forwards or backwards, wrapping around
    # ("123456789012", "zyxwvutsrqpo", "azertyuiopqs").
    for sequence in _SEQUENCES:
        for seq in (sequence, sequence[::-1]):
            start = seq.find(text[0])
            if start < 0:
                continue
            if all(seq[(start + i) % len(seq)] == ch for i, ch in enumerate(text)):
                return True
    return False


def policy_violations(password: str, *, names: Iterable[str | None] = (),
                      establishment_name: str = "") -> list[PolicyViolation]:
    """Return every rule ``password`` breaks (empty when acceptable), each with its reason code and message.

    ``names`` are the person's names and user name (each part of three letters or more is looked for,
    ignoring case and accents); ``establishment_name`` contributes its words of four letters or more.
    """
    prepared = prepare(password)
    found: list[str] = []
    length = len(prepared)
    if length < MIN_LENGTH:
        found.append("too_short")
    if length > MAX_LENGTH:
        found.append("too_long")
    if prepared.casefold() in _common_passwords():
        found.append("common")
    spaced, joined = _skeleton(prepared)
    if any(word in spaced or word in joined for word in _words(names, 3)):
        found.append("contains_name")
    if any(word in spaced or word in joined for word in _words([establishment_name], 4)):
        found.append("contains_establishment")
    if prepared and _is_repetitive(prepared):
        found.append("repetitive")
    return [PolicyViolation(reason, MESSAGES[reason]) for reason in found]


def person_names(identity: object) -> list[str | None]:
    """Return the names of an identity that a password must not contain (birth and usage names, each given
    name, user name)."""
    return [getattr(identity, "birth_family_name", None), getattr(identity, "usage_name", None),
            getattr(identity, "given_names", None), getattr(identity, "user_name", None)]
