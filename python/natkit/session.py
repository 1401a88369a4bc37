"""``natkit.connect``: a data channel to a partner in a natkit-signal room, on aiortc.

The decisions are natkit-peer's, made by the same Rust session (``_natkit.Session``): who
offers, the NAT summaries exchanged and the pair rule, relay-only ICE, when candidates go out,
credential renewal, rejoining after a lost or draining signaling node, when the session is over.
This module is the shell: it owns the WebSocket, the aiortc peer connection and the clock, feeds
the session what happens and carries out what it asks (see :mod:`natkit._rtc` for aiortc's
limits and how they are handled). Data does not pass through the session: the program's
messages go straight to the data channel and back.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, Generator, Optional, Sequence, Union

from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription

from . import _natkit, _rtc
from .errors import Error, NoStunServer, ProbeError, Timeout
from .probe import NatReport, probe
from .rule import RelayMode
from .signaling import SignalingError, join

log = logging.getLogger("natkit")

Data = Union[str, bytes]

#: Unread messages a channel keeps; one more ends the channel with an error (a program that
#: stops reading must not grow memory without bound).
MAX_UNREAD = 65536
#: Events kept in :attr:`Session.events`.
MAX_EVENTS = 256
#: ``send`` waits while more than this is buffered on the data channel.
SEND_HIGH_WATER = 1 << 20
SEND_LOW_WATER = 256 << 10
#: How long each rejoin attempt may take.
REJOIN_TIMEOUT = 5.0


class SessionError(Error):
    """The session could not open (or keep) its channel; ``stage`` is where it stopped:
    ``config`` (a STUN URL handed out where nothing listens), ``signaling``, ``ice``, ``relay``
    (relay-only ICE found no path), ``dtls`` or ``timeout``."""

    code = "session-failed"

    def __init__(self, stage: str, message: str) -> None:
        super().__init__(f"{stage}: {message}")
        self.stage = stage


class ChannelClosed(Error):
    """The channel is closed: by either side, or because the session ended."""

    code = "closed"


@dataclass(frozen=True)
class Path:
    """How the channel's data travels."""

    local: str
    """The local candidate type of the selected pair: ``host``, ``srflx``, ``prflx`` or ``relay``."""
    remote: str
    """The remote candidate type."""
    relay_transport: Optional[str]
    """``udp``, ``tcp`` or ``tls``: how this side reaches its relay, when ``local`` is ``relay``."""
    rule: str
    """The row of natkit-peer's rule table that chose the ICE policy (``relay-always``,
    ``symmetric-symmetric``, ``direct-possible``, ...)."""
    relay_only: bool
    """Whether ICE was limited to relay candidates."""


class Channel:
    """The data channel with one partner. ``async for message in channel`` reads until it
    closes; :meth:`recv` raises :class:`ChannelClosed` then. Messages are ``str`` (text) or
    ``bytes`` (binary), as they were sent."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._dc: Optional[RTCDataChannel] = None
        self._unread: deque[Data] = deque()
        self._arrived = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._closed: Optional[BaseException] = None
        self.peer_id: Optional[str] = None
        """The partner's peer id."""

    @property
    def path(self) -> Optional[Path]:
        """The path in use (it changes after an ICE restart), ``None`` before it is known."""
        return self._session._path

    def __repr__(self) -> str:
        return f"<natkit.Channel with {self.peer_id} over {self.path}>"

    async def send(self, data: Data) -> None:
        """Sends a message: ``str`` as text, ``bytes`` (or ``bytearray``, ``memoryview``) as
        binary. Waits while much is buffered; raises :class:`ChannelClosed` once closed."""
        if isinstance(data, (bytearray, memoryview)):
            data = bytes(data)
        if not isinstance(data, (str, bytes)):
            raise TypeError(f"a message is str or bytes, not {type(data).__name__}")
        if self._closed is not None or self._dc is None or self._dc.readyState != "open":
            raise ChannelClosed("the channel is closed") from self._closed
        self._dc.send(data)
        if self._dc.bufferedAmount > SEND_HIGH_WATER:
            self._drained.clear()
            await self._drained.wait()

    async def recv(self) -> Data:
        """The next message; :class:`ChannelClosed` once the channel is closed and every message
        that came before has been read."""
        while not self._unread:
            if self._closed is not None:
                if isinstance(self._closed, Error):
                    raise ChannelClosed(str(self._closed)) from self._closed
                raise ChannelClosed("the channel is closed")
            self._arrived.clear()
            await self._arrived.wait()
        return self._unread.popleft()

    def __aiter__(self) -> AsyncIterator[Data]:
        return self

    async def __anext__(self) -> Data:
        try:
            return await self.recv()
        except ChannelClosed:
            raise StopAsyncIteration from None

    async def close(self) -> None:
        """Closes the channel (and the session's peer connection with it)."""
        self._end(None)
        await self._session.close()

    def _attach(self, dc: RTCDataChannel) -> None:
        self._dc = dc
        dc.bufferedAmountLowThreshold = SEND_LOW_WATER

        @dc.on("message")
        def on_message(data: Data) -> None:
            if self._closed is not None:
                return
            if len(self._unread) >= MAX_UNREAD:
                self._end(Error(f"more than {MAX_UNREAD} unread messages: the channel is closed"))
                self._session._spawn(self._session.close())
                return
            self._unread.append(data)
            self._arrived.set()

        @dc.on("bufferedamountlow")
        def on_low() -> None:
            self._drained.set()

    def _end(self, why: Optional[BaseException]) -> None:
        if self._closed is None:
            self._closed = why if why is not None else ChannelClosed("the channel is closed")
        self._arrived.set()
        self._drained.set()


