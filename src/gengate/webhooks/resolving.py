"""Host names resolved once per a short while, not once per callback.

A resolution is a `getaddrinfo` in a thread (several syscalls and a thread hop): at thousands of
callbacks a second to a few receivers, nearly all of them the same question. The cache keeps the
resolver's *answers* only, never a verdict: every delivery still goes through
:func:`gengate.net.guard.resolve_and_check`, which checks each cached address against the policy
of the moment and connects to the checked one. The platform resolver gives no TTL, so answers are
kept a short fixed time (`ttl_s`); a failed resolution is not kept.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from gengate.net.guard import Resolver, system_resolver

#: How long an answer is used again (the platform resolver tells no TTL).
DEFAULT_TTL_S = 10.0
#: Most names kept: past it, the expired ones go, then the oldest.
MAX_NAMES = 4096


class ResolutionCache:
    """A :data:`~gengate.net.guard.Resolver` that answers from memory for `ttl_s` seconds."""

    def __init__(self, resolver: Resolver = system_resolver, ttl_s: float = DEFAULT_TTL_S) -> None:
        self._resolver = resolver
        self._ttl_s = ttl_s
        self._answers: dict[str, tuple[float, Sequence[str]]] = {}

    def remembered(self, host: str) -> Sequence[str] | None:
        """The answer kept for `host` while it is fresh (`resolve_and_check` asks this first)."""
        cached = self._answers.get(host)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        return None

    async def __call__(self, host: str) -> Sequence[str]:
        known = self.remembered(host)
        if known is not None:
            return known
        now = time.monotonic()
        answers = list(await self._resolver(host))  # raises: nothing is kept
        if len(self._answers) >= MAX_NAMES:
            self._prune(now)
        self._answers[host] = (now + self._ttl_s, answers)
        return answers

    def _prune(self, now: float) -> None:
        self._answers = {host: entry for host, entry in self._answers.items() if entry[0] > now}
        while len(self._answers) >= MAX_NAMES:
            del self._answers[next(iter(self._answers))]
