"""natkit's change to aioice's ICE checks (``_rtc.retrigger_checks``), on two aioice agents over
loopback: a check from the partner restarts a check of ours that is still waiting for an answer
(RFC 8445 section 7.3.1.4), as happens between two relays when our first check reaches the
partner's allocation before it permits us; and so do our checks to that address from our other
sockets (one relay hop to a relay-only partner)."""

from __future__ import annotations

import asyncio

import aioice
import aioice.ice
import aioice.stun
import pytest

from natkit import _rtc


class Checks:
    """What became of an agent's Binding requests (its checks)."""

    def __init__(self) -> None:
        self.sent = 0
        self.lost = 0


def lose_first_checks(conn: aioice.Connection, each_socket: bool = False) -> Checks:
    """Loses the first Binding request ``conn`` sends (its first check), or with ``each_socket``
    the first from each of its sockets; the counts grow as it sends."""
    checks = Checks()
    for proto in conn._protocols:
        send = proto.send_stun
        first = [True]

        def lossy(message: aioice.stun.Message, addr: tuple[str, int], send=send, first=first) -> None:
            if (
                message.message_method == aioice.stun.Method.BINDING
                and message.message_class == aioice.stun.Class.REQUEST
            ):
                checks.sent += 1
                if first[0] and (each_socket or checks.lost == 0):
                    first[0] = False
                    checks.lost += 1
                    return
            send(message, addr)

        proto.send_stun = lossy
    return checks


async def pair(controlling_loses_first_check: bool) -> int:
    a = aioice.Connection(ice_controlling=True, components=1, use_ipv6=False)
    b = aioice.Connection(ice_controlling=False, components=1, use_ipv6=False)
    try:
        await asyncio.gather(a.gather_candidates(), b.gather_candidates())
        checks = lose_first_checks(a) if controlling_loses_first_check else Checks()
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
        return checks.sent
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
    assert sent >= 2


def test_pairs_connect_when_no_check_is_lost(loopback_only_no_retransmission):
    asyncio.run(pair(controlling_loses_first_check=False))


def test_applied_once():
    _rtc.retrigger_checks()
    patched = aioice.ice.Connection.check_incoming
    _rtc.retrigger_checks()
    assert aioice.ice.Connection.check_incoming is patched


def test_a_partners_check_restarts_our_lost_checks_from_other_addresses_too(monkeypatch):
    """Ours from 127.0.0.1 and 127.0.0.2, the partner's from 127.0.0.3, told only of our first:
    each of our first checks is lost, and the partner's check, arriving on the first address,
    restarts the one from the second as well (a relay-only partner's allocation permits an IP,
    whichever of our sockets its check came through)."""
    monkeypatch.setattr(aioice.stun, "RETRY_RTO", 60.0)
    _rtc.retrigger_checks()
    assert asyncio.run(second_address_pair_state(monkeypatch)) == aioice.ice.CandidatePair.State.SUCCEEDED


async def second_address_pair_state(monkeypatch) -> "aioice.ice.CandidatePair.State":
    def on(*hosts: str) -> None:
        monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: list(hosts))

    ours = aioice.Connection(ice_controlling=True, components=1, use_ipv6=False)
    theirs = aioice.Connection(ice_controlling=False, components=1, use_ipv6=False)
    try:
        on("127.0.0.1", "127.0.0.2")
        await ours.gather_candidates()
        on("127.0.0.3")
        await theirs.gather_candidates()
        checks = lose_first_checks(ours, each_socket=True)
        ours.remote_username, ours.remote_password = theirs.local_username, theirs.local_password
        theirs.remote_username, theirs.remote_password = ours.local_username, ours.local_password
        for c in theirs.local_candidates:
            await ours.add_remote_candidate(c)
        await ours.add_remote_candidate(None)
        await theirs.add_remote_candidate(next(c for c in ours.local_candidates if c.host == "127.0.0.1"))
        await theirs.add_remote_candidate(None)
        connecting = asyncio.ensure_future(ours.connect())
        # Both of our first checks are lost before the partner checks at all.
        for _ in range(200):
            if checks.lost == 2:
                break
            await asyncio.sleep(0.01)
        assert checks.lost == 2
        await asyncio.wait_for(asyncio.gather(connecting, theirs.connect()), 20)
        second = next(p for p in ours._check_list if p.local_candidate.host == "127.0.0.2")
        for _ in range(200):
            if second.state == aioice.ice.CandidatePair.State.SUCCEEDED:
                break
            await asyncio.sleep(0.01)
        return second.state
    finally:
        await asyncio.gather(ours.close(), theirs.close())
