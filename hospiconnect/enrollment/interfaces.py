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
    "IdentityNotEnrollable", "MieNotInCase",
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
