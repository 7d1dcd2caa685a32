"""An asyncio (epoll) server that answers each 1-byte request with
WRITES transport.write() calls of SIZE pattern bytes (tests/progs/common.c's
pattern), the way event-loop programs emit many small pieces. Prints its
port, serves one connection, exits when the client closes.

    python3 tiny_asyncio.py WRITES SIZE
"""
import asyncio
import sys

WRITES, SIZE = int(sys.argv[1]), int(sys.argv[2])


def pattern(off, n):
    return bytes((i * 7 + (i >> 8) * 13 + (i >> 16) * 101) & 0xff
                 for i in range(off, off + n))


class Tiny(asyncio.Protocol):
    def __init__(self, done):
        self.done, self.off = done, 0

    def connection_made(self, transport):
        self.t = transport

    def data_received(self, data):
        for _ in data:
            for _ in range(WRITES):
                self.t.write(pattern(self.off, SIZE))
                self.off += SIZE

    def connection_lost(self, exc):
        self.done.set_result(True)


async def main():
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    server = await loop.create_server(lambda: Tiny(done), "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await done
    server.close()


asyncio.run(main())
