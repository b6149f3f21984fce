"""What a person's identity verification amounts to, in plain French (pure: no Flask, no database).

:func:`summarize` takes the identity checks recorded for a person (by enrollment cases, or on an MIE as
``Mie.proofing_method``/``proofing_at``) and the person's MIE, and returns a :class:`VerificationSummary`:
the last identity check, the level it gives, and each MIE with the check that preceded its activation.

The level follows DOMAIN.md: a face-to-face check of an identity document, or a FranceConnect+ check
(eIDAS *substantial*, ``eidas2``), makes the identity verified at the level « substantiel »; with no such
check there is « aucune vérification ». Its wording is the one the desk and the directory pages show.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Iterable

from hospiconnect.enrollment.workflow import DOCUMENT_LABELS_FR, METHOD_FACE_TO_FACE, METHOD_FCPLUS

LEVEL_SUBSTANTIAL = "substantial"
LEVEL_NONE = "none"

LEVEL_LABELS_FR = {LEVEL_SUBSTANTIAL: "substantiel", LEVEL_NONE: "aucune vérification"}
LEVEL_EXPLANATIONS_FR = {
    LEVEL_SUBSTANTIAL: "Identité vérifiée en face à face ou par FranceConnect+ (niveau eIDAS substantiel).",
    LEVEL_NONE: "Aucune vérification d'identité enregistrée : un moyen d'identification ne peut être remis "
                "qu'après une vérification en face à face ou par FranceConnect+.",
}
METHOD_LABELS_FR = {METHOD_FACE_TO_FACE: "en face à face, sur pièce d'identité",
                    METHOD_FCPLUS: "à distance, par FranceConnect+"}
# The wording the desk already used on each MIE (« identité vérifiée en face à face au guichet »).
PROOFING_LABELS_FR = {METHOD_FACE_TO_FACE: "vérifiée en face à face au guichet",
                      METHOD_FCPLUS: "vérifiée par FranceConnect+"}
MIE_TYPE_LABELS_FR = {"password": "Mot de passe", "totp": "Application d'authentification (TOTP)",
                      "webauthn": "Clé de sécurité", "cps": "Carte CPS (Pro Santé Connect)",
                      "e-cps": "Application e-CPS (Pro Santé Connect)"}
MIE_STATUS_LABELS_FR = {"pending": "En attente", "active": "Actif", "suspended": "Suspendu", "revoked": "Retiré"}
FCPLUS_VERIFIER = "FranceConnect+"

# The checks that give the level « substantiel » (DOMAIN.md: face to face, or an eIDAS substantial MIE).
_SUBSTANTIAL_METHODS = frozenset({METHOD_FACE_TO_FACE, METHOD_FCPLUS})


@dataclasses.dataclass(frozen=True)
class IdentityCheck:
    """One verified identity check.

    ``officer`` names the registration officer of a face-to-face check when it is known; ``case`` is the
    public id of the enrollment case that recorded it (None when only an MIE's proofing record is known,
    e.g. an MIE of the demo data)."""

    method: str
    checked_at: dt.datetime
    officer: str | None = None
    place: str | None = None
    document_type: str | None = None
    case: str | None = None

    @property
    def method_label(self) -> str:
        return METHOD_LABELS_FR.get(self.method, self.method)

    @property
    def document_label(self) -> str | None:
        if not self.document_type:
            return None
        return DOCUMENT_LABELS_FR.get(self.document_type, self.document_type)

    @property
    def verified_by(self) -> str | None:
        """Who vouched for the identity: the officer, or FranceConnect+; None when unknown."""
        if self.method == METHOD_FCPLUS:
            return FCPLUS_VERIFIER
        return self.officer


@dataclasses.dataclass(frozen=True)
class MieFacts:
    """What the summary needs of one MIE (the fields of ``authenticators.models.Mie``)."""

    public_id: str
    type: str
    label: str
    status: str
    created_at: dt.datetime
    proofing_method: str | None = None
    proofing_at: dt.datetime | None = None
    activated_at: dt.datetime | None = None
    last_used_at: dt.datetime | None = None


@dataclasses.dataclass(frozen=True)
class MieLine:
    """One MIE as shown: its type, label and status in French, the identity check that preceded its
    activation (``proofing_label`` None: none was recorded) and its last use."""

    public_id: str
    type: str
    type_label: str
    label: str
    status: str
    status_label: str
    proofing_method: str | None
    proofing_label: str | None
    proofing_at: dt.datetime | None
    activated_at: dt.datetime | None
    last_used_at: dt.datetime | None


@dataclasses.dataclass(frozen=True)
class VerificationSummary:
    """A person's identity verification: the last check (None: never verified), its level and the MIE."""

    last_check: IdentityCheck | None
    level: str
    mies: tuple[MieLine, ...]

    @property
    def level_label(self) -> str:
        return LEVEL_LABELS_FR[self.level]

    @property
    def level_explanation(self) -> str:
        return LEVEL_EXPLANATIONS_FR[self.level]

    @property
    def verified(self) -> bool:
        return self.level != LEVEL_NONE


