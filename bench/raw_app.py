"""The baseline for `make bench`: a raw ASGI app doing gengate's SQLite work and nothing more.

Serve it as gengate is served, e.g.::

    BENCH_RAW_DB=/tmp/raw.db uvicorn bench.raw_app:app --loop uvloop --http httptools --no-access-log

- `GET /status?taskId=...` (bearer header): one point read by primary key, an orjson body
  `{code, message, data: {taskId, state, createTime}}`.
- `POST /submit` (bearer header, JSON body): parse the body, insert one task-shaped row with a
  fresh id and commit it durably (WAL, `synchronous=FULL`), answer `{code, message, data: {taskId}}`.
- `GET /healthz`: 200 once the database is open.

The bearer header is read, not looked up: this is the ceiling gengate is measured against.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DB_ENV = "BENCH_RAW_DB"

SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    model TEXT NOT NULL,
    mode TEXT NOT NULL,
    state TEXT NOT NULL,
    input TEXT NOT NULL,
    request TEXT NOT NULL,
    request_type TEXT NOT NULL DEFAULT 'async',
    priority INTEGER NOT NULL DEFAULT 0,
    create_time INTEGER NOT NULL,
    start_time INTEGER,
    complete_time INTEGER,
    files TEXT,
    fail_code TEXT,
    fail_msg TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    trace_id TEXT
);
CREATE INDEX IF NOT EXISTS tasks_queue ON tasks (state, priority, create_time);
"""

JSON_HEADERS = [(b"content-type", b"application/json")]


class RawApp:
    """One SQLite connection used from the event loop, as a single-process server would."""

    def __init__(self) -> None:
        self.db: sqlite3.Connection | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self.lifespan(receive, send)

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.db = open_db(os.environ[DB_ENV])
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.db is not None:
                    self.db.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, path = scope["method"], scope["path"]
        if path == "/healthz" and method == "GET":
            await respond(send, 200, {"code": 200, "message": "ok"})
            return
        if path not in ("/status", "/submit"):
            await respond(send, 404, {"code": 404, "message": "not found"})
            return
        if not bearer(scope):
            await respond(send, 401, {"code": 401, "message": "missing bearer key"})
            return
        assert self.db is not None, "lifespan startup has not run"
        if path == "/status" and method == "GET":
            await self.status(scope, send, self.db)
        elif path == "/submit" and method == "POST":
            await self.submit(receive, send, self.db)
        else:
            await respond(send, 405, {"code": 405, "message": "method not allowed"})

    async def status(self, scope: Scope, send: Send, db: sqlite3.Connection) -> None:
        query = dict(parse_qsl(scope["query_string"].decode("latin-1")))
        row = db.execute(
            "SELECT id, state, create_time FROM tasks WHERE id = ?", (query.get("taskId", ""),)
        ).fetchone()
        if row is None:
            await respond(send, 404, {"code": 404, "message": "task not found"})
            return
        data = {"taskId": row[0], "state": row[1], "createTime": row[2]}
        await respond(send, 200, {"code": 200, "message": "success", "data": data})

    async def submit(self, receive: Receive, send: Send, db: sqlite3.Connection) -> None:
        try:
            body = orjson.loads(await read_body(receive))
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("input"), dict):
            await respond(send, 422, {"code": 422, "message": "body must be a JSON object with input"})
            return
        task_id = "task_" + secrets.token_urlsafe(16)
        with db:  # one transaction, committed (and fsynced) before answering
            db.execute(
                "INSERT INTO tasks (id, key_id, model, mode, state, input, request, request_type,"
                " create_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    task_id,
                    "key_bench",
                    "demo-echo",
                    str(body["input"].get("mode", "echo")),
                    "queued",
                    orjson.dumps(body["input"]).decode(),
                    orjson.dumps(body).decode(),
                    str(body.get("request_type", "async")),
                    time.time_ns() // 1_000_000,
                ),
            )
        await respond(send, 200, {"code": 200, "message": "success", "data": {"taskId": task_id}})


def open_db(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path)  # the INSERT opens a transaction; `with db` commits it
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(SCHEMA)
    return db


def bearer(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"authorization" and value[:7].lower() == b"bearer " and len(value) > 7:
            return bytes(value[7:])
    return None


async def read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def respond(send: Send, status: int, payload: dict[str, Any]) -> None:
    body = orjson.dumps(payload)
    headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


app = RawApp()
