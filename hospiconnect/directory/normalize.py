"""Name normalisation used for duplicate detection and matching (pure).

Two spellings of one name compare equal when they differ only by case, accents, hyphens, apostrophes
or spacing: « Lefèvre-Durand », « LEFEVRE DURAND » and « lefevre  durand » normalise to one key.
"""

from __future__ import annotations

import re
import unicodedata

_LIGATURES = str.maketrans({"œ": "oe", "Œ": "OE", "æ": "ae", "Æ": "AE", "ß": "ss"})
_SEPARATORS = re.compile(r"[\s\-‐‑‒–—'’`´.]+")


def normalize_name(value: str) -> str:
    """Return the comparison key of a name: lower case, no accents, one space between parts."""
    text = unicodedata.normalize("NFKD", value.translate(_LIGATURES))
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = text.casefold()
    text = _SEPARATORS.sub(" ", text)
    return text.strip()


def first_given_name(given_names: str) -> str:
    """Return the first of the given names (the names are separated by spaces or commas)."""
    parts = [p for p in re.split(r"[\s,]+", given_names.strip()) if p]
    return parts[0] if parts else ""
