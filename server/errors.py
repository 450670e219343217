"""The one error type of the session core; each front-end maps ``code`` to its own status."""

from __future__ import annotations

HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "FAILED_PRECONDITION": 409,
    "RESOURCE_EXHAUSTED": 429,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}
"""gRPC status name -> HTTP status (413 is used instead of 429 for an oversized body)."""


class ServiceError(Exception):
    """A call answered with an error status: ``code`` is a gRPC status name, ``message`` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        """Return the HTTP status of this error."""
        return HTTP_STATUS.get(self.code, 500)


def invalid(message: str) -> ServiceError:
    """Return an INVALID_ARGUMENT error."""
    return ServiceError("INVALID_ARGUMENT", message)


def not_found(message: str) -> ServiceError:
    """Return a NOT_FOUND error."""
    return ServiceError("NOT_FOUND", message)
