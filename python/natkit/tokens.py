"""Join tokens, as natkit-signal checks them (natkit-proto's code, not a copy)."""

from __future__ import annotations

import time

from . import _natkit
from .errors import TokenError


def _now(now: float | None) -> int:
    return int(time.time() if now is None else now)


def mint_token(secret: str, room: str, ttl: int = 3600, *, now: float | None = None) -> str:
    """A join token for ``room``, valid for ``ttl`` seconds: what an application server (Django,
    FastAPI, ...) hands the users it admits. ``secret`` is natkit-signal's token secret
    (``token_secret_file`` or ``NATKIT_SIGNAL_TOKEN_SECRET``).

    Raises :class:`ValueError` for an empty secret, a room name natkit-signal would refuse
    (1-64 characters of ``A-Z a-z 0-9 . _ ~ -``) or a ttl under one second.

    >>> token = natkit.mint_token(secret, "demo", ttl=600)  # doctest: +SKIP
    """
    if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 1:
        raise ValueError(f"ttl must be a whole number of seconds, at least 1, not {ttl!r}")
    return _natkit.mint_token(secret, room, ttl, _now(now))


def verify_token(secret: str, token: str, *, now: float | None = None) -> str:
    """The room ``token`` grants, checked as natkit-signal checks it.

    Raises :class:`natkit.TokenError` (code ``unauthorized``) when the token is malformed,
    signed with another secret or expired.
    """
    try:
        return _natkit.verify_token(secret, token, _now(now))
    except _natkit.TokenRefused as e:
        raise TokenError(str(e)) from None
