"""Contracts of the MIE layer: the exceptions its services raise and the small values they return.

Every exception carries a French message meant for the person (``exc.message``) and a stable ``code``.
Authentication failures that must not reveal anything (unknown user, wrong password, locked account,
inactive identity) all raise :class:`InvalidCredentials` with one and the same message.
"""

from __future__ import annotations

from hospiconnect.errors import Conflict, HospiConnectError, NotFound, ValidationError
from hospiconnect.ratelimit import Locked, Throttled

__all__ = [
    "GENERIC_LOGIN_FAILURE", "AuthenticationFailed", "InvalidCredentials", "InvalidCode", "ReplayedCode",
    "ClockDrift", "InvalidRecoveryCode", "BurnedRecoveryCode", "NotEnrolled", "LastSecondFactor",
    "InvalidLabel", "MieNotFound", "InvalidMieTransition", "PasswordRejected", "Throttled", "Locked",
    "TooManyFailures",
]

GENERIC_LOGIN_FAILURE = "Identifiant ou mot de passe incorrect."

# The throttle's exceptions, under the names the authentication pages use.
TooManyFailures = Throttled


class AuthenticationFailed(HospiConnectError):
    """Base of the failures of an authentication attempt (each one has been counted and journaled)."""

    code = "authentication_failed"
    http_status = 401


class InvalidCredentials(AuthenticationFailed):
    """Unknown user, wrong password, locked account, inactive identity or password: one generic message."""

    code = "invalid_credentials"

    def __init__(self) -> None:
        super().__init__(GENERIC_LOGIN_FAILURE)


class InvalidCode(AuthenticationFailed):
    """A one-time code (TOTP) was refused."""

    code = "invalid_code"

    def __init__(self, message: str = "Code incorrect.") -> None:
        super().__init__(message)


class ReplayedCode(InvalidCode):
    """The code's time step has already been used (RFC 6238 §5.2: a code is accepted once)."""

    code = "replayed_code"

    def __init__(self) -> None:
        super().__init__("Ce code a déjà été utilisé. Attendez le code suivant de votre application.")


class ClockDrift(InvalidCode):
    """The code would be valid at a larger clock difference than the ±1 step accepted."""

    code = "clock_drift"

    def __init__(self) -> None:
        super().__init__("Code refusé : vérifiez l'heure de votre téléphone.")


class InvalidRecoveryCode(AuthenticationFailed):
    """The recovery code is not one of the person's current codes."""

    code = "invalid_recovery_code"

    def __init__(self, message: str = "Code de secours incorrect.") -> None:
        super().__init__(message)


class BurnedRecoveryCode(InvalidRecoveryCode):
    """The recovery code was valid but has already been used."""

    code = "burned_recovery_code"

    def __init__(self) -> None:
        super().__init__("Ce code de secours a déjà été utilisé.")


class NotEnrolled(AuthenticationFailed):
    """The person has no active MIE of the kind asked for."""

    code = "not_enrolled"

    def __init__(self, message: str = "Aucun moyen d'identification de ce type n'est actif sur votre compte.") -> None:
        super().__init__(message)


class LastSecondFactor(Conflict):
    """Removing this MIE would leave the person without any active second factor."""

    code = "last_second_factor"

    def __init__(self) -> None:
        super().__init__(
            "Impossible de retirer votre dernier second facteur : enregistrez d'abord un autre moyen "
            "d'identification (application ou clé de sécurité).")


class InvalidLabel(ValidationError):
    """An MIE label is empty, too long or contains control characters."""

    code = "invalid_label"

    def __init__(self, message: str) -> None:
        super().__init__(message, field="label", code=self.code)


class MieNotFound(NotFound):
    """No such MIE for this person (unknown id, or an MIE that belongs to someone else)."""

    code = "mie_not_found"

    def __init__(self) -> None:
        super().__init__("Moyen d'identification introuvable.")


class InvalidMieTransition(Conflict):
    """The MIE cannot move from its current status to the one asked for (a revoked MIE stays revoked)."""

    code = "invalid_mie_transition"


class PasswordRejected(ValidationError):
    """The new password breaks the policy; ``reasons`` lists every reason code, ``message`` the first one's."""

    code = "password_rejected"

    def __init__(self, reasons: list[str], messages: list[str]) -> None:
        super().__init__(messages[0], field="password", code=reasons[0])
        self.reasons = reasons
        self.messages = messages
