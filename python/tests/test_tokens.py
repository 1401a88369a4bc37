"""Join tokens minted in Python are accepted by natkit-signal, and natkit-signal's are accepted
by Python; refusals carry the code natkit-signal answers with."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time

import pytest
import websockets

import natkit
from conftest import binary

SECRET = "python-tests-token-secret"


@pytest.fixture
def signal(daemons):
    return daemons(
        [binary("natkit-signal"), "--listen", "127.0.0.1:0", "--relay-listen", "127.0.0.1:0",
         "--metrics-listen", "off"],
        env={"NATKIT_SIGNAL_TOKEN_SECRET": SECRET, "NATKIT_TURN_SECRET": "turn-secret"},
    )


async def join(http: str, room: str, token: str) -> dict:
    async with websockets.connect(f"ws://{http}/v1/ws") as ws:
        await ws.send(json.dumps({"type": "join", "room": room, "token": token}))
        return json.loads(await asyncio.wait_for(ws.recv(), 5))


def test_a_python_token_joins_natkit_signal(signal):
    http = signal.addr("http")
    token = natkit.mint_token(SECRET, "pyroom", ttl=60)
    welcome = asyncio.run(join(http, "pyroom", token))
    assert welcome["type"] == "welcome" and welcome["room"] == "pyroom", welcome
    # Another room, another secret, an expired token: refused with the server's code.
    for bad in [
        (natkit.mint_token(SECRET, "other", ttl=60), "pyroom"),
        (natkit.mint_token("not-the-secret", "pyroom", ttl=60), "pyroom"),
        (natkit.mint_token(SECRET, "pyroom", ttl=1, now=time.time() - 120), "pyroom"),
    ]:
        answer = asyncio.run(join(http, bad[1], bad[0]))
        assert (answer["type"], answer["code"]) == ("error", "unauthorized"), answer


def test_a_natkit_signal_token_verifies_in_python():
    out = subprocess.run(
        [binary("natkit-signal"), "token", "--room", "fromrust", "--ttl", "60"],
        env={"NATKIT_SIGNAL_TOKEN_SECRET": SECRET, "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, check=True,
    )
    token = out.stdout.strip()
    assert natkit.verify_token(SECRET, token) == "fromrust"
    with pytest.raises(natkit.TokenError) as refused:
        natkit.verify_token("another-secret", token)
    assert refused.value.code == "unauthorized"
    assert isinstance(refused.value, natkit.Error)
    with pytest.raises(natkit.TokenError, match="expired"):
        natkit.verify_token(SECRET, token, now=time.time() + 3600)


def test_bad_arguments_say_what_is_wrong():
    for args, says in [
        (("", "room"), "secret is empty"),
        (("s", "no spaces"), "room names"),
        (("s", "r" * 65), "room names"),
    ]:
        with pytest.raises(ValueError, match=says):
            natkit.mint_token(*args)
    for ttl in [0, -5, 1.5, True]:
        with pytest.raises(ValueError, match="ttl"):
            natkit.mint_token("s", "room", ttl=ttl)
    with pytest.raises(natkit.TokenError, match="v1"):
        natkit.verify_token("s", "garbage")
