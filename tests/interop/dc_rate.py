"""Data-channel message rate for the Python benchmark (crates/peer/benches/lab_python.rs): one
side sends COUNT messages of SIZE bytes as fast as the channel takes them, the other counts them.

    dc_rate.py --impl natkit|aiortc --signal URL --room ROOM (--send | --recv)
               [--count N] [--size BYTES] [--relay always]

``natkit``: natkit.connect and its Channel. ``aiortc``: plain aiortc with hand-written signaling
(join, the welcome's ICE servers as they are, the offer and answer with their candidates), as an
aiortc user writes it today. Both senders wait while more than 1 MiB is buffered. The receiver
prints {"event":"rate","messages":N,"seconds":S,"per_second":R}, timed from the first message to
the last; the sender prints {"event":"sent"}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

HIGH_WATER = 1 << 20


def emit(**event: Any) -> None:
    print(json.dumps(event), flush=True)


class Counter:
    def __init__(self, count: int) -> None:
        self.count, self.got, self.first, self.last = count, 0, 0.0, 0.0
        self.done = asyncio.Event()

    def arrived(self) -> None:
        now = time.monotonic()
        if self.got == 0:
            self.first = now
        self.got += 1
        self.last = now
        if self.got >= self.count:
            self.done.set()

    def report(self) -> None:
        span = max(self.last - self.first, 1e-6)
        emit(event="rate", messages=self.got, seconds=span, per_second=(self.got - 1) / span)


async def with_natkit(a: argparse.Namespace) -> None:
    import natkit

    async with natkit.connect(a.signal, room=a.room, relay=a.relay, timeout=60) as session:
        channel = await session.channel(timeout=60)
        emit(event="channel", local=channel.path.local if channel.path else None)
        if a.send:
            payload = b"x" * a.size
            for _ in range(a.count):
                await channel.send(payload)
            emit(event="sent")
            await channel.recv()  # the receiver says when it has everything
        else:
            counter = Counter(a.count)
            async for _ in channel:
                counter.arrived()
                if counter.done.is_set():
                    break
            counter.report()
            await channel.send("done")


async def with_aiortc(a: argparse.Namespace) -> None:
    import websockets
    from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
    from aiortc.rtcconfiguration import RTCIceTransportPolicy

    url = a.signal.rstrip("/") + "/v1/ws"
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"type": "join", "room": a.room}))
        welcome = json.loads(await ws.recv())
        servers = [RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
                   for s in welcome["ice_servers"]]
        policy = RTCIceTransportPolicy.RELAY if a.relay == "always" else RTCIceTransportPolicy.ALL
        pc = RTCPeerConnection(RTCConfiguration(iceServers=servers, iceTransportPolicy=policy))
        opened: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        counter = Counter(a.count)
        finished = asyncio.Event()

        def wire(ch: Any) -> None:
            ch.bufferedAmountLowThreshold = HIGH_WATER // 4

            @ch.on("message")
            def on_message(m: Any) -> None:
                if isinstance(m, str):
                    finished.set()
                    return
                counter.arrived()

            if ch.readyState == "open":
                opened.done() or opened.set_result(ch)
            ch.on("open", lambda: opened.done() or opened.set_result(ch))

        pc.on("datachannel", wire)
        remote = welcome["peers"][0] if welcome["peers"] else None
        if remote is not None:
            wire(pc.createDataChannel("rate"))
            await pc.setLocalDescription(await pc.createOffer())
            await ws.send(json.dumps({"type": "offer", "to": remote, "sdp": pc.localDescription.sdp}))

        async def signaling() -> None:
            async for text in ws:
                m = json.loads(text)
                if m["type"] == "offer":
                    await pc.setRemoteDescription(RTCSessionDescription(m["sdp"], "offer"))
                    await pc.setLocalDescription(await pc.createAnswer())
                    await ws.send(json.dumps({"type": "answer", "to": m["from"], "sdp": pc.localDescription.sdp}))
                elif m["type"] == "answer":
                    await pc.setRemoteDescription(RTCSessionDescription(m["sdp"], "answer"))

        sig = asyncio.ensure_future(signaling())
        ch = await asyncio.wait_for(opened, 60)
        emit(event="channel")
        if a.send:
            payload = b"x" * a.size
            drained = asyncio.Event()
            ch.on("bufferedamountlow", drained.set)
            for _ in range(a.count):
                ch.send(payload)
                if ch.bufferedAmount > HIGH_WATER:
                    drained.clear()
                    await drained.wait()
            emit(event="sent")
            await finished.wait()
        else:
            await counter.done.wait()
            counter.report()
            ch.send("done")
            await asyncio.sleep(1)
        sig.cancel()
        await pc.close()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--impl", choices=["natkit", "aiortc"], required=True)
    p.add_argument("--signal", required=True)
    p.add_argument("--room", required=True)
    role = p.add_mutually_exclusive_group(required=True)
    role.add_argument("--send", action="store_true")
    role.add_argument("--recv", action="store_true")
    p.add_argument("--count", type=int, default=5000)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--relay", default="always")
    a = p.parse_args()
    asyncio.run(with_natkit(a) if a.impl == "natkit" else with_aiortc(a))


if __name__ == "__main__":
    main()
