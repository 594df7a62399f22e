"""shoal's exception tree.

    ShoalError                      anything shoal raises on purpose
    ├── InvalidArgument             bad input: flags, API bodies, specs (HTTP 400)
    ├── NotFound                    unknown object reference (HTTP 404)
    ├── Ambiguous                   an ID prefix that matches several objects (HTTP 400)
    ├── Conflict                    name taken, port in use (HTTP 409 / 400 like Docker)
    ├── OutOfSequence               stale Version.Index on update (HTTP 409; dockerd says 500)
    ├── Unavailable                 not in a swarm, not a manager, no leader (HTTP 503)
    ├── NotSupported                an endpoint or option shoal does not implement (HTTP 400)
    └── APIError                    an error answered by a daemon, seen from a client

Third-party exceptions are translated at the boundary (`raise ... from exc`).
"""

from __future__ import annotations

__all__ = [
    "APIError",
    "Ambiguous",
    "Conflict",
    "InvalidArgument",
    "NotFound",
    "NotSupported",
    "OutOfSequence",
    "ShoalError",
    "Unavailable",
]


class ShoalError(Exception):
    """Base of every error shoal raises on purpose. `status` is the HTTP status it maps to."""

    status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(ShoalError):
    status = 400


class NotFound(ShoalError):
    status = 404


class Ambiguous(ShoalError):
    status = 400


class Conflict(ShoalError):
    status = 409


class OutOfSequence(ShoalError):
    # dockerd answers 500 with the same message; clients act on the message, not the code,
    # and a stale version is the client's error, so shoal keeps 5xx for its own faults
    status = 409


class Unavailable(ShoalError):
    status = 503


class NotSupported(ShoalError):
    # a refusal, not a fault: 5xx answers are kept for shoal's own failures
    status = 400


class APIError(ShoalError):
    """An error response from a daemon: its HTTP status and its `message`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
