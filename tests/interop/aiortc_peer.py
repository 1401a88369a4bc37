#!/usr/bin/env python3
"""An aiortc (Python WebRTC) peer speaking natkit-signal's protocol, for interoperability tests.

    aiortc_peer.py --signal ws://HOST:8080 --room ROOM (--echo | --send TEXT) [--timeout S]
                   [--turn-transport tcp|tls]

--turn-transport keeps only the TURN URLs over that transport (no STUN, no TURN over UDP).

Prints one JSON object per event, like natkit-peer --json. aiortc gathers every candidate before
its description is ready and never trickles; it applies the candidates natkit-peer trickles.
Exit status 0 when the exchange completed (--send got its reply; --echo served until the peer left
or the timeout), 1 otherwise.
"""
import argparse
import asyncio
import json
import sys

import websockets
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp


def emit(**event):
    print(json.dumps(event), flush=True)


async def run(args):
    url = args.signal.rstrip("/")
    if not url.endswith("/v1/ws"):
        url += "/v1/ws"
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"type": "join", "room": args.room}))
        while True:
            welcome = json.loads(await ws.recv())
            if welcome["type"] == "welcome":
                break
            if welcome["type"] == "error":
                emit(event="failed", stage="signaling", message=welcome["message"])
                return 1
        emit(event="joined", peer_id=welcome["peer_id"], peers=welcome["peers"])
        def wanted(u):
            if args.turn_transport == "tcp":
                return u.startswith("turn:") and "transport=tcp" in u
            if args.turn_transport == "tls":
                return u.startswith("turns:")
            return True

        servers = [
            RTCIceServer(urls=[u for u in s["urls"] if wanted(u)], username=s.get("username"),
                         credential=s.get("credential"))
            for s in welcome["ice_servers"]
        ]
        servers = [s for s in servers if s.urls]
        pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        done = asyncio.get_running_loop().create_future()
        remote = None

        def wire(channel):
            def greet():
                if args.send is not None:
                    channel.send(args.send)

            if channel.readyState == "open":
                greet()
            else:
                channel.on("open", greet)

            @channel.on("message")
            def on_message(message):
                emit(event="message", data=message)
                if args.echo:
                    channel.send(message)
                elif not done.done():
                    done.set_result(0)

        @pc.on("datachannel")
        def on_datachannel(channel):
            wire(channel)

        @pc.on("connectionstatechange")
        async def on_state():
            emit(event="state", state=pc.connectionState)
            if pc.connectionState == "failed" and not done.done():
                done.set_result(1)

        if welcome["peers"]:
            # The later joiner offers (natkit convention); the offer carries every candidate.
            remote = welcome["peers"][0]
            wire(pc.createDataChannel("natkit"))
            await pc.setLocalDescription(await pc.createOffer())
            await ws.send(json.dumps({"type": "offer", "to": remote, "sdp": pc.localDescription.sdp}))

        async def signaling():
            nonlocal remote
            async for raw in ws:
                m = json.loads(raw)
                if m["type"] == "offer":
                    remote = m["from"]
                    await pc.setRemoteDescription(RTCSessionDescription(sdp=m["sdp"], type="offer"))
                    await pc.setLocalDescription(await pc.createAnswer())
                    await ws.send(json.dumps({"type": "answer", "to": remote, "sdp": pc.localDescription.sdp}))
                elif m["type"] == "answer":
                    await pc.setRemoteDescription(RTCSessionDescription(sdp=m["sdp"], type="answer"))
                elif m["type"] == "candidate" and m["candidate"]:
                    c = m["candidate"]
                    cand = candidate_from_sdp(c["candidate"].split(":", 1)[1])
                    cand.sdpMid = c.get("sdpMid")
                    cand.sdpMLineIndex = c.get("sdpMLineIndex")
                    await pc.addIceCandidate(cand)
                elif m["type"] == "peer-left" and m["peer_id"] == remote and not done.done():
                    done.set_result(0 if args.echo else 1)

        task = asyncio.create_task(signaling())
        try:
            code = await asyncio.wait_for(done, args.timeout)
        except asyncio.TimeoutError:
            code = 0 if args.echo else 1
            if code:
                emit(event="failed", stage="timeout", message="no reply in time")
        task.cancel()
        await pc.close()
        emit(event="closed", code=code)
        return code


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--signal", required=True)
    p.add_argument("--room", required=True)
    p.add_argument("--turn-transport", choices=["tcp", "tls"])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--echo", action="store_true")
    g.add_argument("--send")
    p.add_argument("--timeout", type=float, default=30)
    sys.exit(asyncio.run(run(p.parse_args())))


if __name__ == "__main__":
    main()
