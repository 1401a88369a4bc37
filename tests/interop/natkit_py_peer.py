"""A natkit Python peer for the NAT lab tests: ``natkit.connect`` with natkit-peer's modes, its
events printed as natkit-peer --json prints them (one JSON object per line), so the Rust lab
tests read both peers alike.

    natkit_py_peer.py --signal URL[,URL...] --room ROOM [--token T] [--peer-id ID] [--relay MODE]
                      [--tls-ca PEM] [--timeout S] [--no-renew] (--echo | --send TEXT | --chat)

--echo answers every message until the partner leaves; --send sends TEXT and waits for one
reply; --chat sends each line of standard input and prints what arrives, until a second after
the end of input (the testkit's send_every_second and assert_session_recovers drive it).
Exit status 0 when the mode did what it asked, 1 otherwise (a "failed" event says where).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import natkit


def emit(event: dict) -> None:
    print(json.dumps(event), flush=True)


async def chat(channel: natkit.Channel) -> None:
    """Sends each line of standard input; prints what arrives; ends a second after the input."""
    loop = asyncio.get_running_loop()

    async def show() -> None:
        async for m in channel:
            emit({"event": "message", "data": m if isinstance(m, str) else m.hex()})

    printer = asyncio.ensure_future(show())
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        await channel.send(line.rstrip("\n"))
    try:
        await asyncio.wait_for(asyncio.shield(printer), 1.0)
    except asyncio.TimeoutError:
        printer.cancel()


async def main(a: argparse.Namespace) -> int:
    try:
        signal = [u for arg in a.signal for u in arg.split(",")]
        async with natkit.connect(signal, room=a.room, token=a.token, peer_id=a.peer_id, relay=a.relay, tls_ca=a.tls_ca,
                                  timeout=a.timeout, renew=not a.no_renew, on_event=emit) as session:
            channel = await session.channel(timeout=a.timeout)
            p = channel.path
            emit({"event": "channel", "peer_id": channel.peer_id, "local": p.local, "remote": p.remote,
                  "relay_transport": p.relay_transport, "rule": p.rule, "relay_only": p.relay_only})
            if a.send is not None:
                await channel.send(a.send)
                emit({"event": "message", "data": await asyncio.wait_for(channel.recv(), a.timeout)})
            elif a.chat:
                await chat(channel)
            else:
                async for m in channel:
                    emit({"event": "message", "data": m if isinstance(m, str) else m.hex()})
                    await channel.send(m)
            return 0
    except (natkit.Error, asyncio.TimeoutError) as e:
        emit({"event": "failed", "stage": getattr(e, "stage", getattr(e, "code", "")), "message": str(e)})
        return 1


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--signal", action="append", required=True)
    p.add_argument("--room", required=True)
    p.add_argument("--token")
    p.add_argument("--peer-id")
    p.add_argument("--relay", default="auto")
    p.add_argument("--tls-ca")
    p.add_argument("--timeout", type=float, default=30)
    p.add_argument("--no-renew", action="store_true")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--echo", action="store_true")
    mode.add_argument("--send")
    mode.add_argument("--chat", action="store_true")
    sys.exit(asyncio.run(main(p.parse_args())))
