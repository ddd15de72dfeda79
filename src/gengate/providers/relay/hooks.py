"""Callback URLs handed to upstreams, and the relays in this process waiting on them.

A relay that follows an upstream task registers a waiter and passes its URL,
`<public_url>/hooks/upstream/<id>.<signature>`, as the task's callback. When the upstream calls
it, the route wakes the waiter, which then reads the upstream's status once: the callback's
body is never trusted as the result. A callback that lands in another API process (or after the
relay gave up) wakes no one and changes nothing, since the relay's polling carries on as the
safety net either way. The signature (HMAC of the id under the server secret) keeps anyone who
guesses the path from waking relays for nothing.

A waiter may also take the callback's body (`on_body`): cog servers send their logs that way,
and have no other way to tell them while a prediction runs. Such a body is only ever shown as
logs, never taken as a result.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

HOOK_PREFIX = "/hooks/upstream/"
_SIGNATURE_BYTES = 18


@dataclass(slots=True)
class HookWaiter:
    """One relay's wait for its upstream callback.

    Fields: `url` (to give the upstream), `wake` (set when the callback arrives; the relay
    clears it after reading the status), `on_body` (given each callback's body, when set).
    """

    url: str
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    on_body: Callable[[bytes], None] | None = None


class UpstreamHooks:
    """Signs callback URLs and routes arriving callbacks to the waiters of this process."""

    def __init__(self, secret: bytes, public_url: str | None) -> None:
        self._key = hmac.new(secret, b"gengate upstream hooks", hashlib.sha256).digest()
        self._public_url = public_url.rstrip("/") if public_url else None
        self._waiters: dict[str, HookWaiter] = {}

    @property
    def enabled(self) -> bool:
        """Whether upstreams can reach this gateway: only with a configured public URL."""
        return self._public_url is not None

    @contextlib.contextmanager
    def waiter(self, on_body: Callable[[bytes], None] | None = None) -> Iterator[HookWaiter | None]:
        """A waiter for the duration of one upstream task, or None when callbacks are off."""
        if self._public_url is None:
            yield None
            return
        hook_id = secrets.token_urlsafe(16)
        waiter = HookWaiter(
            f"{self._public_url}{HOOK_PREFIX}{hook_id}.{self._sign(hook_id)}", on_body=on_body
        )
        self._waiters[hook_id] = waiter
        try:
            yield waiter
        finally:
            self._waiters.pop(hook_id, None)

    def deliver(self, token: str, body: bytes = b"") -> bool:
        """Wake the waiter `token` names (handing it `body` if it takes bodies); False when the
        token is not one of ours."""
        if not self.valid(token):
            return False
        waiter = self._waiters.get(token.partition(".")[0])
        if waiter is not None:
            waiter.wake.set()
            if waiter.on_body is not None:
                waiter.on_body(body)
        return True

    def valid(self, token: str) -> bool:
        """Whether this gateway signed `token`."""
        hook_id, _, signature = token.partition(".")
        return bool(hook_id) and hmac.compare_digest(signature.encode(), self._sign(hook_id).encode())

    def _sign(self, hook_id: str) -> str:
        digest = hmac.new(self._key, hook_id.encode(), hashlib.sha256).digest()[:_SIGNATURE_BYTES]
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")
