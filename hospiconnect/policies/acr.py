"""Levels of assurance (``acr``) and the MIE types of an authentication (pure).

The level names are the provider's (``hospiconnect.idp.checks.ACR_LEVELS``, the eIDAS levels as used by the
ANS and FranceConnect+). They are repeated here on purpose: policies may not import the provider, and a unit
test checks that both lists stay identical.

* ``eidas1`` — low: one factor (a password);
* ``eidas2`` — substantial: two factors, MIE issued after a verified identity check;
* ``eidas3`` — high: two factors resistant to sophisticated attacks (security key with PIN, CPS card).
"""

from __future__ import annotations

from typing import Iterable

#: Authentication context classes, lowest first.
ACR_LEVELS: tuple[str, ...] = ("eidas1", "eidas2", "eidas3")

#: Plain-French names of the levels, for messages.
ACR_LABELS_FR: dict[str, str] = {
    "eidas1": "eIDAS faible (un facteur)",
    "eidas2": "eIDAS substantiel (deux facteurs)",
    "eidas3": "eIDAS élevé (deux facteurs résistants)",
}

#: MIE types the product knows. ``password``, ``totp`` and ``webauthn`` are issued by the establishment
#: (hospiconnect.authenticators.models.MIE_TYPES); ``cps`` (smart card) and ``e-cps`` (mobile app) are
#: issued by the ANS and reach the establishment through Pro Santé Connect.
MIE_TYPE_NAMES: tuple[str, ...] = ("password", "totp", "webauthn", "cps", "e-cps")

# RFC 8176 values produced by this product's own authenticators (hospiconnect.authenticators.amr).
_AMR_TO_MIE_TYPE = {"pwd": "password", "otp": "totp", "hwk": "webauthn"}


def acr_rank(acr: str | None) -> int:
    """Return the position of ``acr`` in :data:`ACR_LEVELS`; -1 for an absent or unknown value (below all)."""
    try:
        return ACR_LEVELS.index(acr) if acr is not None else -1
    except ValueError:
        return -1


def mie_types_from_amr(amr: Iterable[str]) -> frozenset[str]:
    """Return the local MIE types that an ``amr`` produced by HospiConnect's own authenticators reveals.

    ``pwd`` → ``password``, ``otp`` → ``totp``, ``hwk`` → ``webauthn``. National MIE (``cps``, ``e-cps``) cannot
    be told from ``amr`` (a CPS card also gives ``hwk``): a caller that knows them passes them explicitly.
    """
    return frozenset(_AMR_TO_MIE_TYPE[value] for value in amr if value in _AMR_TO_MIE_TYPE)
