"""Domain errors shared by every part. Each carries a stable code and a French message for people."""

from __future__ import annotations


class HospiConnectError(Exception):
    """Base of every expected error: bad input, a refused operation, a missing object."""

    code = "error"
    http_status = 400

    def __init__(self, message: str, *, code: str | None = None, details: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details or {}


class ValidationError(HospiConnectError):
    code = "invalid"
    http_status = 400

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None,
                 errors: dict[str, str] | None = None) -> None:
        super().__init__(message, code=code)
        self.field = field
        self.errors = errors or ({field: message} if field else {})


class NotFound(HospiConnectError):
    code = "not_found"
    http_status = 404


class Conflict(HospiConnectError):
    code = "conflict"
    http_status = 409


class PreconditionFailed(HospiConnectError):
    code = "precondition_failed"
    http_status = 412


class Forbidden(HospiConnectError):
    code = "forbidden"
    http_status = 403


class ServiceUnavailable(HospiConnectError):
    code = "unavailable"
    http_status = 503
