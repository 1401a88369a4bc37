"""natkit for Python: natkit's NAT probe, pair rule and join tokens, from its Rust core.

- ``await natkit.probe(server, *more, timeout=3.0)`` -> :class:`NatReport`
- ``natkit.pair_rule(local, remote, relay="auto", role="answerer")`` -> :class:`PairDecision`
- ``natkit.mint_token(secret, room, ttl=3600)`` / ``natkit.verify_token(secret, token)``
- ``natkit.connect(signal_url, room=...)`` -> :class:`Session`; ``await session.channel()`` ->
  :class:`Channel`: a data channel to a partner, the path decided as natkit-peer decides it
- :class:`NatkitSignaling`: aiortc's signaling interface over natkit-signal

Errors are :class:`natkit.Error` subclasses. ``python -m natkit probe HOST:PORT`` runs the probe
from a shell. See python/README.md.
"""

from ._natkit import __version__
from .errors import Error, NoStunServer, ProbeError, Timeout, TokenError
from .probe import NatReport, probe, probe_blocking
from .rule import PairDecision, RelayMode, Role, pair_rule
from .session import Channel, ChannelClosed, Path, Session, SessionError, connect
from .signaling import NatkitSignaling, SignalingError
from .tokens import mint_token, verify_token

__all__ = [
    "Channel",
    "ChannelClosed",
    "Path",
    "Session",
    "SessionError",
    "connect",
    "Error",
    "NatReport",
    "NatkitSignaling",
    "NoStunServer",
    "PairDecision",
    "ProbeError",
    "RelayMode",
    "Role",
    "SignalingError",
    "Timeout",
    "TokenError",
    "__version__",
    "mint_token",
    "pair_rule",
    "probe",
    "probe_blocking",
    "verify_token",
]
