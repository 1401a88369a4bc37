"""``python -m natkit probe HOST[:PORT] [MORE...] [--json]`` and
``python -m natkit chat --signal URL --room ROOM``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from . import Error, NoStunServer, connect, probe


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m natkit", description="natkit from Python")
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser(
        "probe",
        help="classify this host's NAT and say whether peers need TURN",
        description="Classify this host's NAT (RFC 5780 / RFC 4787) with natkit's classifier, "
        "as nat-probe does. Exit status: 0 with a verdict (UDP blocked included), 1 when the "
        "probe cannot run or times out, 2 for bad arguments, 3 when the server's host answered "
        "that nothing listens on the port (as nat-probe).",
    )
    p.add_argument("servers", nargs="+", metavar="SERVER[:PORT]",
                   help="one RFC 5780 server, or several plain STUN servers (port 3478 by default)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object, the same as nat-probe --json")
    p.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                   help="give up after this long (default 10)")
    p.add_argument("--hairpin", action="store_true", help="also test hairpinning")
    c = commands.add_parser(
        "chat",
        help="open a data channel to a peer in a room; send lines, print messages",
        description="Join ROOM on natkit-signal, open a data channel to the first partner there "
        "(the path decided as natkit-peer decides it), send each line of standard input and "
        "print each message that arrives. Ends a second after the end of input, or when the "
        "partner leaves. Exit status: 0 when done, 1 when the channel could not open.",
    )
    c.add_argument("--signal", action="append", required=True, metavar="URL",
                   help="natkit-signal's ws://HOST:PORT; repeat for the nodes of a cluster")
    c.add_argument("--room", required=True)
    c.add_argument("--token", help="the join token, when the server requires one")
    c.add_argument("--relay", choices=["auto", "always", "never"], default="auto")
    c.add_argument("--tls-ca", metavar="PEM", help="CA certificates trusted for turns: relays")
    c.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                   help="give up when no channel opens within this long (default 30)")
    args = parser.parse_args(argv)
    if not args.timeout > 0:
        parser.error("--timeout must be a positive number of seconds")
    if args.command == "chat":
        try:
            return asyncio.run(chat(args))
        except Error as e:
            print(f"python -m natkit chat: error: {e}", file=sys.stderr)
            return 1
    try:
        report = asyncio.run(probe(*args.servers, timeout=args.timeout, hairpin=args.hairpin))
    except Error as e:
        print(f"python -m natkit probe: error: {e}", file=sys.stderr)
        return 3 if isinstance(e, NoStunServer) else 1
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        print(report, end="")
    return 0


async def chat(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    loop.add_reader(sys.stdin.fileno(), lambda: lines.put_nowait(sys.stdin.readline() or None))
    async with connect(args.signal, room=args.room, token=args.token, relay=args.relay,
                       tls_ca=args.tls_ca, timeout=args.timeout) as session:
        channel = await session.channel(timeout=args.timeout)
        print(f"# connected to {channel.peer_id} over {channel.path}", file=sys.stderr)

        async def show() -> None:
            async for message in channel:
                print(message if isinstance(message, str) else f"<{len(message)} bytes>", flush=True)

        printer = asyncio.ensure_future(show())
        while (line := await lines.get()) is not None:
            await channel.send(line.rstrip("\n"))
        loop.remove_reader(sys.stdin.fileno())
        # The end of input: what the partner still sends within a second is printed.
        try:
            await asyncio.wait_for(asyncio.shield(printer), 1.0)
        except asyncio.TimeoutError:
            printer.cancel()
    return 0


if __name__ == "__main__":
    sys.exit(main())
