"""The access line's cost per request, in process: the status hot path of one gateway with
GENGATE_ACCESS_LOG on and off (and the request layer alone around a trivial app).

CPU time (`time.process_time`), the best of `--rounds` interleaved rounds, so that other
processes on a shared machine add little; the log goes to a real file. Requests are sent one
after another, so each line is flushed on its own (a busy server flushes the lines of a whole
event-loop round at once): an upper bound.

    .venv/bin/python -m bench.access_log [--requests 5000] [--rounds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any

from gengate.api.app import build_app
from gengate.observability import logs
from gengate.observability.requests import RequestLog
from gengate.runtime import Gateway
from gengate.settings import load_settings


async def _trivial(_scope: Any, _receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def _per_request_us(app: Any, requests: int, path: str, query: bytes, headers: list[Any]) -> float:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(_message: Any) -> None:
        pass

    started = time.process_time()
    for _ in range(requests):
        scope = {"type": "http", "method": "GET", "path": path, "headers": headers, "query_string": query}
        await app(scope, receive, send)
    return (time.process_time() - started) / requests * 1e6


async def _measure(fmt: str, requests: int, rounds: int, log_path: Path) -> dict[str, float]:
    with log_path.open("w") as out:
        logs.configure("info", fmt, out)
        folder = Path(tempfile.mkdtemp())
        gateway = Gateway(load_settings(data_dir=folder / "data", admin_key="adm_" + "x" * 24))
        async with gateway.running():
            _key, secret = await gateway.keys.create("bench")
            key = await gateway.keys.authenticate(f"Bearer {secret}")
            task = await gateway.tasks.submit(key, "demo-echo", {"mode": "echo", "prompt": "hi"}, request={})
            await gateway.tasks.wait_until_done(task, 10)
            ctx = gateway.api_context()
            status = ("/api/v1/statusTask/demo-echo", f"taskId={task.id}".encode())
            headers = [(b"host", b"x"), (b"authorization", f"Bearer {secret}".encode())]
            variants = {
                "bare app": (_trivial, ("/x", b"")),
                "request layer, no line": (RequestLog(_trivial, access_log=False), ("/x", b"")),
                "request layer + line": (RequestLog(_trivial), ("/x", b"")),
                "status, access log off": (build_app(dataclasses.replace(ctx, access_log=False)), status),
                "status, access log on": (build_app(dataclasses.replace(ctx, access_log=True)), status),
            }
            best = dict.fromkeys(variants, float("inf"))
            for _ in range(rounds):
                for name, (app, (path, query)) in variants.items():
                    best[name] = min(best[name], await _per_request_us(app, requests, path, query, headers))
    logs.reset()
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    for fmt in logs.FORMATS:
        best = asyncio.run(_measure(fmt, args.requests, args.rounds, Path(tempfile.mkdtemp()) / "access.log"))
        print(f"GENGATE_LOG_FORMAT={fmt} (CPU us per request, best of {args.rounds})")
        for name, us in best.items():
            print(f"  {name:26s} {us:7.2f}")
        line = best["status, access log on"] - best["status, access log off"]
        print(
            f"  the line on the status path: +{line:.2f} us"
            f" ({100 * line / best['status, access log off']:.1f} %)"
        )


if __name__ == "__main__":
    main()
