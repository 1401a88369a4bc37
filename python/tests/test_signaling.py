"""NatkitSignaling: two aiortc peers that drive their own RTCPeerConnection meet through
natkit-signal on loopback; refusals carry the server's code."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiortc import RTCIceCandidate, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.signaling import BYE

import natkit
from conftest import SECRET

async def answer_and_print(url: str, joined: asyncio.Event) -> str:
    """peer2: waits for the offer, answers, returns the first message on the channel."""
    token = natkit.mint_token(SECRET, "chatroom", ttl=60)
    async with natkit.NatkitSignaling(url, room="chatroom", token=token) as sig:
        assert not sig.offerer and sig.peers == []
        assert any(u.startswith("turn:") for s in sig.ice_servers for u in s.urls)
        pc = RTCPeerConnection()
        got: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        @pc.on("datachannel")
        def on_channel(channel):
            channel.on("message", lambda m: got.done() or got.set_result(m))

        joined.set()
        while True:
            obj = await sig.receive()
            if isinstance(obj, RTCSessionDescription):
                assert obj.type == "offer"
                await pc.setRemoteDescription(obj)
                await pc.setLocalDescription(await pc.createAnswer())
                await sig.send(pc.localDescription)
                await sig.send(None)  # aiortc gathers before it answers: no more candidates
                break
            if isinstance(obj, RTCIceCandidate):
                await pc.addIceCandidate(obj)
        try:
            return await asyncio.wait_for(got, 20)
        finally:
            await pc.close()


async def offer_and_send(url: str, joined: asyncio.Event) -> str:
    """peer1: joins second (so it offers), opens "chat", sends a greeting."""
    await joined.wait()
    token = natkit.mint_token(SECRET, "chatroom", ttl=60)
    async with natkit.NatkitSignaling(url, room="chatroom", token=token) as sig:
        assert sig.offerer and sig.partner == sig.peers[0]
        pc = RTCPeerConnection()
        channel = pc.createDataChannel("chat")
        opened = asyncio.Event()
        channel.on("open", opened.set)
        await pc.setLocalDescription(await pc.createOffer())
        await sig.send(pc.localDescription)
        await sig.send(None)
        while True:
            obj = await sig.receive()
            if isinstance(obj, RTCSessionDescription):
                await pc.setRemoteDescription(obj)
                break
            assert obj is None or isinstance(obj, RTCIceCandidate), obj
        await asyncio.wait_for(opened.wait(), 20)
        channel.send("Hello from peer1!")
        await asyncio.sleep(0.5)
        await pc.close()
        return sig.peer_id or ""


def test_two_aiortc_peers_meet_through_natkit_signal(signal_url):
    async def main():
        joined = asyncio.Event()
        return await asyncio.gather(
            answer_and_print(signal_url, joined), offer_and_send(signal_url, joined)
        )

    received, _ = asyncio.run(main())
    assert received == "Hello from peer1!"


def test_a_partner_leaving_is_bye(signal_url):
    async def main():
        token = natkit.mint_token(SECRET, "byes", ttl=60)
        async with natkit.NatkitSignaling(signal_url, room="byes", token=token) as first:
            async with natkit.NatkitSignaling(signal_url, room="byes", token=token) as second:
                assert second.partner == first.peer_id
            return await asyncio.wait_for(first.receive(), 5)

    assert asyncio.run(main()) is BYE


def test_a_wrong_token_fails_fast_with_the_server_code(signal_url):
    async def main(token):
        async with natkit.NatkitSignaling(signal_url, room="r", token=token):
            pass

    for token in [None, natkit.mint_token("another-secret", "r", ttl=60), "garbage"]:
        started = time.monotonic()
        with pytest.raises(natkit.SignalingError) as refused:
            asyncio.run(main(token))
        assert refused.value.code == "unauthorized", refused.value
        assert isinstance(refused.value, natkit.Error)
        assert time.monotonic() - started < 2


def test_an_unreachable_server_and_a_silent_one_are_clear_errors():
    async def main(url, timeout):
        await natkit.NatkitSignaling(url, room="r", timeout=timeout).connect()

    with pytest.raises(natkit.Error, match="cannot reach"):
        asyncio.run(main("ws://127.0.0.1:9", 2))

    async def silent():
        # A TCP server that accepts and never answers the WebSocket handshake.
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            await main(f"ws://127.0.0.1:{port}", 0.5)
        finally:
            server.close()

    with pytest.raises(natkit.Timeout) as late:
        asyncio.run(silent())
    assert late.value.stage == "join"
