"""Receive gengate's callbacks and check each one's signature before trusting it.

gengate signs every callback per Standard Webhooks with the secret of the key that submitted the
task (`webhook_secret` in `GET /api/v1/account`). This receiver answers 204 to a callback whose
signature checks out (and prints it as one JSON line), 400 to anything else.

    export GENGATE_API_KEY=...      # the key whose tasks call back: the secret is read with it
    python examples/webhook_receiver.py --port 9000
    # then submit with "request_type": "callback", "callback_url": "http://<this host>:9000/hook"

To try it on one machine, let it submit a task that calls it back, and stop after that callback:

    python examples/webhook_receiver.py --submit demo-image

The gateway must then admit callbacks to loopback: start it with GENGATE_WEBHOOK_ALLOW=127.0.0.0/8.
Without GENGATE_API_KEY, pass the secret itself: --secret whsec_... (or GENGATE_WEBHOOK_SECRET).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from gengate import APIError, CallbackVerificationError, Client, TaskStatus
from gengate.client import parse_callback, verify_callback

#: A callback is a status body of a few KB; anything much larger is not one.
MAX_BODY = 1 << 20


class Receiver(ThreadingHTTPServer):
    """The HTTP server, with the secret to check against and the callbacks that checked out."""

    def __init__(self, address: tuple[str, int], secret: str) -> None:
        super().__init__(address, CallbackHandler)
        self.secret = secret
        self.received: queue.Queue[TaskStatus] = queue.Queue()


class CallbackHandler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        length = self.headers.get("Content-Length", "")
        if not length.isdigit() or int(length) > MAX_BODY:
            self.send_response(400 if not length.isdigit() else 413)
            self.end_headers()
            return
        body = self.rfile.read(int(length))  # the raw bytes: the signature covers them exactly
        try:
            payload = verify_callback(body, self.headers, self.server.secret)
        except CallbackVerificationError as exc:
            print(f"refused a callback: {exc}", file=sys.stderr, flush=True)
            self.send_response(400)
            self.end_headers()
            return
        status = parse_callback(payload)
        line = {"taskId": status.task_id, "state": status.state, "resultUrls": status.result_urls}
        if status.fail_code:
            line |= {"failCode": status.fail_code, "failMsg": status.fail_msg}
        print(json.dumps(line), flush=True)
        self.server.received.put(status)
        # Answer quickly with a 2xx: gengate retries anything else. Slow work belongs elsewhere; note
        # that a retry repeats the `webhook-id` header, so receivers can drop duplicates by it.
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the lines above say what matters."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9000, help="port to listen on; 0 picks a free one")
    parser.add_argument("--secret", default=os.environ.get("GENGATE_WEBHOOK_SECRET"), help="whsec_...")
    parser.add_argument("--submit", metavar="MODEL", help="submit one task calling back here, then stop")
    parser.add_argument("--prompt", default="A beautiful sunset over mountains")
    parser.add_argument("--timeout", type=float, default=60.0, help="--submit: seconds to wait")
    args = parser.parse_args(argv)

    try:
        return run(args)
    except (ValueError, APIError) as exc:  # no key given, or the gateway refused it
        print(exc, file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    secret = args.secret
    if not secret:
        with Client() as client:  # GENGATE_API_KEY, GENGATE_BASE_URL
            secret = client.account()["webhook_secret"]
    receiver = Receiver((args.host, args.port), secret)
    hook = f"http://{args.host}:{receiver.server_port}/hook"
    print(f"listening on {hook}", flush=True)
    if not args.submit:
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C stops it
            receiver.serve_forever()
        return 0

    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        with Client() as client:
            task_id = client.submit(args.submit, {"prompt": args.prompt}, callback_url=hook)
        print(f"submitted {task_id}; waiting for its callback", flush=True)
        while True:
            status = receiver.received.get(timeout=args.timeout)
            if status.task_id == task_id:
                return 0 if status.succeeded else 1
    except queue.Empty:
        print(f"no callback within {args.timeout:g} s", file=sys.stderr)
        return 3
    finally:
        receiver.shutdown()


if __name__ == "__main__":
    sys.exit(main())
