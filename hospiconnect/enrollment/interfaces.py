"""Contracts of enrollment: the exceptions its workflow and services raise.

Every exception carries a French message meant for people (``exc.message``) and a stable ``code``.
This module depends on nothing but :mod:`hospiconnect.errors`, so the pure workflow can use it.
"""

from __future__ import annotations

from hospiconnect.errors import Conflict, Forbidden, HospiConnectError, NotFound, ValidationError

__all__ = [
    "EnrollmentError", "TransitionRefused", "SeparationOfDuties", "DocumentRefused", "CaseNotFound",
    "InvalidLostMie", "ActivationCodeRefused", "WrongActivationCode", "ExpiredActivationCode",
    "ReusedActivationCode", "DeadActivationCode", "ReplacedActivationCode", "ClosedCaseActivationCode",
    "IdentityNotEnrollable", "MieNotInCase", "InvitationNotSent", "InvitationRefused", "UnknownInvitation",
    "ExpiredInvitation", "ReplacedInvitation", "UsedInvitation", "ClosedCaseInvitation",
]


class EnrollmentError(HospiConnectError):
    """Base of every refusal of the enrollment workflow."""

    code = "enrollment_error"


class TransitionRefused(EnrollmentError, Conflict):
    """The case cannot take this step from its current state (``state``, ``event``)."""

    code = "transition_refused"
    http_status = 409

    def __init__(self, message: str, *, state: str, event: str) -> None:
        super().__init__(message)
        self.state = state
        self.event = event


class SeparationOfDuties(EnrollmentError, Forbidden):
    """An officer tried to enroll or check their own identity."""

    code = "separation_of_duties"
    http_status = 403

    def __init__(self) -> None:
        super().__init__(
            "Séparation des tâches : un agent d'enrôlement ne peut pas enrôler sa propre identité. "
            "Demandez à un autre agent de traiter ce dossier.")


class DocumentRefused(EnrollmentError, ValidationError):
    """The identity document presented cannot be accepted (``field`` says which part)."""

    code = "document_refused"

    def __init__(self, message: str, *, field: str, reason: str) -> None:
        ValidationError.__init__(self, message, field=field, code=self.code)
        self.reason = reason


class CaseNotFound(EnrollmentError, NotFound):
    """No such enrollment case."""

    code = "case_not_found"
    http_status = 404

    def __init__(self) -> None:
        super().__init__("Dossier d'enrôlement introuvable.")


class InvalidLostMie(EnrollmentError, ValidationError):
    """A replacement case names no MIE, or an MIE of someone else."""

    code = "invalid_lost_mie"

    def __init__(self, message: str = "Indiquez le moyen d'identification perdu ou volé de cette personne.") -> None:
        ValidationError.__init__(self, message, field="lost_mie", code=self.code)


class ActivationCodeRefused(EnrollmentError):
    """Base of the refusals of an activation code (each one is journaled)."""

    code = "activation_code_refused"
    http_status = 400


class WrongActivationCode(ActivationCodeRefused):
    code = "wrong_activation_code"

    def __init__(self) -> None:
        super().__init__("Code d'activation incorrect. Vérifiez le code inscrit sur votre fiche d'activation.")


class ExpiredActivationCode(ActivationCodeRefused):
    code = "expired_activation_code"

    def __init__(self) -> None:
        super().__init__("Ce code d'activation a expiré. Présentez-vous au guichet d'enrôlement pour en obtenir "
                         "un nouveau.")


class ReusedActivationCode(ActivationCodeRefused):
    code = "reused_activation_code"

    def __init__(self) -> None:
        super().__init__("Ce code d'activation a déjà été utilisé. Il ne sert qu'une fois.")


class DeadActivationCode(ActivationCodeRefused):
    """Too many wrong attempts on this code: it no longer works, even correctly typed."""

    code = "dead_activation_code"

    def __init__(self) -> None:
        super().__init__("Trop d'essais incorrects : ce code d'activation est désormais inutilisable. "
                         "Présentez-vous au guichet d'enrôlement pour en obtenir un nouveau.")


class ReplacedActivationCode(ActivationCodeRefused):
    code = "replaced_activation_code"

    def __init__(self) -> None:
        super().__init__("Ce code d'activation a été remplacé par un code plus récent : utilisez la dernière "
                         "fiche d'activation remise.")


class ClosedCaseActivationCode(ActivationCodeRefused):
    """The code belongs to a case that was cancelled, rejected or already activated."""

    code = "closed_case_activation_code"

    def __init__(self) -> None:
        super().__init__("Ce code d'activation n'est plus valable : le dossier d'enrôlement a été clos. "
                         "Présentez-vous au guichet d'enrôlement.")


class IdentityNotEnrollable(EnrollmentError, Conflict):
    """The identity cannot be enrolled in its current status (departed, suspended)."""

    code = "identity_not_enrollable"
    http_status = 409


class MieNotInCase(EnrollmentError, Conflict):
    """The MIE to activate does not belong to the case's person, or can no longer be activated."""

    code = "mie_not_in_case"
    http_status = 409


# --- Remote enrollment (invitation e-mail, then FranceConnect+) ------------------------------------------


class InvitationNotSent(EnrollmentError, Conflict):
    """An invitation cannot be sent for this case (``reason``: fcplus_disabled, not_opened, case_expired,
    identity_<status>, no_email)."""

    code = "invitation_not_sent"
    http_status = 409

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class InvitationRefused(EnrollmentError):
    """Base of the refusals of an invitation link (each one is journaled)."""

    code = "invitation_refused"
    http_status = 400
    reason = "refused"


class UnknownInvitation(InvitationRefused):
    code = "unknown_invitation"
    http_status = 404
    reason = "unknown"

    def __init__(self) -> None:
        super().__init__("Ce lien d'invitation n'est pas valable. Vérifiez que l'adresse ouverte est complète "
                         "(copiez-la depuis le message reçu), ou contactez le guichet d'enrôlement.")


class ExpiredInvitation(InvitationRefused):
    code = "expired_invitation"
    http_status = 410
    reason = "expired"

    def __init__(self) -> None:
        super().__init__("Cette invitation a expiré. Demandez une nouvelle invitation au guichet d'enrôlement, "
                         "ou présentez-vous au guichet avec une pièce d'identité.")


class ReplacedInvitation(InvitationRefused):
    code = "replaced_invitation"
    http_status = 410
    reason = "replaced"

    def __init__(self) -> None:
        super().__init__("Cette invitation a été remplacée par une invitation plus récente : utilisez le lien du "
                         "dernier message reçu.")


class UsedInvitation(InvitationRefused):
    code = "used_invitation"
    http_status = 410
    reason = "used"

    def __init__(self) -> None:
        super().__init__("Cette invitation a déjà servi : la vérification d'identité a été faite. Si votre "
                         "moyen d'identification n'est pas activé, contactez le guichet d'enrôlement.")


class ClosedCaseInvitation(InvitationRefused):
    """The invitation's case is no longer ``opened`` (cancelled, rejected, checked at the desk, activated), or
    its person was suspended or left."""

    code = "closed_case_invitation"
    http_status = 410
    reason = "case_closed"

    def __init__(self) -> None:
        super().__init__("Cette invitation n'est plus valable : le dossier d'enrôlement correspondant a été clos "
                         "ou traité au guichet. Contactez le guichet d'enrôlement, ou présentez-vous-y avec une "
                         "pièce d'identité.")
