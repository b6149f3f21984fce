"""Recovery codes (pure): generation, normalisation and keyed hashing.

A code is 16 characters of Crockford's base32 alphabet (80 bits, above the 64 bits of SECURITY.md
item 18), shown as four groups of four: ``7K2M-9QXD-H4TB-W1ZE``. The alphabet has no I, L, O or U, so
the characters people confuse are mapped back on input (O → 0, I and L → 1), and case, spaces and dashes
do not matter. Only a keyed hash (HMAC under the instance key) is stored: a copy of the database does not
give usable codes, and the hash is bound to the person so it cannot be replayed on another account.
"""

from __future__ import annotations

import secrets

from hospiconnect.crypto import InstanceKeys

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base32
LENGTH = 16
GROUP = 4
COUNT = 10

_CONFUSABLE = str.maketrans({"O": "0", "I": "1", "L": "1"})


def generate(count: int = COUNT) -> list[str]:
    """Return ``count`` new codes, formatted for display (``XXXX-XXXX-XXXX-XXXX``)."""
    return [format_code("".join(secrets.choice(ALPHABET) for _ in range(LENGTH))) for _ in range(count)]


def format_code(normalized: str) -> str:
    """Return a normalised code split into dash-separated groups of four."""
    return "-".join(normalized[i:i + GROUP] for i in range(0, len(normalized), GROUP))


def normalize(code: str) -> str | None:
    """Return the canonical form of a typed code, or None when it cannot be a code (length, characters)."""
    text = "".join(ch for ch in code.upper() if ch not in " -\t\n\r_").translate(_CONFUSABLE)
    if len(text) != LENGTH or any(ch not in ALPHABET for ch in text):
        return None
    return text


def hash_code(keys: InstanceKeys, identity_public_id: str, normalized: str) -> str:
    """Return the keyed hash stored for a normalised code of the person ``identity_public_id``."""
    return keys.keyed_hash(f"recovery:{identity_public_id}:{normalized}")
