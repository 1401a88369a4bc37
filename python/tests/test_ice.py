"""natkit's change to aioice's ICE checks (``_rtc.retrigger_checks``), on two aioice agents over
loopback: a check from the partner restarts a check of ours that is still waiting for an answer
(RFC 8445 section 7.3.1.4), as happens between two relays when our first check reaches the
partner's allocation before it permits us."""

from __future__ import annotations

import asyncio

import aioice
import aioice.ice
import aioice.stun
import pytest

from natkit import _rtc


def drop_first_binding_request(conn: aioice.Connection) -> list[int]:
    """Loses the first Binding request ``conn`` sends (its first check); returns the list the
    number of requests it sent grows in."""
    sent: list[int] = []
    for proto in conn._protocols:
        send = proto.send_stun

        def lossy(message: aioice.stun.Message, addr: tuple[str, int], send=send) -> None:
            if (
                message.message_method == aioice.stun.Method.BINDING
                and message.message_class == aioice.stun.Class.REQUEST
            ):
                sent.append(1)
                if len(sent) == 1:
                    return
            send(message, addr)

        proto.send_stun = lossy
    return sent


async def pair(controlling_loses_first_check: bool) -> list[int]:
    a = aioice.Connection(ice_controlling=True, components=1, use_ipv6=False)
    b = aioice.Connection(ice_controlling=False, components=1, use_ipv6=False)
    try:
        await asyncio.gather(a.gather_candidates(), b.gather_candidates())
        sent = drop_first_binding_request(a) if controlling_loses_first_check else []
        a.remote_username, a.remote_password = b.local_username, b.local_password
        b.remote_username, b.remote_password = a.local_username, a.local_password
        for x, y in ((a, b), (b, a)):
            for c in y.local_candidates:
                await x.add_remote_candidate(c)
            await x.add_remote_candidate(None)
        # Without the restart, the lost check waits for its retransmission (made 60 s here).
        await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), 20)
        await a.send(b"over the pair")
        assert await asyncio.wait_for(b.recv(), 5) == b"over the pair"
        return sent
    finally:
        await asyncio.gather(a.close(), b.close())


@pytest.fixture
def loopback_only_no_retransmission(monkeypatch):
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    monkeypatch.setattr(aioice.stun, "RETRY_RTO", 60.0)
    # Applied process-wide, as natkit.connect applies it.
    _rtc.retrigger_checks()


def test_a_partners_check_restarts_our_lost_check_at_once(loopback_only_no_retransmission):
    sent = asyncio.run(pair(controlling_loses_first_check=True))
    # The lost check, then the one the partner's check triggered.
    assert len(sent) >= 2


def test_pairs_connect_when_no_check_is_lost(loopback_only_no_retransmission):
    asyncio.run(pair(controlling_loses_first_check=False))


def test_applied_once():
    _rtc.retrigger_checks()
    patched = aioice.ice.Connection.check_incoming
    _rtc.retrigger_checks()
    assert aioice.ice.Connection.check_incoming is patched