def level_of(check: IdentityCheck | None) -> str:
    """Return the level that ``check`` gives: :data:`LEVEL_SUBSTANTIAL` or :data:`LEVEL_NONE`."""
    if check is not None and check.method in _SUBSTANTIAL_METHODS:
        return LEVEL_SUBSTANTIAL
    return LEVEL_NONE


def _aware(value: dt.datetime) -> dt.datetime:
    # Stored timestamps are UTC; SQLite may hand them back naive.
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.timezone.utc)


def _mie_line(mie: MieFacts) -> MieLine:
    proofed = mie.proofing_method in _SUBSTANTIAL_METHODS
    return MieLine(
        public_id=mie.public_id, type=mie.type, type_label=MIE_TYPE_LABELS_FR.get(mie.type, mie.type),
        label=mie.label, status=mie.status, status_label=MIE_STATUS_LABELS_FR.get(mie.status, mie.status),
        proofing_method=mie.proofing_method if proofed else None,
        proofing_label=PROOFING_LABELS_FR[mie.proofing_method] if proofed and mie.proofing_method else None,
        proofing_at=mie.proofing_at if proofed else None, activated_at=mie.activated_at,
        last_used_at=mie.last_used_at)


def summarize(checks: Iterable[IdentityCheck], mies: Iterable[MieFacts]) -> VerificationSummary:
    """Return the :class:`VerificationSummary` of a person.

    ``checks``: the verified identity checks of the person's enrollment cases, in any order (a cancelled or
    rejected case's check must not be given: it does not stand). The proofing records of ``mies`` count as
    checks too — they are what the identity provider relies on when it computes ``acr`` — unless a case's
    check already describes them (same method and time), so that the officer is not lost. The last check is
    the most recent one; the MIE keep the order given (oldest first, as listed by the MIE layer).
    """
    mie_list = list(mies)
    known = [c for c in checks if c.method in _SUBSTANTIAL_METHODS]
    described = {(c.method, _aware(c.checked_at)) for c in known}
    for mie in mie_list:
        if mie.proofing_method in _SUBSTANTIAL_METHODS and mie.proofing_at is not None and \
                (mie.proofing_method, _aware(mie.proofing_at)) not in described:
            known.append(IdentityCheck(method=mie.proofing_method, checked_at=mie.proofing_at))
            described.add((mie.proofing_method, _aware(mie.proofing_at)))
    # On equal times, a case's check (it names the officer) wins over a bare proofing record.
    last = max(known, key=lambda c: (_aware(c.checked_at), c.case is not None), default=None)
    return VerificationSummary(last_check=last, level=level_of(last), mies=tuple(_mie_line(m) for m in mie_list))
