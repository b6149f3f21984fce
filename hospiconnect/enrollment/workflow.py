"""The enrollment case as a pure state machine (no Flask, no database).

A case goes ``opened → identity_verified → mie_issued → activated``; it may end ``expired``,
``cancelled`` or ``rejected``. Every allowed step and its guard is in :data:`TRANSITIONS`, and
:func:`next_state` is the only place that decides: the services build :class:`CaseFacts` from the stored
case and apply what this module returns.

Rules enforced here (DOMAIN.md, SECURITY.md items 17 and 18):

* an MIE is issued only after an identity check, face to face or through FranceConnect+ (eIDAS
  substantial) — for every kind of case, so a replacement after loss or theft always has a fresh check;
* a replacement may be checked only once the lost MIE has been revoked;
* an activation code is redeemed before a face-to-face case is activated (an FC+ case is activated in the
  person's own session, right after the check);
* nothing moves once the case has passed its expiry date except to ``expired`` or ``cancelled``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Callable

from hospiconnect.enrollment.interfaces import DocumentRefused, TransitionRefused

# --- Vocabulary -------------------------------------------------------------------------------------------

OPENED = "opened"
IDENTITY_VERIFIED = "identity_verified"
MIE_ISSUED = "mie_issued"
ACTIVATED = "activated"
EXPIRED = "expired"
CANCELLED = "cancelled"
REJECTED = "rejected"
STATES = (OPENED, IDENTITY_VERIFIED, MIE_ISSUED, ACTIVATED, EXPIRED, CANCELLED, REJECTED)
FINAL_STATES = frozenset({ACTIVATED, EXPIRED, CANCELLED, REJECTED})

KIND_FIRST_MIE = "first_mie"
KIND_ADDITIONAL_MIE = "additional_mie"
KIND_REPLACEMENT = "replacement"
KINDS = (KIND_FIRST_MIE, KIND_ADDITIONAL_MIE, KIND_REPLACEMENT)

METHOD_FACE_TO_FACE = "face_to_face"
METHOD_FCPLUS = "fcplus"
METHODS = (METHOD_FACE_TO_FACE, METHOD_FCPLUS)

# Events (what happened), in the order of a normal case.
VERIFY_IDENTITY = "verify_identity"
REJECT = "reject"
ISSUE_MIE = "issue_mie"  # an activation code was handed out (face to face) or the remote issuance began (FC+)
ACTIVATE = "activate"
EXPIRE = "expire"
CANCEL = "cancel"
EVENTS = (VERIFY_IDENTITY, REJECT, ISSUE_MIE, ACTIVATE, EXPIRE, CANCEL)

DOCUMENT_TYPES = ("cni", "passport", "residence_permit", "driving_licence")
DOCUMENT_LABELS_FR = {"cni": "carte nationale d'identité", "passport": "passeport",
                      "residence_permit": "titre de séjour", "driving_licence": "permis de conduire"}

STATE_LABELS_FR = {
    OPENED: "ouvert", IDENTITY_VERIFIED: "identité vérifiée", MIE_ISSUED: "moyen d'identification remis",
    ACTIVATED: "activé", EXPIRED: "expiré", CANCELLED: "annulé", REJECTED: "refusé",
}
EVENT_LABELS_FR = {
    VERIFY_IDENTITY: "vérifier l'identité", REJECT: "refuser le dossier",
    ISSUE_MIE: "remettre le moyen d'identification",
    ACTIVATE: "activer le moyen d'identification", EXPIRE: "clore le dossier expiré", CANCEL: "annuler le dossier",
}


@dataclasses.dataclass(frozen=True)
class CaseFacts:
    """What the guards need to know about a case at the moment of an event.

    ``identity_check_method`` is the method of the check being recorded (for ``verify_identity``) or the
    one already recorded (for later events). ``past_expiry`` says whether the case's deadline has passed.
    """

    state: str
    kind: str = KIND_FIRST_MIE
    identity_check_method: str | None = None
    lost_mie_revoked: bool = False
    code_redeemed: bool = False
    past_expiry: bool = False


Guard = Callable[[CaseFacts], str | None]  # returns None when allowed, else the French reason


def _not_past_expiry(facts: CaseFacts) -> str | None:
    if facts.past_expiry:
        return "Ce dossier d'enrôlement a expiré : ouvrez-en un nouveau."
    return None


def _guard_verify(facts: CaseFacts) -> str | None:
    if facts.identity_check_method not in METHODS:
        return ("La vérification d'identité doit se faire en face à face sur pièce d'identité ou par "
                "FranceConnect+.")
    if facts.kind == KIND_REPLACEMENT and not facts.lost_mie_revoked:
        return "Le moyen d'identification perdu ou volé doit être révoqué avant toute nouvelle vérification."
    return _not_past_expiry(facts)


def _guard_issue(facts: CaseFacts) -> str | None:
    if facts.identity_check_method not in METHODS:
        return "Aucune vérification d'identité n'est enregistrée pour ce dossier."
    return _not_past_expiry(facts)


def _guard_activate(facts: CaseFacts) -> str | None:
    if facts.identity_check_method == METHOD_FACE_TO_FACE and not facts.code_redeemed:
        return "Le code d'activation doit être saisi avant l'activation du moyen d'identification."
    if facts.identity_check_method not in METHODS:
        return "Aucune vérification d'identité n'est enregistrée pour ce dossier."
    return _not_past_expiry(facts)


def _guard_expire(facts: CaseFacts) -> str | None:
    if not facts.past_expiry:
        return "Ce dossier n'a pas encore atteint sa date d'expiration."
    return None


def _always(facts: CaseFacts) -> str | None:
    return None


# (state, event) -> (new state, guard). Any pair absent from this table is refused.
TRANSITIONS: dict[tuple[str, str], tuple[str, Guard]] = {
    (OPENED, VERIFY_IDENTITY): (IDENTITY_VERIFIED, _guard_verify),
    (OPENED, REJECT): (REJECTED, _always),
    (OPENED, EXPIRE): (EXPIRED, _guard_expire),
    (OPENED, CANCEL): (CANCELLED, _always),
    (IDENTITY_VERIFIED, ISSUE_MIE): (MIE_ISSUED, _guard_issue),
    (IDENTITY_VERIFIED, EXPIRE): (EXPIRED, _guard_expire),
    (IDENTITY_VERIFIED, CANCEL): (CANCELLED, _always),
    # Issuing again (a lost activation sheet) keeps the case where it is; the service voids the old code.
    (MIE_ISSUED, ISSUE_MIE): (MIE_ISSUED, _guard_issue),
    (MIE_ISSUED, ACTIVATE): (ACTIVATED, _guard_activate),
    (MIE_ISSUED, EXPIRE): (EXPIRED, _guard_expire),
    (MIE_ISSUED, CANCEL): (CANCELLED, _always),
}


def next_state(facts: CaseFacts, event: str) -> str:
    """Return the state the case moves to when ``event`` happens.

    Raises :class:`TransitionRefused` (French message, ``state`` and ``event`` attributes) when the step is
    not in :data:`TRANSITIONS` or its guard refuses it, and ``ValueError`` for an unknown state, kind or event
    (a programming error, not a person's).
    """
    if facts.state not in STATES:
        raise ValueError(f"unknown enrollment state {facts.state!r}")
    if facts.kind not in KINDS:
        raise ValueError(f"unknown enrollment kind {facts.kind!r}")
    if event not in EVENTS:
        raise ValueError(f"unknown enrollment event {event!r}")
    entry = TRANSITIONS.get((facts.state, event))
    if entry is None:
        if facts.state in FINAL_STATES:
            message = f"Ce dossier est clos (« {STATE_LABELS_FR[facts.state]} ») : aucune action n'est plus possible."
        else:
            message = (f"Impossible de {EVENT_LABELS_FR[event]} : le dossier est à l'état "
                       f"« {STATE_LABELS_FR[facts.state]} ».")
        raise TransitionRefused(message, state=facts.state, event=event)
    target, guard = entry
    reason = guard(facts)
    if reason is not None:
        raise TransitionRefused(reason, state=facts.state, event=event)
    return target


# --- Face-to-face document check --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DocumentCheck:
    """A document check as accepted: normalised values, never the full number nor any image."""

    document_type: str
    issuing_country: str
    expiry_date: dt.date
    last4: str


def check_document(*, document_type: str, issuing_country: str, expiry_date: dt.date | None, last4: str,
                   today: dt.date) -> DocumentCheck:
    """Return the normalised :class:`DocumentCheck` for the document presented.

    ``issuing_country`` is an ISO 3166-1 alpha-3 code (as printed in the document's machine-readable zone)
    or alpha-2; ``last4`` the last 4 letters or digits of the document number. A document that expires
    before ``today`` is refused. Raises :class:`DocumentRefused` (``field`` and ``reason``) otherwise.
    """
    doc_type = (document_type or "").strip().lower()
    if doc_type not in DOCUMENT_TYPES:
        raise DocumentRefused("Type de pièce non accepté : carte d'identité, passeport, titre de séjour ou "
                              "permis de conduire.", field="document_type", reason="unknown_type")
    country = (issuing_country or "").strip().upper()
    if not (country.isascii() and country.isalpha() and len(country) in (2, 3)):
        raise DocumentRefused("Indiquez le pays de délivrance par son code (FRA, FR…).", field="issuing_country",
                              reason="bad_country")
    if expiry_date is None:
        raise DocumentRefused("Indiquez la date d'expiration de la pièce.", field="expiry_date",
                              reason="missing_expiry")
    if expiry_date < today:
        raise DocumentRefused(
            f"Pièce expirée le {expiry_date.strftime('%d/%m/%Y')} : elle ne peut pas servir à vérifier l'identité.",
            field="expiry_date", reason="expired")
    tail = "".join((last4 or "").split()).upper()
    # Exactly 4 characters: asking for more would let the full number creep into the database.
    if len(tail) != 4 or not (tail.isascii() and tail.isalnum()):
        raise DocumentRefused("Saisissez les 4 derniers caractères du numéro de la pièce (lettres ou chiffres).",
                              field="last4", reason="bad_last4")
    return DocumentCheck(doc_type, country, expiry_date, tail)
