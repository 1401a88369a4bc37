"""natkit.connect with the browser: natkit-signal's demo page in headless Chromium (Debian's
chromium, which the test command installs) pairs with a Python peer on loopback, in both roles."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
import threading
import urllib.parse
from pathlib import Path
from typing import Any, Callable

import pytest

import natkit
from conftest import SECRET


def chromium() -> str:
    for path in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if Path(path).exists():
            return path
    pytest.fail("chromium is missing: apt-get install -y chromium (tests/run installs it)")


class Page:
    """The demo page in headless Chromium; its reports (``console.log("natkit-page " + JSON)``)."""

    def __init__(self, url: str) -> None:
        self.profile = tempfile.mkdtemp(prefix="natkit-page-")
        self.proc = subprocess.Popen(
            [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--enable-logging=stderr", "--v=0", f"--user-data-dir={self.profile}", url],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        self.reports: list[dict[str, Any]] = []
        self.changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            _, marker, rest = line.partition('"natkit-page ')
            if not marker:
                continue
            text = rest.rsplit('", source:', 1)[0]
            try:
                report = json.loads(text)
            except ValueError:
                continue
            with self.changed:
                self.reports.append(report)
                self.changed.notify_all()

    def wait(self, done: Callable[[dict[str, Any]], bool], timeout: float = 30) -> dict[str, Any]:
        with self.changed:
            self.changed.wait_for(lambda: any(done(r) for r in self.reports), timeout)
            return self.reports[-1] if self.reports else {}

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


def page_url(signal_url: str, room: str, **params: str) -> str:
    http = signal_url.replace("ws://", "http://", 1)
    query = urllib.parse.urlencode({"room": room, "token": natkit.mint_token(SECRET, room, ttl=300), **params})
    return f"{http}/?{query}"


def test_python_offers_to_the_browser_page(signal_url):
    """The page is in the room first (answering, echo on); the Python peer joins and offers."""
    room = "browser-answers"
    page = Page(page_url(signal_url, room, echo="1"))
    try:
        page.wait(lambda r: r.get("peerId") is not None)

        async def main():
            async with natkit.connect(signal_url, room=room, token=natkit.mint_token(SECRET, room)) as s:
                ch = await s.channel(timeout=30)
                await ch.send("hello page")
                return await asyncio.wait_for(ch.recv(), 15), ch.path, s.events

        echoed, path, events = asyncio.run(main())
        assert echoed == "hello page"
        report = page.wait(lambda r: "hello page" in r.get("messages", []))
        assert "hello page" in report["messages"], report
        # The page (natkit.js) probed and sent its NAT summary: the pair rule saw both sides.
        policy = next(e for e in events if e["event"] == "policy")
        assert report["nat"] is not None, report
        assert policy["remote_nat"] == report["nat"], (policy, report)
        assert policy["rule"] == path.rule == "direct-possible", policy
    finally:
        page.close()


def test_the_browser_page_offers_to_python(signal_url):
    """The Python peer is in the room first; the page joins, offers and sends."""
    room = "browser-offers"

    async def main():
        async with natkit.connect(signal_url, room=room, token=natkit.mint_token(SECRET, room)) as s:
            page = Page(page_url(signal_url, room, send="hello python"))
            try:
                ch = await s.channel(timeout=30)
                got = await asyncio.wait_for(ch.recv(), 15)
                await ch.send(f"echo: {got}")
                report = await asyncio.get_running_loop().run_in_executor(
                    None, page.wait, lambda r: "echo: hello python" in r.get("messages", [])
                )
                return got, report, list(s.events)
            finally:
                page.close()

    got, report, events = asyncio.run(main())
    assert got == "hello python"
    assert "echo: hello python" in report["messages"], report
    # Both sides decided with both summaries: the page sent its own before its offer.
    policy = next(e for e in events if e["event"] == "policy")
    assert policy["remote_nat"] == report["nat"] and report["nat"] is not None, (policy, report)
    assert policy["rule"] == report["policy"]["rule"] == "direct-possible", (policy, report)
