"""aiortc's signaling interface over natkit-signal, for programs that drive their own
``RTCPeerConnection``."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Optional, Union

import websockets
from aiortc import RTCIceCandidate, RTCIceServer, RTCSessionDescription
from aiortc.contrib.signaling import BYE
from aiortc.sdp import candidate_from_sdp, candidate_to_sdp

from .errors import Error, Timeout

SignalingObject = Union[RTCSessionDescription, RTCIceCandidate, object, None]


class SignalingError(Error):
    """natkit-signal refused a request; ``code`` is its code (``unauthorized``, ``room-full``,
    ``rate-limited``, ``bad-peer-id``, ...; docs/protocol.md lists them all)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


# natkit-signal's own limit on a message (an SDP with many candidates stays far below it).
MAX_MESSAGE = 64 * 1024


def ws_url(url: str) -> str:
    """``ws://HOST:PORT`` as natkit-signal's WebSocket (``/v1/ws`` added when missing)."""
    url = url.rstrip("/")
    return url if url.endswith("/v1/ws") else url + "/v1/ws"


async def join(
    url: str,
    room: str,
    *,
    token: Optional[str],
    peer_id: Optional[str],
    timeout: float,
) -> tuple[Any, dict[str, Any], str]:
    """Connects to natkit-signal at ``url`` and joins ``room``: the open WebSocket, the welcome,
    and the welcome as the server sent it. Raises :class:`SignalingError` (the server's code)
    when refused, :class:`natkit.Timeout` (stage ``join``) when no answer comes in time, and
    :class:`natkit.Error` when the server cannot be reached."""
    url = ws_url(url)
    ws = None
    try:
        ws = await asyncio.wait_for(websockets.connect(url, max_size=MAX_MESSAGE), timeout)
        msg: dict[str, Any] = {"type": "join", "room": room, "version": 1}
        if token is not None:
            msg["token"] = token
        if peer_id is not None:
            msg["peer_id"] = peer_id
        await ws.send(json.dumps(msg))
        text = await asyncio.wait_for(ws.recv(), timeout)
        first = json.loads(text)
    except asyncio.TimeoutError:
        await _close(ws)
        raise Timeout("join", f"join: no welcome from {url} within {timeout} s") from None
    except (OSError, websockets.WebSocketException, ValueError) as e:
        await _close(ws)
        raise Error(f"join: cannot reach {url}: {e}") from e
    if first.get("type") == "error":
        await _close(ws)
        raise SignalingError(first.get("code", "unknown"), first.get("message", ""))
    if first.get("type") != "welcome":
        await _close(ws)
        raise Error(f"join: {url} answered {first.get('type')!r}, not a welcome")
    return ws, first, text if isinstance(text, str) else text.decode()


async def _close(ws: Any) -> None:
    if ws is not None:
        await ws.close()


class NatkitSignaling:
    """aiortc's signaling interface (``connect``, ``send``, ``receive``, ``close``) over one
    natkit-signal room, with one partner: the first peer the welcome lists, else the first that
    joins or sends an offer.

    natkit's convention is that the peer joining a room where others already are makes the
    offer: :attr:`offerer` says whether that is this side. :attr:`ice_servers` are the STUN and
    TURN servers (with a fresh TURN credential) the welcome gave, for ``RTCConfiguration``.

    ``receive`` returns an ``RTCSessionDescription``, an ``RTCIceCandidate``, ``None`` for the
    partner's end of candidates, or aiortc's ``BYE`` when the partner left or the connection
    closed; it raises :class:`SignalingError` when the server answers with an error.
    """

    def __init__(
        self,
        url: str,
        *,
        room: str,
        token: Optional[str] = None,
        peer_id: Optional[str] = None,
        timeout: float = 10.0,
    ) -> None:
        self.url = ws_url(url)
        self.room = room
        self._token = token
        self._requested_id = peer_id
        self._timeout = timeout
        self._ws: Any = None
        self.peer_id: Optional[str] = None
        self.peers: list[str] = []
        self.partner: Optional[str] = None
        self.offerer = False
        self.ice_servers: list[RTCIceServer] = []
        self.welcome: dict[str, Any] = {}

    async def __aenter__(self) -> NatkitSignaling:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Joins the room; raises :class:`SignalingError` (the server's code) when refused and
        :class:`natkit.Timeout` (stage ``join``) when no answer comes in time."""
        self._ws, first, _ = await join(
            self.url, self.room, token=self._token, peer_id=self._requested_id, timeout=self._timeout
        )
        self.welcome = first
        self.peer_id = first["peer_id"]
        self.peers = list(first.get("peers", []))
        self.offerer = bool(self.peers)
        self.partner = self.peers[0] if self.peers else None
        self.ice_servers = [
            RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
            for s in first.get("ice_servers", [])
        ]

    async def send(self, obj: SignalingObject) -> None:
        """Sends a description or a candidate to the partner (``None``: end of candidates;
        ``BYE``: leave the room)."""
        if obj is BYE:
            await self.close()
            return
        if self._ws is None:
            raise Error("not connected: call connect() first")
        if self.partner is None:
            raise Error("no partner in the room yet: receive() until one joins")
        if isinstance(obj, RTCSessionDescription):
            msg: dict[str, Any] = {"type": obj.type, "to": self.partner, "sdp": obj.sdp}
        elif isinstance(obj, RTCIceCandidate):
            msg = {
                "type": "candidate",
                "to": self.partner,
                "candidate": {
                    "candidate": "candidate:" + candidate_to_sdp(obj),
                    "sdpMid": obj.sdpMid,
                    "sdpMLineIndex": obj.sdpMLineIndex,
                },
            }
        elif obj is None:
            msg = {"type": "candidate", "to": self.partner, "candidate": None}
        else:
            raise TypeError(f"cannot send {obj!r}: a description, a candidate, None or BYE")
        await self._ws.send(json.dumps(msg))

    async def receive(self) -> SignalingObject:
        """The partner's next description or candidate (see the class)."""
        if self._ws is None:
            return BYE
        while True:
            try:
                m = json.loads(await self._ws.recv())
            except websockets.ConnectionClosed:
                return BYE
            kind = m.get("type")
            if kind == "error":
                raise SignalingError(m.get("code", "unknown"), m.get("message", ""))
            if kind == "peer-joined":
                self.peers.append(m["peer_id"])
                self.partner = self.partner or m["peer_id"]
                continue
            if kind == "peer-left":
                if m["peer_id"] in self.peers:
                    self.peers.remove(m["peer_id"])
                if m["peer_id"] == self.partner:
                    return BYE
                continue
            sender = m.get("from")
            if kind not in ("offer", "answer", "candidate") or sender is None:
                continue  # pong, ice-servers, nat-summary, messages of newer servers
            self.partner = self.partner or sender
            if sender != self.partner:
                continue
            if kind in ("offer", "answer"):
                return RTCSessionDescription(sdp=m["sdp"], type=kind)
            c = m.get("candidate")
            if c is None:
                return None
            candidate = candidate_from_sdp(c["candidate"].split(":", 1)[1])
            candidate.sdpMid = c.get("sdpMid")
            candidate.sdpMLineIndex = c.get("sdpMLineIndex")
            return candidate

    async def close(self) -> None:
        """Leaves the room and closes the connection (again: nothing)."""
        ws, self._ws = self._ws, None
        if ws is None:
            return
        try:
            await ws.send(json.dumps({"type": "leave"}))
        except websockets.WebSocketException:
            pass
        await ws.close()
