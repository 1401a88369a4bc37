"""natkit.connect on loopback: Python <-> Python and Python <-> natkit-peer in both roles, the
chat command and the examples against a fresh natkit-signal, refusals and timeouts."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import natkit
from conftest import REPO, SECRET, binary


def token(room: str) -> str:
    return natkit.mint_token(SECRET, room, ttl=300)


async def exchange(url: str, room: str, me: str, relay: str) -> tuple[list[object], natkit.Path, str, list[str]]:
    """Joins, opens the channel, sends a text and a binary message, returns what arrived."""
    async with natkit.connect(url, room=room, token=token(room), relay=relay, timeout=20) as s:
        ch = await s.channel(timeout=20)
        await ch.send(f"text from {me}")
        await ch.send(me.encode() + b"\x00\xff")
        got = [await asyncio.wait_for(ch.recv(), 10) for _ in range(2)]
        assert ch.peer_id == s.partner
        return got, ch.path, s.peer_id, [e["event"] for e in s.events]


@pytest.mark.parametrize("relay", ["auto", "always"])
def test_two_python_peers_exchange_text_and_bytes(signal_url, relay):
    async def main():
        first = asyncio.ensure_future(exchange(signal_url, f"py-{relay}", "a", relay))
        await asyncio.sleep(0.3)
        return await asyncio.gather(first, exchange(signal_url, f"py-{relay}", "b", relay))

    (got_a, path_a, id_a, events_a), (got_b, path_b, id_b, events_b) = asyncio.run(main())
    assert got_a == ["text from b", b"b\x00\xff"] and isinstance(got_a[0], str)
    assert got_b == ["text from a", b"a\x00\xff"] and isinstance(got_b[1], bytes)
    assert id_a != id_b
    for path, events in [(path_a, events_a), (path_b, events_b)]:
        assert events[:1] == ["joined"] and "connected" in events, events
        if relay == "always":
            assert (path.local, path.rule, path.relay_only, path.relay_transport) == (
                "relay", "relay-always", True, "udp"), path
        else:
            # Both probed (loopback: no NAT), summaries exchanged, the rule allows direct.
            assert "probe" in events and path.rule == "direct-possible", (path, events)
            assert not path.relay_only and path.local in ("host", "srflx", "prflx"), path


class PeerProcess:
    """natkit-peer with --json: its events, one JSON object per line."""

    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen(
            [str(binary("natkit-peer")), "--json", *args],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env={**os.environ, "RUST_LOG": "off"},
        )

    def events(self, timeout: float = 30) -> list[dict]:
        out, _ = self.proc.communicate(timeout=timeout)
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("relay", ["auto", "always"])
def test_python_offers_to_a_natkit_peer(signal_url, relay):
    """natkit-peer --echo is in the room first: the Python peer joins second and offers."""
    room = f"rust-echo-{relay}"
    rust = PeerProcess(["--signal", signal_url, "--room", room, "--token", token(room), "--echo",
                        "--relay", relay, "--timeout", "20"])

    async def main():
        await asyncio.sleep(1.0)
        async with natkit.connect(signal_url, room=room, token=token(room), relay=relay) as s:
            assert s.peers, "natkit-peer is in the room"
            ch = await s.channel(timeout=20)
            await ch.send("ping")
            await ch.send(b"\x01\x02")
            return [await asyncio.wait_for(ch.recv(), 10) for _ in range(2)], ch.path

    got, path = asyncio.run(main())
    assert got == ["ping", b"\x01\x02"], "the echo keeps text as text and binary as binary"
    events = rust.events()
    assert [e["data"] for e in events if e["event"] == "message"] == ["ping", "\x01\x02"]
    # Both sides applied the same row of the rule table, from both NAT summaries in auto.
    policy = next(e for e in events if e["event"] == "policy")
    assert policy["rule"] == path.rule
    if relay == "auto":
        assert policy["remote_nat"] is not None, "the Python peer sent its NAT summary"
    else:
        assert path.local == "relay" and path.relay_only


def test_python_answers_a_natkit_peer(signal_url):
    """The Python peer is in the room first: natkit-peer --send joins, offers, and must get its
    reply."""
    room = "rust-send"

    async def main():
        async with natkit.connect(signal_url, room=room, token=token(room)) as s:
            rust = PeerProcess(["--signal", signal_url, "--room", room, "--token", token(room),
                                "--send", "hello from natkit-peer", "--timeout", "20"])
            ch = await s.channel(timeout=20)
            message = await asyncio.wait_for(ch.recv(), 10)
            await ch.send(message)
            return message, rust, ch.path

    message, rust, path = asyncio.run(main())
    assert message == "hello from natkit-peer"
    events = rust.events()
    assert rust.proc.returncode == 0, events
    assert {"event": "message", "data": "hello from natkit-peer"} in events
    policy = next(e for e in events if e["event"] == "policy")
    assert policy["remote_nat"] is not None and policy["rule"] == path.rule


def test_a_wrong_token_fails_fast_with_unauthorized(signal_url):
    async def main(tok):
        async with natkit.connect(signal_url, room="r", token=tok):
            pass

    for tok in [None, natkit.mint_token("another-secret", "r"), token("another-room")]:
        started = time.monotonic()
        with pytest.raises(natkit.SignalingError) as refused:
            asyncio.run(main(tok))
        assert refused.value.code == "unauthorized"
        assert time.monotonic() - started < 2


def test_several_urls_join_through_the_first_that_answers(signal_url):
    async def main():
        async with natkit.connect(["ws://127.0.0.1:9", signal_url], room="many", token=token("many")) as s:
            return s.peer_id

    assert asyncio.run(main())


def test_alone_in_a_room_the_timeout_names_the_stage(signal_url):
    async def main():
        async with natkit.connect(signal_url, room="alone", token=token("alone")) as s:
            await s.channel(timeout=1.5)

    started = time.monotonic()
    with pytest.raises(natkit.Timeout) as late:
        asyncio.run(main())
    assert late.value.stage == "partner"
    assert time.monotonic() - started < 5


def test_a_stun_url_where_nothing_listens_fails_with_stage_config(daemons):
    import socket

    gone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    gone.bind(("127.0.0.1", 0))
    port = gone.getsockname()[1]
    gone.close()
    d = daemons(
        [binary("natkit-signal"), "--listen", "127.0.0.1:0", "--no-relay", "--metrics-listen",
         "off", "--ice-server", f"stun:127.0.0.1:{port}"],
        env={"NATKIT_SIGNAL_TOKEN_SECRET": SECRET},
    )

    async def main():
        async with natkit.connect(f"ws://{d.addr('http')}", room="cfg", token=token("cfg")) as s:
            await s.channel(timeout=10)

    with pytest.raises(natkit.SessionError) as failed:
        asyncio.run(main())
    assert failed.value.stage == "config"
    assert f"no STUN server at 127.0.0.1:{port}: port unreachable" in str(failed.value)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="relay"):
        natkit.connect("ws://x", room="r", relay="sometimes")
    with pytest.raises(ValueError, match="URL"):
        natkit.connect([], room="r")


def run_python(args: list[str], **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kw)


def test_the_examples_talk_through_a_fresh_natkit_signal(signal_url):
    examples = REPO / "examples" / "python"
    for f in ["peer1.py", "peer2.py"]:
        assert len((examples / f).read_text().splitlines()) < 30, f
    peer2 = run_python([str(examples / "peer2.py"), signal_url, token("chat")])
    time.sleep(1.5)
    peer1 = run_python([str(examples / "peer1.py"), signal_url, token("chat")])
    out1, err1 = peer1.communicate(timeout=40)
    out2, err2 = peer2.communicate(timeout=40)
    assert "received: Hello from peer1!" in out2, out2 + err2
    assert "peer2 says: Hello from peer2!" in out1, out1 + err1
    assert peer1.returncode == 0 and peer2.returncode == 0


def test_the_chat_command_talks_to_natkit_peer(signal_url):
    room = "chat-cli"
    rust = PeerProcess(["--signal", signal_url, "--room", room, "--token", token(room), "--echo",
                        "--timeout", "20"])
    time.sleep(1.0)
    chat = run_python(["-m", "natkit", "chat", "--signal", signal_url, "--room", room,
                       "--token", token(room)], stdin=subprocess.PIPE)
    out, err = chat.communicate("first line\nsecond line\n", timeout=40)
    assert chat.returncode == 0, err
    assert out.splitlines() == ["first line", "second line"], (out, err)
    assert "# connected to" in err
    rust.proc.kill()

    bad = run_python(["-m", "natkit", "chat", "--signal", signal_url, "--room", room], stdin=subprocess.PIPE)
    _, err = bad.communicate("", timeout=20)
    assert bad.returncode == 1 and "unauthorized" in err, err
