"""What the console's tests share: pages guarded against other origins and browser errors, a
loopback callback receiver, and a signed-in httpx client (servers come from `e2e_harness`).

Chromium is Debian's package (`scripts/ensure-chromium.sh` installs it): Playwright cannot
download its own browsers here, so it launches `/usr/bin/chromium`. Every page opened through
`guarded_page` fails its test on a request to any origin but the server's, and on any console
error or uncaught exception in the page (a Content-Security-Policy violation is such an error).
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

CHROMIUM = os.environ.get("GENGATE_TEST_CHROMIUM", "/usr/bin/chromium")
#: Where the README's screenshots live. The tests always take them; they replace the committed
#: ones only with GENGATE_UPDATE_SCREENSHOTS=1, so that a test run leaves the work tree clean.
DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"
VIEWPORT = {"width": 1280, "height": 800}


@dataclass
class Watch:
    """What a page did wrong: requests to other origins, console errors, uncaught exceptions."""

    origin: str
    foreign: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def check(self) -> None:
        assert self.foreign == [], f"requests to other origins: {self.foreign}"
        assert self.errors == [], f"errors in the browser: {self.errors}"


@dataclass
class Guarded:
    page: Any
    watch: Watch


def open_guarded(browser: Any, base_url: str) -> Guarded:
    """A fresh browser context (no cookies) whose page may talk to `base_url` only."""
    context = browser.new_context(viewport=VIEWPORT, base_url=base_url)
    watch = Watch(base_url)

    def route(route: Any) -> None:
        url = route.request.url
        if url.startswith((base_url + "/", "data:")) or url == base_url:
            route.continue_()
        else:
            watch.foreign.append(url)
            route.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.on("console", lambda msg: watch.errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: watch.errors.append(str(exc)))
    page.set_default_timeout(15_000)
    return Guarded(page, watch)


def sign_in(page: Any, key: str) -> None:
    page.goto("/console/signin")
    page.get_by_label("API key or admin key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r".*/console/(playground|keys)$"))


def screenshot(page: Any, name: str, folder: Path) -> Path:
    """The page as the README shows it (the viewport only), as `<name>.png` in `folder`, or in
    docs/console when GENGATE_UPDATE_SCREENSHOTS=1; returns the file, which the test checks."""
    if os.environ.get("GENGATE_UPDATE_SCREENSHOTS") == "1":
        folder = DOCS_SCREENSHOTS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path))
    assert path.read_bytes().startswith(b"\x89PNG"), path
    return path


class Receiver:
    """A callback receiver on loopback: records every POST, answers 200."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.raw: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                received.raw.append(body)
                received.bodies.append(json.loads(body or b"{}"))
                received.headers.append({k.lower(): v for k, v in self.headers.items()})
                self.send_response(200)
                self.send_header("content-type", "text/plain")
                self.end_headers()
                self.wfile.write(b"thanks")

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def console_client(server: Any, key: str) -> httpx.Client:
    """An httpx client signed in to the console with `key` (cookies kept)."""
    client = httpx.Client(base_url=server.base_url, timeout=15.0)
    response = client.post("/console/signin", data={"key": key})
    assert response.status_code == 303, response.text
    return client


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match is not None, "no CSRF token in the page"
    return match.group(1)
