"""How many callbacks each receiver host gets at once, adapting to how it answers.

Every host has a window of attempts in flight (AIMD, as TCP's congestion window): it starts
small, grows by one with each quick answer up to `most`, and halves (at most once per answer
time) when the host answers slowly (over `slow_s`), not at all, or with 429/503. A slow host so
holds few of the sender's slots, whatever its share of the outbox. Deliveries of a host whose
window is full wait beside it, at most `most` of them (they go out as its answers come back);
the rest are given back to the outbox for later, unsent and uncounted.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

#: The window of a host not seen before (or not lately).
FIRST_WINDOW = 4
#: Most hosts remembered: past it, the idle ones are forgotten.
MAX_HOSTS = 4096


@dataclass(slots=True)
class _Host(Generic[T]):
    window: float
    threshold: float
    active: int = 0
    waiting: deque[T] = field(default_factory=deque)
    last_cut: float = 0.0

    def room(self) -> bool:
        return self.active < max(1, int(self.window))


class HostLimits(Generic[T]):
    """Per-host windows of in-flight attempts, and the attempts waiting for one of them."""

    def __init__(self, most: int, slow_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.most = max(1, most)
        self.slow_s = slow_s
        self._clock = clock
        self._hosts: dict[str, _Host[T]] = {}
        #: Attempts waiting over every host.
        self.waiting = 0

    def _host(self, name: str) -> _Host[T]:
        host = self._hosts.get(name)
        if host is None:
            if len(self._hosts) >= MAX_HOSTS:
                self._forget_idle()
            host = self._hosts[name] = _Host(float(min(FIRST_WINDOW, self.most)), float(self.most))
        return host

    def window(self, name: str) -> int:
        """The host's window now (the first window for a host not seen)."""
        host = self._hosts.get(name)
        return max(1, int(host.window)) if host else min(FIRST_WINDOW, self.most)

    def admit(self, name: str, item: T) -> bool | None:
        """True: send `item` now (it holds one of the host's slots until :meth:`done`); False: it
        waits its turn beside the host; None: the host is busy enough, give it back."""
        host = self._host(name)
        if host.room():
            host.active += 1
            return True
        if len(host.waiting) < self.most:
            host.waiting.append(item)
            self.waiting += 1
            return False
        return None

    def done(self, name: str, latency_s: float | None, overloaded: bool) -> list[T]:
        """An attempt to the host ended (`latency_s`: how long it took to answer, or to fail;
        None when nothing was sent): adapt the window; the waiting items that may go now (each
        holds a slot)."""
        host = self._host(name)
        host.active -= 1
        now = self._clock()
        if latency_s is None and not overloaded:
            pass  # nothing was sent: nothing learnt about the host
        elif overloaded or (latency_s is not None and latency_s > self.slow_s):
            # One cut per answer time: the answers of a burst sent together are one signal.
            if now - host.last_cut > (latency_s or self.slow_s):
                host.window = max(1.0, host.window / 2)
                host.threshold = host.window
                host.last_cut = now
        elif host.window < self.most:
            # Below the threshold (slow start) one more per answer, then one more per window.
            step = 1 if host.window < host.threshold else 1 / host.window
            host.window = min(float(self.most), host.window + step)
        ready: list[T] = []
        while host.waiting and host.room():
            ready.append(host.waiting.popleft())
            host.active += 1
            self.waiting -= 1
        return ready

    def _forget_idle(self) -> None:
        self._hosts = {name: host for name, host in self._hosts.items() if host.active or host.waiting}
