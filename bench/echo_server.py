"""The upstream of the data-plane benchmark: HTTP/1.1 keep-alive, a 1 KB body for every request.

Run as ``python bench/echo_server.py`` with ``PORT`` set (``malla run``
sets it) or ``--port N``. Small on purpose, so that the same upstream
costs the same in every configuration being compared.
"""

from __future__ import annotations

import argparse
import asyncio
import os

BODY = b"x" * 1024
RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: "
    + str(len(BODY)).encode() + b"\r\n\r\n" + BODY
)


class Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        # GET requests carry no body: every header block gets one response (pipelining included).
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            self.transport.write(RESPONSE)  # type: ignore[attr-defined]
            if b"\r\nconnection: close" in head.lower():
                self.transport.close()
                return


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, host, port, backlog=512)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "0") or 0))
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
