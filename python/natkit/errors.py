"""natkit's exceptions: every one is a :class:`natkit.Error`."""

from __future__ import annotations


class Error(Exception):
    """Base class of natkit's errors. ``code`` is a machine-readable code when there is one."""

    code: str | None = None


class ProbeError(Error):
    """The NAT probe could not run (a name that does not resolve, no route to the server)."""

    code = "probe-failed"


class Timeout(Error, TimeoutError):
    """A step did not finish in time; ``stage`` names it (``probe``, ``join``, ...)."""

    code = "timeout"

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage


class TokenError(Error, ValueError):
    """A join token was refused: malformed, forged, expired, or for another room."""

    code = "unauthorized"
