"""natkit's exceptions: every one is a :class:`natkit.Error`."""

from __future__ import annotations


class Error(Exception):
    """Base class of natkit's errors. ``code`` is a machine-readable code when there is one."""

    code: str | None = None


class ProbeError(Error):
    """The NAT probe could not run (a name that does not resolve, no route to the server)."""

    code = "probe-failed"


class NoStunServer(ProbeError):
    """The STUN server's host answered that nothing listens on its port (ICMP port unreachable
    from the server itself): a wrong port or a stopped server, a configuration error and not a
    NAT verdict. A session whose handed-out STUN URL says so fails with stage ``config``."""

    code = "no-stun-server"


class Timeout(Error, TimeoutError):
    """A step did not finish in time; ``stage`` names it (``probe``, ``join``, ...)."""

    code = "timeout"

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(message)
        self.stage = stage


class TokenError(Error, ValueError):
    """A join token was refused: malformed, forged, expired, or for another room."""

    code = "unauthorized"
