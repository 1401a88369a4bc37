"""natkit's pair rule (natkit-peer-core's, not a copy): must this pair of peers relay?"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Union

from . import _natkit
from .probe import NatReport

RelayMode = Literal["auto", "always", "never"]
"""``auto``: probe, exchange NAT summaries and relay only when the pair needs it; ``always``:
relay-only ICE; ``never``: no TURN at all."""

Side = Union[NatReport, Mapping[str, Any], None]
"""One side's NAT: a probe report, a NAT summary (the ``nat`` of a ``nat-summary`` message), or
``None`` when unknown (not probed, or the remote peer sent none)."""


@dataclass(frozen=True)
class PairDecision:
    """The ICE policy for a pair, and why."""

    relay_only: bool
    """True: ``iceTransportPolicy="relay"``."""
    rule: str
    """The row of the rule table that decided (``symmetric-pair``, ``direct-possible``, ...)."""
    reason: str


def _summary(side: Side) -> str | None:
    if side is None:
        return None
    if isinstance(side, NatReport):
        return json.dumps(side.summary)
    return json.dumps(dict(side))


def pair_rule(local: Side, remote: Side, relay: RelayMode = "auto") -> PairDecision:
    """Decides, as natkit-peer does, whether a session must use relay-only ICE.

    ``local`` is this side's NAT and ``remote`` the other's. The table is natkit-peer-core's
    (``crates/peer-core/pair_rule.tsv``): both NATs symmetric, or a symmetric NAT facing
    restricted filtering, or UDP blocked on either side means relay; otherwise every candidate
    with TURN as the fallback.

    >>> natkit.pair_rule({"mapping": ["address-and-port-dependent"],
    ...                   "filtering": ["address-and-port-dependent"], "udp_blocked": False},
    ...                  None).rule
    'this-side-only'
    """
    relay_only, rule, reason = _natkit.pair_rule(relay, _summary(local), _summary(remote))
    return PairDecision(relay_only=relay_only, rule=rule, reason=reason)
