"""Errors a remote world-model call can raise, one class per status code the server uses."""

from __future__ import annotations


class AdeptError(RuntimeError):
    """A call the server answered with an error; ``code`` is the gRPC status name, e.g. 'NOT_FOUND'."""

    code = "UNKNOWN"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class InvalidArgumentError(AdeptError, ValueError):
    """A bad request: wrong shape or dtype, NaN/inf or out-of-bounds actions, unknown option."""

    code = "INVALID_ARGUMENT"


class SessionNotFoundError(AdeptError, LookupError):
    """The session does not exist for this token: closed, expired, never created, or the server restarted."""

    code = "NOT_FOUND"


class UnauthenticatedError(AdeptError, PermissionError):
    """The server needs a bearer token (ADEPT_API_TOKEN) and got none or a wrong one."""

    code = "UNAUTHENTICATED"


class ResourceExhaustedError(AdeptError):
    """A limit was hit: too many sessions, num_envs, or a request larger than the message limit."""

    code = "RESOURCE_EXHAUSTED"


class FailedPreconditionError(AdeptError):
    """The call is valid but not now: e.g. a refit while one runs, stepping an env that needs reset."""

    code = "FAILED_PRECONDITION"


class ServerUnavailableError(AdeptError, ConnectionError):
    """The server could not be reached (after the retries)."""

    code = "UNAVAILABLE"


class DeadlineExceededError(AdeptError, TimeoutError):
    """The call did not finish within its deadline."""

    code = "DEADLINE_EXCEEDED"


_BY_CODE = {cls.code: cls for cls in (InvalidArgumentError, SessionNotFoundError, UnauthenticatedError,
                                      ResourceExhaustedError, FailedPreconditionError, ServerUnavailableError,
                                      DeadlineExceededError)}
_BY_CODE["PERMISSION_DENIED"] = UnauthenticatedError
_BY_CODE["OUT_OF_RANGE"] = InvalidArgumentError


def error_for(code: str, message: str) -> AdeptError:
    """Return the error instance for a status name such as 'INVALID_ARGUMENT' (AdeptError if unknown)."""
    cls = _BY_CODE.get(code.upper(), AdeptError)
    return cls(message, code.upper())
