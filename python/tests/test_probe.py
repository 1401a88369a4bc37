"""natkit.probe against natkit-relay on loopback gives what nat-probe --json gives: the same
fields and the same verdicts (the NAT-lab comparison is crates/nat-probe/tests/lab.rs)."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time

import pytest

import natkit
from conftest import REPO, binary

# What differs between two runs on the same network: ports, timings, the tests' details.
VOLATILE = {"local_address", "mapped_address", "elapsed_ms", "tests"}


@pytest.fixture
def relay(daemons):
    d = daemons(
        [binary("natkit-relay"), "--listen", "127.0.0.1:0", "--alt-port", "0",
         "--alt-ip", "127.0.0.2", "--metrics-listen", "off"],
        env={"NATKIT_TURN_SECRET": "s"},
    )
    return d.addr("stun")


def nat_probe(*args: str) -> dict:
    out = subprocess.run([binary("nat-probe"), "--json", *args], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout)


def same_verdicts(python: dict, rust: dict) -> None:
    assert python.keys() == rust.keys()
    assert {k: v for k, v in python.items() if k not in VOLATILE} == {
        k: v for k, v in rust.items() if k not in VOLATILE
    }
    assert [t["name"] for t in python["tests"]] == [t["name"] for t in rust["tests"]]


def closed_udp_port() -> str:
    """A loopback port where nothing listens: the host answers ICMP port unreachable."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"127.0.0.1:{port}"


_SILENT: list[socket.socket] = []


def silent_udp_port() -> str:
    """A loopback port whose socket never answers: silence, as a network that drops UDP."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    _SILENT.append(s)
    return f"127.0.0.1:{s.getsockname()[1]}"


def test_an_rfc5780_server_gives_nat_probes_verdicts(relay):
    report = asyncio.run(natkit.probe(relay, timeout=5))
    assert (report.nat_type, report.mapping, report.filtering) == (
        "open-internet", "endpoint-independent", "endpoint-independent")
    assert not report.force_turn and not report.udp_blocked
    assert report.summary == {"mapping": ["endpoint-independent"],
                              "filtering": ["endpoint-independent"], "udp_blocked": False}
    same_verdicts(report.to_dict(), nat_probe(relay))
    assert "NAT type:   open-internet" in str(report)


def test_a_server_that_does_not_answer_gets_nat_probes_verdict():
    server = silent_udp_port()
    report = asyncio.run(natkit.probe(server, timeout=5))
    rust = nat_probe(server)
    same_verdicts(report.to_dict(), rust)
    assert report.udp_blocked == (rust["nat_type"] == "udp-blocked")
    assert report.force_turn


def test_the_event_loop_runs_while_the_probe_does():
    async def main():
        ticks = 0

        async def tick():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        ticker = asyncio.create_task(tick())
        await natkit.probe(silent_udp_port(), timeout=5)  # about half a second of waiting
        ticker.cancel()
        return ticks

    assert asyncio.run(main()) >= 10


def test_a_closed_port_is_no_stun_server_not_a_verdict():
    server = closed_udp_port()
    with pytest.raises(natkit.NoStunServer) as closed:
        asyncio.run(natkit.probe(server, timeout=5))
    assert isinstance(closed.value, natkit.ProbeError)
    assert closed.value.code == "no-stun-server"
    assert f"no STUN server at {server}: port unreachable" in str(closed.value)
    # nat-probe says the same, with its own exit status.
    out = subprocess.run([binary("nat-probe"), "--json", server], capture_output=True, text=True)
    assert out.returncode == 3 and out.stdout == ""
    assert f"no STUN server at {server}: port unreachable" in out.stderr
    # So does the package's command line.
    out = subprocess.run([sys.executable, "-m", "natkit", "probe", server], capture_output=True,
                         text=True)
    assert out.returncode == 3, out.stderr
    assert f"no STUN server at {server}: port unreachable" in out.stderr


def test_timeouts_and_failures_are_natkit_errors():
    with pytest.raises(natkit.Timeout) as late:
        asyncio.run(natkit.probe(silent_udp_port(), timeout=0.05))
    assert late.value.stage == "probe" and isinstance(late.value, TimeoutError)
    with pytest.raises(natkit.ProbeError, match="cannot resolve"):
        asyncio.run(natkit.probe("no-such-host.invalid"))
    with pytest.raises(ValueError, match="timeout"):
        asyncio.run(natkit.probe("127.0.0.1", timeout=0))


def test_the_command_line_prints_nat_probes_json(relay):
    out = subprocess.run([sys.executable, "-m", "natkit", "probe", relay, "--json"],
                         capture_output=True, text=True, check=True, cwd="/")
    same_verdicts(json.loads(out.stdout), nat_probe(relay))
    text = subprocess.run([sys.executable, "-m", "natkit", "probe", relay],
                          capture_output=True, text=True, check=True, cwd="/")
    assert "Direct connection possible" in text.stdout
    bad = subprocess.run([sys.executable, "-m", "natkit", "probe", "no-such-host.invalid"],
                         capture_output=True, text=True, cwd="/")
    assert bad.returncode == 1 and "cannot resolve" in bad.stderr
    usage = subprocess.run([sys.executable, "-m", "natkit", "probe"], capture_output=True,
                           text=True, cwd="/")
    assert usage.returncode == 2


def test_the_installed_package_is_the_built_wheel():
    # Tests must exercise the wheel, not the source folder next to them.
    assert not str(natkit.__file__).startswith(str(REPO / "python"))
    assert natkit.__version__
