"""The floor of `bench.longpoll`: the fastest answer to 10,000 held requests this machine gives.

A bare uvloop protocol, no HTTP parsing beyond the method: a `GET` is held; a `POST` is
answered at once, and then every held request gets a ready answer (status line, the headers
gengate sends, a status body of the same size, a trace id of its own) written in one loop,
with nothing read, checked, logged or counted. What it costs is the system's: a `send` per
connection, over loopback, whose receiving side the kernel runs on the same core. gengate's
fan-out is reported as a ratio to it, measured in the same run.

    python -m bench.longpoll_floor PORT
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from typing import ClassVar, cast

import uvloop

#: Close to gengate's answer to a canceled APIXO status: the same headers, a body as long.
BODY = (
    b'{"code":200,"message":"success","data":{"taskId":"task_0000000000000000000000000000",'
    b'"state":"failed","failCode":"CANCELED","failMsg":"Canceled by the client.",'
    b'"createTime":1764547200000,"completeTime":1764547200000,"model":"demo-echo"}}'
)
HEAD = (
    b"HTTP/1.1 200 OK\r\ndate: Mon, 01 Dec 2026 00:00:00 GMT\r\nserver: uvicorn\r\n"
    b"content-type: application/json\r\nx-trace-id: "
)
TAIL = b"\r\ncontent-length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY
CANCELED = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


class Held(asyncio.Protocol):
    held: ClassVar[list[asyncio.Transport]] = []
    trace_ids = itertools.count(10**15)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if data.startswith(b"GET"):
            Held.held.append(self.transport)
            return
        self.transport.write(CANCELED)
        held, Held.held = Held.held, []
        asyncio.get_running_loop().call_soon(answer_all, held)


def answer_all(held: list[asyncio.Transport]) -> None:
    for transport, trace_id in zip(held, Held.trace_ids, strict=False):
        transport.write(HEAD + str(trace_id).encode() + TAIL)


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Held, "127.0.0.1", port, backlog=4096)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1])))