class Session:
    """A peer in a natkit-signal room (see :func:`connect`)."""

    def __init__(
        self,
        urls: list[str],
        at: int,
        ws: Any,
        welcome: dict[str, Any],
        welcome_text: str,
        *,
        room: str,
        token: Optional[str],
        relay: RelayMode,
        tls_ca: Optional[str],
        timeout: float,
        renew: bool,
        probe_timeout: float,
        on_event: Optional[Callable[[dict[str, Any]], None]],
        spent: float = 0.0,
    ) -> None:
        self._urls, self._at, self._ws = urls, at, ws
        self._on_event = on_event
        self._room, self._token = room, token
        self._tls = _rtc.tls_context(tls_ca)
        self._probe_timeout = probe_timeout
        self.peer_id: str = welcome["peer_id"]
        """This peer's id in the room."""
        self.room: str = welcome["room"]
        self.peers: list[str] = list(welcome.get("peers", []))
        """The other peers in the room, as signaling last told."""
        self.nat: Optional[NatReport] = None
        """What the NAT probe found (``None`` before it ran, or when it could not run)."""
        self.partner: Optional[str] = None
        """The partner of the channel, once known."""
        self.events: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS)
        """The session's events, as ``natkit-peer --json`` prints them (the last 256): ``joined``,
        ``probe``, ``policy``, ``connected``, ``renewed``, ``ice-restart``, ``reconnected``,
        ``signaling``, ``failed``, ``closed``."""
        self._core = _natkit.Session(
            welcome_text, relay=relay, local_nat="probe", renew=renew, timeout=timeout, spent=spent
        )
        self._inbox: asyncio.Queue[Callable[[], None]] = asyncio.Queue(maxsize=1024)
        self._channel = Channel(self)
        self._open = asyncio.Event()
        self._ended = asyncio.Event()
        self._failure: Optional[Error] = None
        self._pc: Optional[RTCPeerConnection] = None
        self._servers: list[dict[str, Any]] = []
        self._relay_only = False
        self._turn_url: Optional[str] = None
        self._restart: Optional[_rtc.IceRestart] = None
        self._dc_pc: Optional[RTCPeerConnection] = None
        self._data_path: Optional[_rtc.DataPath] = None
        self._was_connected = False
        self._failed_restarts = 0
        self._policy: Optional[tuple[bool, str, str]] = None
        self._path: Optional[Path] = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        self._record({"event": "joined", "peer_id": self.peer_id, "room": self.room, "peers": list(self.peers)})
        self._reader = self._spawn(self._read(ws))
        self._driver = self._spawn(self._drive())

    def __repr__(self) -> str:
        return f"<natkit.Session {self.peer_id} in {self.room}>"

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def channel(self, peer_id: Optional[str] = None, timeout: float = 30.0) -> Channel:
        """The data channel with ``peer_id``, or with the first partner to appear, once it is
        open. Raises :class:`natkit.Timeout` (naming the stage it stopped in) when it does not
        open within ``timeout`` seconds, and :class:`SessionError` when the session failed."""
        waiter = asyncio.ensure_future(self._open.wait())
        ended = asyncio.ensure_future(self._ended.wait())
        try:
            done, _ = await asyncio.wait({waiter, ended}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            ended.cancel()
        if self._open.is_set():
            if peer_id is not None and self._channel.peer_id != peer_id:
                raise Error(
                    f"this session's channel is with {self._channel.peer_id}, not {peer_id}: "
                    "a session holds one channel, with the first partner"
                )
            return self._channel
        if self._failure is not None:
            raise self._failure
        if self._ended.is_set():
            raise ChannelClosed("the session ended before a channel opened")
        if self.partner is None:
            raise Timeout("partner", f"no partner joined {self.room} within {timeout} s")
        stage = self._core.stage()
        raise Timeout(stage, f"no open channel within {timeout} s (stopped at {stage})")

    async def close(self) -> None:
        """Closes the channel and the peer connection and leaves the room (again: nothing)."""
        if self._closing:
            return
        self._closing = True
        self._channel._end(None)
        current = asyncio.current_task()
        for t in list(self._tasks):
            if t is not current:
                t.cancel()
        await self._flush()
        if self._data_path is not None:
            self._data_path.close()
        if self._restart is not None:
            await self._restart.abandon()
        if self._pc is not None:
            try:
                # aioice deletes each TURN allocation on close, waiting long for a relay
                # that is gone: bounded.
                await asyncio.wait_for(self._pc.close(), 3.0)
            except asyncio.TimeoutError:
                log.info("the peer connection took over 3 s to close; left to finish")
        ws, self._ws = self._ws, None
        if ws is not None:
            try:
                await ws.send(json.dumps({"type": "leave"}))
                await ws.close()
            except Exception:  # the server is gone already
                pass
        self._ended.set()
        self._record({"event": "closed", "reason": "closed by the program"})

    async def _flush(self, limit: float = 2.0) -> None:
        """Waits (at most ``limit`` seconds) until what the program sent has been acknowledged:
        aiortc aborts the association on close, dropping what is still queued."""
        sctp = self._pc.sctp if self._pc is not None else None
        dc = self._channel._dc
        if sctp is None or dc is None or dc.readyState != "open":
            return
        loop = asyncio.get_running_loop()
        until = loop.time() + limit
        while dc.bufferedAmount or sctp._outbound_queue or sctp._sent_queue or sctp._data_channel_queue:
            if loop.time() >= until or sctp.state != "connected":
                log.warning("closing with data not yet acknowledged by the partner")
                return
            await asyncio.sleep(0.01)

    # -- the shell's loop ------------------------------------------------------------------

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _post(self, what: Callable[[], None]) -> None:
        """Feeds the session from a callback (never blocks: the inbox is drained promptly)."""
        try:
            self._inbox.put_nowait(what)
        except asyncio.QueueFull:
            log.warning("natkit session inbox full; an event was dropped")

    async def _drive(self) -> None:
        try:
            while True:
                await self._carry_out()
                outcome = self._core.outcome()
                if outcome is not None:
                    ok, stage, message = outcome
                    if not ok:
                        self._failure = self._failure or SessionError(stage, message)
                    break
                try:
                    what = await asyncio.wait_for(self._inbox.get(), self._core.poll_timeout())
                except asyncio.TimeoutError:
                    self._core.handle_timeout()
                    out = self._core.outcome()
                    if out is not None and not out[0]:
                        self._failure = Timeout(out[1], f"{out[1]}: {out[2]}")
                    continue
                what()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug or an aiortc failure: end, and say so
            log.exception("natkit session failed")
            self._failure = self._failure or SessionError(self._core.stage(), f"{type(e).__name__}: {e}")
        if self._failure is not None:
            self._record({"event": "failed", "stage": getattr(self._failure, "stage", ""), "message": str(self._failure)})
        self._channel._end(self._failure)
        self._ended.set()
        if not self._closing:
            self._spawn(self.close())

    async def _carry_out(self) -> None:
        while (action := self._core.poll_action()) is not None:
            kind, *args = action
            await getattr(self, "_do_" + kind.replace("-", "_"))(*args)

    # -- actions ---------------------------------------------------------------------------

    async def _do_signal(self, text: str) -> None:
        msg = json.loads(text)
        if self.partner is None and msg.get("to"):
            self.partner = msg["to"]
        if self._ws is not None:
            try:
                await self._ws.send(text)
            except Exception as e:  # the reader notices the closed connection
                log.debug("signaling send failed: %s", e)

    async def _do_probe(self, target: str) -> None:
        try:
            self.nat = await probe(target, timeout=self._probe_timeout)
        except NoStunServer as e:
            # The STUN URL the server handed out is wrong: a configuration error, not a verdict.
            self._failure = SessionError("config", f"the STUN URL handed out is wrong: {e}")
            raise
        except (ProbeError, Timeout) as e:
            log.warning("NAT probe of %s failed: %s", target, e)
            self._core.handle_probe(None)
            return
        self._record({"event": "probe", **self.nat.to_dict()})
        self._core.handle_probe(json.dumps(self.nat.summary))

    async def _do_configure(self, servers: str, relay_only: bool) -> None:
        self._servers, self._relay_only = json.loads(servers), relay_only
        self._turn_url = await self._choose_turn(self._servers)
        self._pc = self._new_pc()

    async def _do_apply_servers(self, servers: str, relay_only: bool) -> None:
        self._servers, self._relay_only = json.loads(servers), relay_only
        if self._pc is not None and self._pc.sctp is not None:
            _rtc.rotate_credentials(self._pc, _rtc.rtc_servers(self._servers, self._turn_url))

    async def _do_create_data_channel(self) -> None:
        self._new_channel(self._pc_())

    async def _do_create_offer(self, ice_restart: bool) -> None:
        pc = self._pc_()
        if ice_restart and pc.remoteDescription is not None:
            await self._begin_restart(pc)
            offer = await pc.createOffer()
            await pc.setLocalDescription(offer)
        else:
            await self._gather(lambda pc: self._offer(pc))
        self._core.handle_local_offer(self._pc_().localDescription.sdp)
        # aiortc gathers before the description exists: its candidates travel in it.
        self._core.local_candidate(None)

    async def _do_accept_offer(self, sdp: str, rollback: bool) -> None:
        pc = self._pc_()
        if rollback and pc.signalingState == "have-local-offer":
            await self._rollback(pc)
        restart = False
        if pc.remoteDescription is not None:
            current = _rtc.remote_ice(pc.remoteDescription.sdp)
            restart = _rtc.remote_ice(sdp) != current
            if restart:
                await self._begin_restart(pc)
        if restart or pc.remoteDescription is not None:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            if restart and self._restart is not None:
                self._watch_restart(sdp)
        else:
            await self._gather(lambda pc: self._answer(pc, sdp))
        self._core.handle_local_answer(self._pc_().localDescription.sdp)
        self._core.local_candidate(None)

    async def _do_accept_answer(self, sdp: str) -> None:
        await self._pc_().setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        if self._restart is not None and self._restart.task is None:
            self._watch_restart(sdp)

    async def _do_add_candidate(self, text: str) -> None:
        c = _rtc.to_aiortc(json.loads(text))
        if c is not None and self._pc is not None:
            try:
                await self._pc.addIceCandidate(c)
            except Exception as e:  # a candidate aiortc cannot use is not fatal
                log.debug("remote candidate not added: %s", e)

    async def _do_send(self, data: Data) -> None:
        # Only what the program sent before the channel opened comes this way.
        if self._channel._dc is not None:
            self._channel._dc.send(data)

    async def _do_deliver(self, data: Data) -> None:
        self._channel._unread.append(data)
        self._channel._arrived.set()

    async def _do_rejoin(self) -> None:
        ws, self._ws = self._ws, None
        self._reader.cancel()
        if ws is not None:
            # Dropped without a leave: the room keeps our id for the rejoin (a draining node
            # waits for its peers to go).
            self._spawn(ws.close())
        self._spawn(self._rejoin())

    async def _do_emit(self, text: str) -> None:
        event = json.loads(text)
        self._record(event)
        kind = event["event"]
        if kind == "policy":
            self._policy = self._core.policy()
        elif kind in ("connected", "reconnected"):
            rule = self._policy[1] if self._policy else "unknown"
            self._path = Path(
                local=event["local_candidate_type"],
                remote=event["remote_candidate_type"],
                relay_transport=event.get("relay_protocol"),
                rule=rule,
                relay_only=self._relay_only,
            )

    # -- the peer connection ---------------------------------------------------------------

    def _pc_(self) -> RTCPeerConnection:
        if self._pc is None:
            raise Error("internal: a WebRTC action before the peer connection exists")
        return self._pc

    async def _choose_turn(self, servers: list[dict[str, Any]]) -> Optional[str]:
        """The first TURN URL (UDP, TCP, TLS) that this network reaches."""
        why = []
        for url, _ in _rtc.turn_choices(servers):
            problem = await _rtc.reachable(url, self._tls)
            if problem is None:
                return url
            why.append(problem)
        if why:
            log.warning("no TURN URL reachable: %s", "; ".join(why))
        return None

    def _new_pc(self) -> RTCPeerConnection:
        pc = _rtc.peer_connection(_rtc.rtc_servers(self._servers, self._turn_url), self._relay_only)

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc is not self._pc:
                return
            state = pc.connectionState
            if state == "connected" and not self._was_connected:
                # Later connections (after an ICE restart) are reported by the restart.
                self._was_connected = True
                self._post(lambda: self._connected(pc))
            elif state == "failed" and self._restart is None:
                self._post(lambda: self._core.rtc("failed"))

        @pc.on("datachannel")
        def on_channel(dc: RTCDataChannel) -> None:
            if pc is self._pc:
                self._channel._attach(dc)
                self._watch_channel(dc)
                if dc.readyState == "open":
                    self._post(lambda: self._channel_open(dc))

        return pc

    def _watch_channel(self, dc: RTCDataChannel) -> None:
        @dc.on("open")
        def on_open() -> None:
            self._post(lambda: self._channel_open(dc))

        @dc.on("close")
        def on_close() -> None:
            if dc is self._channel._dc:
                self._post(lambda: self._core.rtc("channel-closed"))

    def _path_lost(self) -> None:
        if self._restart is None:
            self._post(lambda: self._core.rtc("failed"))

    def _channel_open(self, dc: RTCDataChannel) -> None:
        if dc is not self._channel._dc or self._open.is_set():
            return
        self._channel.peer_id = self.partner
        self._core.rtc("channel-open")
        self._open.set()

    def _connected(self, pc: RTCPeerConnection) -> None:
        pair = _rtc.selected_pair(pc) or ("unknown", "unknown")
        via = _rtc._transport(self._turn_url) if pair[0] == "relay" and self._turn_url else None
        self._core.connected(pair[0], pair[1], via)

    async def _gather(self, describe: Callable[[RTCPeerConnection], Awaitable[None]]) -> None:
        """Sets the first local description; when the TURN URL in use gave no relay candidate,
        the next reachable one is tried on a fresh peer connection (aiortc takes one TURN URL)."""
        tried: set[str] = set()
        while True:
            pc = self._pc_()
            await describe(pc)
            if self._turn_url is None or _rtc.has_relay_candidate(pc):
                return
            tried.add(self._turn_url)
            rest = [(u, s) for u, s in _rtc.turn_choices(self._servers) if u not in tried]
            log.warning("TURN via %s gave no relay candidate", self._turn_url)
            nxt = await self._choose_turn([s for _, s in rest]) if rest else None
            nxt = nxt if nxt not in tried else None
            if nxt is None:
                return
            self._turn_url = nxt
            old, self._pc = pc, self._new_pc()
            await old.close()

    async def _offer(self, pc: RTCPeerConnection) -> None:
        if self._dc_pc is not pc:
            # A fresh peer connection (another TURN URL) needs its own channel.
            self._new_channel(pc)
        self._data_path = _rtc.prepare(pc, self._tls, self._path_lost)
        await pc.setLocalDescription(await pc.createOffer())

    def _new_channel(self, pc: RTCPeerConnection) -> None:
        dc = pc.createDataChannel("natkit")
        self._channel._attach(dc)
        self._watch_channel(dc)
        self._dc_pc = pc

    async def _answer(self, pc: RTCPeerConnection, sdp: str) -> None:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        self._data_path = _rtc.prepare(pc, self._tls, self._path_lost)
        await pc.setLocalDescription(await pc.createAnswer())

    async def _begin_restart(self, pc: RTCPeerConnection) -> None:
        if self._restart is not None:
            await self._restart.abandon()
        path = self._data_path or _rtc.prepare(pc, self._tls, self._path_lost)
        assert path is not None, "a restart needs the data channel's transport"
        self._restart = _rtc.IceRestart(
            pc, path, _rtc.rtc_servers(self._servers, self._turn_url), self._relay_only, self._tls
        )
        await self._restart.begin()

    def _watch_restart(self, sdp: str) -> None:
        restart = self._restart
        assert restart is not None
        restart.remote(sdp)
        pc = self._pc

        def done(task: asyncio.Task[bool]) -> None:
            if self._restart is restart:
                self._restart = None
            if task.cancelled() or pc is not self._pc:
                return
            if task.result():
                self._failed_restarts = 0
                self._post(lambda: self._connected(pc))
            else:
                # Said again after a pause that grows, as natkit-peer's ICE timeouts would make
                # it: a restart that cannot work (no relay) must not spin.
                pause = _natkit.reconnect_delay(self._failed_restarts)
                self._failed_restarts += 1
                asyncio.get_running_loop().call_later(pause, self._post, lambda: self._core.rtc("failed"))

        assert restart.task is not None
        restart.task.add_done_callback(done)

    async def _rollback(self, pc: RTCPeerConnection) -> None:
        """aiortc has no rollback: undo our pending offer by hand (glare, the polite side)."""
        if self._restart is not None:
            await self._restart.abandon()
            self._restart = None
        pc._RTCPeerConnection__pendingLocalDescription = None  # type: ignore[attr-defined]
        pc._RTCPeerConnection__setSignalingState("stable")  # type: ignore[attr-defined]

    # -- signaling -------------------------------------------------------------------------

    async def _read(self, ws: Any) -> None:
        try:
            async for text in ws:
                if isinstance(text, bytes):
                    continue
                try:
                    msg = json.loads(text)
                except ValueError:
                    continue
                self._track(msg)
                await self._inbox.put(lambda text=text: self._signal(text))
        except Exception as e:
            log.debug("signaling connection ended: %s", e)
        if ws is self._ws:
            await self._inbox.put(self._core.handle_signaling_lost)

    def _signal(self, text: str) -> None:
        try:
            self._core.handle_signal(text)
        except ValueError as e:
            log.debug("a signaling message natkit does not know: %s", e)

    def _track(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == "peer-joined" and msg.get("peer_id") not in self.peers:
            self.peers.append(msg["peer_id"])
        elif kind == "peer-left" and msg.get("peer_id") in self.peers:
            self.peers.remove(msg["peer_id"])
        elif kind in ("offer", "answer") and self.partner is None:
            self.partner = msg.get("from")
        elif kind == "error":
            log.warning("natkit-signal: %s: %s", msg.get("code"), msg.get("message"))

    async def _rejoin(self) -> None:
        lost = self._at
        for attempt in itertools.count():
            await asyncio.sleep(_natkit.reconnect_delay(attempt))
            at = (lost + 1 + attempt) % len(self._urls)
            try:
                ws, welcome, text = await join(
                    self._urls[at], self._room, token=self._token, peer_id=self.peer_id, timeout=REJOIN_TIMEOUT
                )
            except SignalingError as e:
                if _natkit.is_permanent_refusal(e.code):
                    await self._inbox.put(lambda e=e: self._core.handle_rejoin_failed(str(e)))
                    return
                continue
            except Error as e:
                log.debug("rejoin through %s failed: %s", self._urls[at], e)
                continue
            self._at, self._ws = at, ws
            self.peers = list(welcome.get("peers", []))
            self._reader = self._spawn(self._read(ws))
            await self._inbox.put(lambda text=text: self._core.handle_rejoined(text))
            return

    def _record(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:
                log.exception("on_event raised")
        log.info("natkit %s: %s", self.peer_id, json.dumps(event))


class _Connect:
    """What :func:`connect` returns: ``async with`` it, or ``await`` it."""

    def __init__(self, make: Callable[[], Awaitable[Session]]) -> None:
        self._make = make
        self._session: Optional[Session] = None

    def __await__(self) -> Generator[Any, None, Session]:
        return self._make().__await__()

    async def __aenter__(self) -> Session:
        self._session = await self._make()
        return self._session

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()


def connect(
    signal_url: Union[str, Sequence[str]],
    *,
    room: str,
    token: Optional[str] = None,
    peer_id: Optional[str] = None,
    relay: RelayMode = "auto",
    tls_ca: Optional[str] = None,
    timeout: float = 30.0,
    renew: bool = True,
    probe_timeout: float = 3.0,
    on_event: Optional[Callable[[dict[str, Any]], None]] = None,
) -> _Connect:
    """Joins ``room`` on natkit-signal and opens a data channel with a partner there, deciding
    the path as natkit-peer does::

        async with natkit.connect("ws://signal.example:8080", room="demo") as session:
            channel = await session.channel()
            await channel.send("Hello from peer1!")
            async for message in channel:
                print(message)

    ``signal_url``: one URL (``ws://HOST:PORT``; ``/v1/ws`` is added when missing) or several
    nodes of a cluster: the first that answers is joined, a lost connection or a ``reconnect``
    (a draining node) rejoins through the next. ``token``: the join token, when the server
    requires one (:func:`natkit.mint_token`). ``peer_id``: ask for this id (the server picks
    one otherwise). ``relay``: ``"auto"`` probes the NAT, exchanges NAT summaries with the partner
    and applies natkit-peer's pair rule (relay-only ICE when the pair needs it); ``"always"``
    relays; ``"never"`` leaves TURN out. ``tls_ca``: a PEM file of CA certificates trusted (with
    the system's) for ``turns:`` relays. ``timeout``: seconds until the channel must be open.
    ``renew``: renew the TURN credential before it expires (on by default). ``on_event``: called
    with each of the session's events as it happens (see :attr:`Session.events`).

    The session leaves the room when the ``async with`` block ends (or on
    :meth:`Session.close`). Raises :class:`natkit.SignalingError` with the server's code
    (``unauthorized``, ``room-full``, ``rate-limited``, ...) when the join is refused, and
    :class:`natkit.Timeout` (stage ``join``) when no server answers in time.
    """
    urls = [signal_url] if isinstance(signal_url, str) else list(signal_url)
    if not urls:
        raise ValueError("connect needs at least one signaling URL")
    if relay not in ("auto", "always", "never"):
        raise ValueError(f'relay must be "auto", "always" or "never", not {relay!r}')
    if not (timeout > 0):
        raise ValueError(f"timeout must be positive, not {timeout}")

    async def make() -> Session:
        _rtc.quicken_consent()
        _rtc.retrigger_checks()
        loop = asyncio.get_running_loop()
        began = loop.time()
        deadline = began + timeout
        last: Optional[Error] = None
        for round_ in itertools.count():
            if round_ > 0:
                pause = _natkit.reconnect_delay(round_ - 1)
                if loop.time() + pause >= deadline:
                    break
                await asyncio.sleep(pause)
            for at, url in enumerate(urls):
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    ws, welcome, text = await join(url, room, token=token, peer_id=peer_id, timeout=min(left, 10.0))
                except SignalingError as e:
                    if _natkit.is_permanent_refusal(e.code):
                        raise
                    last = e
                    continue
                except Error as e:
                    if len(urls) == 1 and not isinstance(e, Timeout):
                        raise
                    last = e
                    continue
                return Session(
                    urls,
                    at,
                    ws,
                    welcome,
                    text,
                    room=room,
                    token=token,
                    relay=relay,
                    tls_ca=tls_ca,
                    timeout=max(deadline - loop.time(), 1.0),
                    renew=renew,
                    probe_timeout=probe_timeout,
                    on_event=on_event,
                    spent=loop.time() - began,
                )
        if last is not None:
            raise last
        raise Timeout("join", f"join: no welcome from {' or '.join(urls)} within {timeout} s")

    return _Connect(make)
