"""``python -m natkit probe HOST[:PORT] [MORE...] [--json]``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from . import Error, probe


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m natkit", description="natkit from Python")
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser(
        "probe",
        help="classify this host's NAT and say whether peers need TURN",
        description="Classify this host's NAT (RFC 5780 / RFC 4787) with natkit's classifier, "
        "as nat-probe does. Exit status: 0 with a verdict (UDP blocked included), 1 when the "
        "probe cannot run or times out, 2 for bad arguments.",
    )
    p.add_argument("servers", nargs="+", metavar="SERVER[:PORT]",
                   help="one RFC 5780 server, or several plain STUN servers (port 3478 by default)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object, the same as nat-probe --json")
    p.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                   help="give up after this long (default 10)")
    p.add_argument("--hairpin", action="store_true", help="also test hairpinning")
    args = parser.parse_args(argv)
    if not args.timeout > 0:
        parser.error("--timeout must be a positive number of seconds")
    try:
        report = asyncio.run(probe(*args.servers, timeout=args.timeout, hairpin=args.hairpin))
    except Error as e:
        print(f"python -m natkit probe: error: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        print(report, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
