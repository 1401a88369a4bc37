"""Shared fixtures: natkit's own binaries (target/debug, built by the test command) started on
loopback, their listening addresses read from the line every natkit server prints."""

from __future__ import annotations

import os
import re
import subprocess
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN_DIR = Path(os.environ.get("NATKIT_BIN_DIR", REPO / "target" / "debug"))


def binary(name: str) -> Path:
    path = BIN_DIR / name
    if not path.exists():
        pytest.fail(f"{path} is missing: build natkit first (cargo build --workspace, or tests/run)")
    return path


class Daemon:
    """A natkit server process; its sockets from its `NAME: listening k=addr ...` line."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [str(a) for a in args],
            env={**os.environ, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.sockets: dict[str, str] = {}
        ready = threading.Event()

        def read() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.lines.append(line)
                m = re.match(r"^(\S+): listening (.*)$", line.strip())
                if m and not ready.is_set():
                    self.sockets = dict(part.split("=", 1) for part in m.group(2).split(" "))
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(20):
            self.stop()
            pytest.fail(f"{args[0]} printed no listening line:\n{''.join(self.lines)}")

    def addr(self, name: str) -> str:
        return self.sockets[name]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.fixture
def daemons():
    started: list[Daemon] = []

    def start(args: list[str], env: dict[str, str] | None = None) -> Daemon:
        d = Daemon(args, env)
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()



#: The join-token secret of the natkit-signal the ``signal_url`` fixture starts.
SECRET = "python-tests-secret"


@pytest.fixture
def signal_url(daemons):
    """A fresh natkit-signal (with its embedded relay) on loopback that requires join tokens
    signed with :data:`SECRET`; its ``ws://`` URL."""
    d = daemons(
        [binary("natkit-signal"), "--listen", "127.0.0.1:0", "--relay-listen", "127.0.0.1:0",
         "--metrics-listen", "off"],
        env={"NATKIT_SIGNAL_TOKEN_SECRET": SECRET, "NATKIT_TURN_SECRET": "turn-secret"},
    )
    return f"ws://{d.addr('http')}"
