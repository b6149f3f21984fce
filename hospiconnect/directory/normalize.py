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
    # Folding, decomposition and ligatures feed each other (« İ » folds to i + a combining dot, « Ǽ » only
    # becomes « æ » once its accent is gone, « 𝛢 » decomposes to a capital): repeat until nothing changes.
    text = value
    for _ in range(4):
        folded = unicodedata.normalize("NFKD", text.casefold())
        folded = "".join(ch for ch in folded if not unicodedata.combining(ch)).translate(_LIGATURES)
        if folded == text:
            break
        text = folded
    text = _SEPARATORS.sub(" ", text)
    return text.strip()


def first_given_name(given_names: str) -> str:
    """Return the first of the given names (the names are separated by spaces or commas)."""
    parts = [p for p in re.split(r"[\s,]+", given_names.strip()) if p]
    return parts[0] if parts else ""
