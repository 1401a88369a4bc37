"""peer1: opens a channel to whoever is in the room and says hello.

    python examples/python/peer1.py ws://HOST:8080 [TOKEN]
"""

import asyncio
import sys

import natkit


async def main(signal: str, token: str | None) -> None:
    async with natkit.connect(signal, room="chat", token=token) as session:
        channel = await session.channel()
        print(f"connected to {channel.peer_id} via {channel.path}")
        await channel.send("Hello from peer1!")
        print("peer2 says:", await channel.recv())


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None))
