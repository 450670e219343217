"""The one error type of the session core; each front-end maps ``code`` to its own status.

``answer_for`` is the one place where any exception raised while answering a call becomes what the
caller sees, on both transports: a ``ServiceError`` as it is; the errors bad input raises from
deep inside (ValueError, TypeError, OverflowError, RecursionError) INVALID_ARGUMENT; MemoryError
RESOURCE_EXHAUSTED; anything else INTERNAL with a request id only, its traceback logged under that id.
Messages are bounded (``MAX_MESSAGE``) and carry no absolute paths.
"""

from __future__ import annotations

import logging
import re
import secrets

log = logging.getLogger("adept.server")

HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "FAILED_PRECONDITION": 409,
    "RESOURCE_EXHAUSTED": 429,
    "INTERNAL": 500,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}
"""gRPC status name -> HTTP status (413 is used instead of 429 for an oversized body)."""

MAX_MESSAGE = 1000
"""Characters of an error message a caller gets at most."""

CLIENT_ERRORS = (ValueError, TypeError, OverflowError, RecursionError)
"""What a request's values raise when they are wrong in a way no explicit check caught."""

# An absolute POSIX path of two or more parts (/tmp/adept-policy-x/policy.json): not after a word
# character, '.', '/' or '~', so 'application/x-protobuf', '1/2' and 'a/b' are left alone.
_PATH = re.compile(r"(?<![\w./~-])/(?:[^\s'\"/:,;()\[\]{}<>]+/)+[^\s'\"/:,;()\[\]{}<>]*")


def public(message: str) -> str:
    """Return ``message`` fit for a caller: absolute paths replaced by '<path>', at most MAX_MESSAGE characters."""
    message = _PATH.sub("<path>", str(message))
    if len(message) > MAX_MESSAGE:
        cut = " ... (truncated)"
        message = message[:MAX_MESSAGE - len(cut)] + cut
    return message


class ServiceError(Exception):
    """A call answered with an error status: ``code`` is a gRPC status name, ``message`` says why.

    The message is passed through ``public``: bounded, with no server paths.
    """

    def __init__(self, code: str, message: str) -> None:
        message = public(message)
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


def request_id() -> str:
    """Return a fresh id that ties an answer to its server log line, e.g. '3f9c2a1b'."""
    return secrets.token_hex(4)


def answer_for(exc: BaseException, call: str) -> ServiceError:
    """Return the error a caller gets for ``exc``, raised while answering ``call`` (logged unless a ServiceError)."""
    if isinstance(exc, ServiceError):
        return exc
    rid = request_id()
    if isinstance(exc, CLIENT_ERRORS):
        # No check caught this value first: answer INVALID_ARGUMENT, and keep the traceback (a missing check).
        log.warning("%s: request %s rejected: %s: %s", call, rid, type(exc).__name__, exc, exc_info=exc)
        text = "maximum nesting depth exceeded" if isinstance(exc, RecursionError) else str(exc)
        return invalid(f"invalid request ({type(exc).__name__}: {text[:300]}) (request id {rid})")
    if isinstance(exc, MemoryError):
        log.error("%s: request %s ran out of memory", call, rid, exc_info=exc)
        return ServiceError("RESOURCE_EXHAUSTED", f"the request needs more memory than the server has "
                                                  f"(request id {rid})")
    log.error("%s failed (request id %s)", call, rid, exc_info=exc)
    return ServiceError("INTERNAL", f"internal error (request id {rid})")
