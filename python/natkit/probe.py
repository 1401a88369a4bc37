"""The NAT probe: natkit's classifier (the one ``nat-probe`` runs), off the event loop."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from . import _natkit
from .errors import NoStunServer, ProbeError, Timeout


@dataclass(frozen=True)
class NatReport:
    """What the probe found. The fields are those of ``nat-probe --json`` (docs/nat-probe.md);
    :meth:`to_dict` gives that object exactly."""

    family: str
    """The address family probed: ``ipv4`` or ``ipv6``."""
    nat_type: str
    """``open-internet``, ``full-cone``, ``restricted-cone``, ``port-restricted-cone``,
    ``symmetric``, ``udp-blocked``, ``symmetric-udp-firewall`` or ``unknown``."""
    force_turn: bool
    """True when peers behind this NAT need TURN whatever the other side does."""
    mapping: str | None
    """The RFC 4787 mapping behaviour when the tests decided it (``endpoint-independent``,
    ``address-dependent``, ``address-and-port-dependent``), else ``None``."""
    filtering: str | None
    mapping_possible: tuple[str, ...]
    filtering_possible: tuple[str, ...]
    reason: str
    local_address: str
    mapped_address: str | None
    elapsed_ms: int
    warnings: tuple[str, ...]
    summary: dict[str, Any] = field(repr=False)
    """This side's NAT summary, as a ``nat-summary`` message carries it to the remote peer."""
    text: str = field(repr=False)
    """nat-probe's human summary."""
    _json: dict[str, Any] = field(repr=False)

    @property
    def udp_blocked(self) -> bool:
        """No UDP gets out: only TURN over TCP or TLS can carry a session."""
        return self.nat_type == "udp-blocked"

    def to_dict(self) -> dict[str, Any]:
        """The report as ``nat-probe --json`` prints it (a fresh copy)."""
        return json.loads(json.dumps(self._json))

    def __str__(self) -> str:
        return self.text

    @classmethod
    def _from_extension(cls, report: str, summary: str, text: str) -> NatReport:
        d = json.loads(report)
        return cls(
            family=d["family"],
            nat_type=d["nat_type"],
            force_turn=d["force_turn"],
            mapping=d["mapping"],
            filtering=d["filtering"],
            mapping_possible=tuple(d["mapping_possible"]),
            filtering_possible=tuple(d["filtering_possible"]),
            reason=d["reason"],
            local_address=d["local_address"],
            mapped_address=d["mapped_address"],
            elapsed_ms=d["elapsed_ms"],
            warnings=tuple(d["warnings"]),
            summary=json.loads(summary),
            text=text,
            _json=d,
        )


def probe_blocking(
    servers: list[str], *, timeout: float = 3.0, hairpin: bool = False
) -> NatReport:
    """:func:`probe` for code without an event loop (it blocks the calling thread)."""
    try:
        report, summary, text = _natkit.probe(list(servers), float(timeout), hairpin)
    except _natkit.ProbeTimedOut as e:
        raise Timeout("probe", str(e)) from None
    except _natkit.NoStunServer as e:
        raise NoStunServer(str(e)) from None
    except _natkit.ProbeFailed as e:
        raise ProbeError(str(e)) from None
    return NatReport._from_extension(report, summary, text)


async def probe(
    server: str, *more: str, timeout: float = 3.0, hairpin: bool = False
) -> NatReport:
    """Classifies this host's NAT (RFC 5780 / RFC 4787) against STUN servers.

    ``server`` is ``HOST``, ``HOST:PORT`` or ``IP[:PORT]`` (port 3478 by default): one RFC 5780
    server (natkit-relay, natkit-signal's embedded relay, coturn with two addresses) runs every
    test; with ``more`` plain STUN servers only the mapping is compared. The probe runs in a
    worker thread with the GIL released, so the event loop goes on meanwhile.

    Raises :class:`natkit.Timeout` (stage ``probe``) when there is no verdict within ``timeout``
    seconds, :class:`natkit.NoStunServer` (a :class:`natkit.ProbeError`) when the server's host
    answers that nothing listens on its port, :class:`natkit.ProbeError` when the probe cannot run, :class:`ValueError` for a
    timeout that is not a positive number. A network where UDP is blocked is a verdict
    (``nat_type == "udp-blocked"``), not an error.

    >>> report = await natkit.probe("relay.example.org:3478")   # doctest: +SKIP
    >>> report.nat_type, report.force_turn                       # doctest: +SKIP
    ('port-restricted-cone', False)
    """
    return await asyncio.to_thread(
        probe_blocking, [server, *more], timeout=timeout, hairpin=hairpin
    )
