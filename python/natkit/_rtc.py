"""The aiortc glue of :mod:`natkit.session`: ICE servers as aiortc can use them, the peer
connection built for the policy the session chose, candidates converted, the selected pair, and
ICE restarts, which aiortc lacks. No decision about the pair is made here (the Rust session makes
them); what is decided here is only what aiortc's limits force.

aiortc's limits, and what is done about them:

- it uses only the first STUN and the first TURN URL it is given: :func:`turn_choices` orders the
  TURN URLs (UDP, then TCP, then TLS; UDP left out where the probe found it blocked), and
  :func:`reachable` skips those this network cannot reach (a TCP connection, a verified TLS
  handshake), so the URL that goes first is one that works;
- it verifies ``turns:`` against the system's CAs only: the gatherer's connection gets an SSL
  context that also trusts ``tls_ca``;
- it cannot restart ICE: :class:`IceRestart` gives the ICE transport a fresh aioice connection
  (new credentials, candidates gathered with the servers in force) that the next description
  carries, and moves the DTLS transport's data onto it once it connects, without a new DTLS
  handshake, so the data channel carries on.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

import aioice
import aioice.ice
from aiortc import (
    RTCConfiguration,
    RTCIceCandidate,
    RTCIceServer,
    RTCPeerConnection,
)
from aioice.turn import make_integrity_key
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from aiortc.rtcicetransport import connection_kwargs
from aiortc.sdp import SessionDescription, candidate_from_sdp, candidate_to_sdp

log = logging.getLogger("natkit")


#: Consent freshness (RFC 7675) as natkit's Python peers check it: a request every 2 s (aioice:
#: 5 s), and the path counts as lost after 4 unanswered (aioice: 6, 30 s). A relay that died is
#: then noticed in about 8 s and an ICE restart moves the channel on, where aioice would wait 30 s.
CONSENT_INTERVAL = 2
CONSENT_FAILURES = 4


def quicken_consent() -> None:
    """Applies :data:`CONSENT_INTERVAL` and :data:`CONSENT_FAILURES` to aioice (process-wide:
    aioice reads them as module constants)."""
    aioice.ice.CONSENT_INTERVAL = CONSENT_INTERVAL
    aioice.ice.CONSENT_FAILURES = CONSENT_FAILURES


def retrigger_checks() -> None:
    """A check from the partner restarts our checks to the address it came from that are still
    in progress, at once, once per pair (RFC 8445 section 7.3.1.4 says so for the pair the check
    arrived on: the in-progress transaction is cancelled and a triggered check sent), where
    aioice leaves them to their next retransmission, 500 ms on. Towards a partner's relayed
    address the first checks are usually lost: its allocation has no permission for us until the
    partner sends too, and its check arriving is the sign that it has. This was about 500 ms of a
    relayed Python pair's one second to connect in the lab. The pairs from our other local
    candidates are restarted too (the relay's permission is per IP, and a partner that relays
    alone checks our server-reflexive address before our relayed one): that is how an offerer
    reaches a relay-only answerer in one relay hop rather than from its own relay.
    Process-wide (aioice's class), applied once."""
    conn = aioice.ice.Connection
    if getattr(conn.check_incoming, "natkit_retrigger", False):
        return
    original = conn.check_incoming
    state = aioice.ice.CandidatePair.State

    def check_incoming(self: Any, message: Any, addr: Any, protocol: Any) -> None:
        stalled = [
            p
            for p in self._check_list
            if p.state == state.IN_PROGRESS
            and p.remote_addr == (addr[0], addr[1])
            and not getattr(p, "natkit_retriggered", False)
        ]
        original(self, message, addr, protocol)
        for p in stalled:
            if p.state != state.IN_PROGRESS or p.task is None:
                continue
            p.natkit_retriggered = True
            p.task.cancel()
            p.task = None
            self.check_state(p, state.WAITING)
            self.check_start_task(p)

    check_incoming.natkit_retrigger = True  # type: ignore[attr-defined]
    conn.check_incoming = check_incoming  # type: ignore[method-assign]


def tls_context(tls_ca: Optional[str]) -> ssl.SSLContext:
    """The context ``turns:`` relays are verified with: the system's CAs, and ``tls_ca`` (a PEM
    file) when given."""
    ctx = ssl.create_default_context()
    if tls_ca is not None:
        ctx.load_verify_locations(cafile=tls_ca)
    return ctx


def _transport(url: str) -> str:
    if url.startswith("turns:"):
        return "tls"
    return "tcp" if "transport=tcp" in url else "udp"


def _host_port(url: str) -> tuple[str, int]:
    rest = url.split(":", 1)[1].split("?", 1)[0]
    parts = urlsplit("//" + rest)
    default = 5349 if url.startswith("turns:") else 3478
    return parts.hostname or "", parts.port or default


def turn_choices(servers: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """Every TURN URL with its server entry, UDP first, then TCP, then TLS (the session's
    servers already leave out UDP where UDP is blocked)."""
    urls = [(u, s) for s in servers for u in s["urls"] if u.startswith(("turn:", "turns:"))]
    order = {"udp": 0, "tcp": 1, "tls": 2}
    return sorted(urls, key=lambda us: order[_transport(us[0])])


async def reachable(url: str, ctx: ssl.SSLContext, timeout: float = 3.0) -> Optional[str]:
    """``None`` when this network reaches ``url``'s relay (UDP is taken on the probe's word;
    TCP must connect; TLS must connect and verify), else why not."""
    kind = _transport(url)
    if kind == "udp":
        return None
    host, port = _host_port(url)
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(
                host, port, ssl=ctx if kind == "tls" else None, server_hostname=host if kind == "tls" else None
            ),
            timeout,
        )
    except ssl.SSLCertVerificationError as e:
        return f"{url}: the relay's certificate is not trusted ({e.verify_message}); pass tls_ca"
    except (OSError, asyncio.TimeoutError, ssl.SSLError) as e:
        return f"{url}: {type(e).__name__} {e}".rstrip()
    writer.close()
    return None


def rtc_servers(servers: list[dict[str, Any]], turn_url: Optional[str]) -> list[RTCIceServer]:
    """The STUN URLs, then the one TURN URL chosen (aiortc takes the first of each kind)."""
    out = [
        RTCIceServer(urls=[u for u in s["urls"] if u.startswith("stun:")])
        for s in servers
        if any(u.startswith("stun:") for u in s["urls"])
    ]
    for s in servers:
        if turn_url in s["urls"]:
            out.append(RTCIceServer(urls=[turn_url], username=s.get("username"), credential=s.get("credential")))
    return out


def peer_connection(servers: list[RTCIceServer], relay_only: bool) -> RTCPeerConnection:
    policy = RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL
    return RTCPeerConnection(RTCConfiguration(iceServers=servers, iceTransportPolicy=policy))


def ice_transport(pc: RTCPeerConnection) -> Any:
    """The data channel's ICE transport (``None`` before the SCTP transport exists)."""
    sctp = pc.sctp
    return None if sctp is None else sctp.transport.transport


def has_relay_candidate(pc: RTCPeerConnection) -> bool:
    t = ice_transport(pc)
    return t is not None and any(c.type == "relay" for c in t.iceGatherer._connection.local_candidates)


def rotate_credentials(pc: RTCPeerConnection, servers: list[RTCIceServer]) -> int:
    """Hands a renewed TURN credential to the live allocations (their next Refresh,
    CreatePermission and ChannelBind carry it) and to later gatherings; how many took it."""
    kwargs = connection_kwargs(servers)
    user, password = kwargs.get("turn_username"), kwargs.get("turn_password")
    t = ice_transport(pc)
    if t is None or user is None or password is None:
        return 0
    taken = 0
    for conn in {id(c): c for c in (t._connection, t.iceGatherer._connection)}.values():
        conn.turn_username, conn.turn_password = user, password
        for proto in conn._protocols:
            inner = getattr(proto.transport, "_TurnTransport__inner_protocol", None)
            if inner is None:
                continue
            inner.username, inner.password = user, password
            if inner.realm is not None:
                inner.integrity_key = make_integrity_key(user, inner.realm, password)
            taken += 1
    return taken


def to_aiortc(c: dict[str, Any]) -> Optional[RTCIceCandidate]:
    """natkit-proto's candidate (``RTCIceCandidateInit``) as aiortc's; ``None`` when it is not a
    candidate aiortc can parse (an mDNS name, an end marker)."""
    text = c.get("candidate") or ""
    if not text.startswith("candidate:"):
        return None
    try:
        cand = candidate_from_sdp(text.split(":", 1)[1])
    except (ValueError, IndexError):
        return None
    cand.sdpMid = c.get("sdpMid")
    cand.sdpMLineIndex = c.get("sdpMLineIndex")
    return cand


def from_aiortc(c: RTCIceCandidate) -> dict[str, Any]:
    return {"candidate": "candidate:" + candidate_to_sdp(c), "sdpMid": c.sdpMid, "sdpMLineIndex": c.sdpMLineIndex}


def selected_pair(pc: RTCPeerConnection) -> Optional[tuple[str, str]]:
    """The nominated pair's local and remote candidate types."""
    t = ice_transport(pc)
    pair = None if t is None else t._connection._nominated.get(1)
    if pair is None:
        return None
    return pair.local_candidate.type, pair.remote_candidate.type


def remote_ice(sdp: str) -> tuple[str, str]:
    """The ICE username fragment and password of a description's data section."""
    media = SessionDescription.parse(sdp).media
    ice = next((m.ice for m in media if m.ice is not None and m.ice.usernameFragment), None)
    if ice is None:
        raise ValueError("the description has no ICE credentials")
    return ice.usernameFragment or "", ice.password or ""


class DataPath:
    """Stands between aiortc's DTLS transport and the aioice connection under it, so that the
    connection can be replaced (an ICE restart) while the DTLS transport, the SCTP association and
    the data channel carry on. aiortc reads and writes through the ICE transport's ``_recv`` and
    ``_send``; these go to the current connection. When it ends (consent lost, its relay gone),
    reads wait up to :attr:`GRACE` seconds for a restart to replace it instead of ending the DTLS
    transport; writes meanwhile are dropped, as any datagram may be (SCTP sends them again)."""

    GRACE = 30.0

    def __init__(self, transport: Any, on_lost: Callable[[], None]) -> None:
        self.transport = transport
        self.conn = transport._connection
        self.replaced = asyncio.Event()
        self.closed = False
        self.on_lost = on_lost
        transport._recv, transport._send = self.recv, self.send
        self._watch(self.conn)

    def _watch(self, conn: aioice.Connection) -> None:
        """Calls ``on_lost`` the moment aioice starts closing the connection in use (consent
        expired): its close first deletes the TURN allocation, which can take half a minute
        when the relay is gone, and only then does aiortc's ICE transport say ``failed``."""
        close = conn.close

        async def closing() -> None:
            if conn is self.conn and not self.closed:
                self.on_lost()
            await close()

        conn.close = closing  # type: ignore[method-assign]

    async def recv(self) -> bytes:
        # aioice's recv() reads its connection's queue ((data, component), or None once the
        # connection is lost); the queue is read here directly so that a read waiting on a
        # replaced connection moves to the new one at once.
        while True:
            conn = self.conn
            queue = conn._queue
            if not queue.empty():
                item = queue.get_nowait()
            else:
                self.replaced.clear()
                get = asyncio.ensure_future(queue.get())
                swap = asyncio.ensure_future(self.replaced.wait())
                try:
                    await asyncio.wait({get, swap}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    swap.cancel()
                    if not get.done():
                        get.cancel()
                if not get.done() or get.cancelled():
                    if self.closed:
                        raise ConnectionError("closed")
                    continue  # replaced: read the new connection
                item = get.result()
            if item is not None:
                return item[0]
            # The connection is lost: wait for a restart to replace it.
            if self.closed:
                raise ConnectionError("closed")
            if self.conn is not conn:
                continue
            self.replaced.clear()
            try:
                await asyncio.wait_for(self.replaced.wait(), self.GRACE)
            except asyncio.TimeoutError:
                raise ConnectionError("the ICE connection ended and no restart replaced it") from None

    async def send(self, data: bytes) -> None:
        try:
            await self.conn.send(data)
        except ConnectionError:
            pass

    def replace(self, conn: aioice.Connection) -> None:
        self.conn = conn
        self._watch(conn)
        self.replaced.set()

    def close(self) -> None:
        self.closed = True
        self.replaced.set()


def prepare(pc: RTCPeerConnection, ctx: ssl.SSLContext, on_lost: Callable[[], None]) -> Optional[DataPath]:
    """Before the first gathering: ``turns:`` verified with ``ctx``, and the data path made
    replaceable (:class:`DataPath`, ``on_lost`` called when its connection is lost). ``None``
    before the SCTP transport exists."""
    t = ice_transport(pc)
    if t is None:
        return None
    if t.iceGatherer._connection.turn_ssl:
        t.iceGatherer._connection.turn_ssl = ctx
    path = getattr(t, "_natkit_path", None)
    if path is None:
        path = t._natkit_path = DataPath(t, on_lost)
    return path


class IceRestart:
    """An ICE restart of an aiortc peer connection's data-channel transport.

    :meth:`begin` gathers a fresh aioice connection with ``servers`` and puts it where aiortc
    reads its ICE parameters and candidates, so the next offer or answer carries them and the
    remote candidates that come with it land on it; data still flows on the old connection.
    :meth:`remote` starts connectivity checks with the remote side's new credentials; once they
    succeed the :class:`DataPath` moves to the new connection, the ICE transport is
    ``completed`` again, and the old connection is closed (with its TURN allocation). The task
    (:attr:`task`) says whether it worked.
    """

    def __init__(
        self, pc: RTCPeerConnection, path: DataPath, servers: list[RTCIceServer], relay_only: bool, ctx: ssl.SSLContext
    ) -> None:
        self.transport = ice_transport(pc)
        self.path = path
        self.old = self.transport._connection
        kwargs = connection_kwargs(servers)
        if kwargs.get("turn_ssl"):
            kwargs["turn_ssl"] = ctx
        self.new = aioice.Connection(
            ice_controlling=self.old.ice_controlling,
            transport_policy=aioice.TransportPolicy.RELAY if relay_only else aioice.TransportPolicy.ALL,
            **kwargs,
        )
        self.task: Optional[asyncio.Task[bool]] = None

    async def begin(self) -> None:
        await self.new.gather_candidates()
        gatherer = self.transport.iceGatherer
        gatherer._connection = self.new
        gatherer._remote_candidates_end = False
        self.transport._connection = self.new

    def remote(self, sdp: str) -> None:
        """The remote side's description for this restart has been set."""
        self.new.remote_username, self.new.remote_password = remote_ice(sdp)
        self.task = asyncio.ensure_future(self._connect())

    async def _connect(self) -> bool:
        try:
            await self.new.connect()
        except ConnectionError as e:
            log.info("ICE restart failed: %s", e)
            return False
        t = self.transport
        self.path.replace(self.new)
        monitor = t._RTCIceTransport__monitor_task
        if monitor is not None:
            monitor.cancel()
        t._RTCIceTransport__monitor_task = asyncio.ensure_future(t._monitor())
        t._RTCIceTransport__setState("completed")
        # In the background: deleting an allocation on a relay that is gone takes long.
        asyncio.ensure_future(self.old.close())
        return True

    async def abandon(self) -> None:
        """Puts the old connection back (a restart rolled back) and closes the new one."""
        gatherer = self.transport.iceGatherer
        gatherer._connection = self.old
        self.transport._connection = self.old
        if self.task is not None:
            self.task.cancel()
        await self.new.close()
