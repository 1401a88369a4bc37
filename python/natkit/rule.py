"""natkit's pair rule (natkit-peer-core's, not a copy): must this pair of peers relay?"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Union

from . import _natkit
from .probe import NatReport

Role = Literal["offerer", "answerer"]
"""This side's part in the offer/answer exchange: where one relay hop is enough (both NATs
symmetric, or a symmetric NAT facing restricted filtering), the answerer relays and the offerer
reaches its relayed address from its own."""

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


def pair_rule(
    local: Side, remote: Side, relay: RelayMode = "auto", role: Role = "answerer"
) -> PairDecision:
    """Decides, as natkit-peer does, whether this side of a session must use relay-only ICE.

    ``local`` is this side's NAT and ``remote`` the other's; ``role`` is this side's part in the
    offer/answer exchange. The table is natkit-peer-core's (``crates/peer-core/pair_rule.tsv``):
    UDP blocked on either side means relay on both; both NATs symmetric, or a symmetric NAT
    facing restricted filtering, means relay on the answering side only (the offerer reaches the
    answerer's relayed address from its own: one relay hop); otherwise every candidate with TURN
    as the fallback.

    >>> natkit.pair_rule({"mapping": ["address-and-port-dependent"],
    ...                   "filtering": ["address-and-port-dependent"], "udp_blocked": False},
    ...                  None).rule
    'this-side-only'
    """
    relay_only, rule, reason = _natkit.pair_rule(relay, _summary(local), _summary(remote), role)
    return PairDecision(relay_only=relay_only, rule=rule, reason=reason)
