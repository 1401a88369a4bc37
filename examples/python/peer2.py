"""peer2: waits in the room for a partner and prints what it receives.

    python examples/python/peer2.py ws://HOST:8080 [TOKEN]
"""

import asyncio
import sys

import natkit


async def main(signal: str, token: str | None) -> None:
    async with natkit.connect(signal, room="chat", token=token, timeout=300) as session:
        channel = await session.channel(timeout=300)
        message = await channel.recv()
        print("received:", message)
        await channel.send("Hello from peer2!")  # delivered before the session leaves


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None))
