"""Random bytes for ids, drawn from the OS a few kilobytes at a time.

Every submit mints a task id and every request a trace id; one `getrandom` call each cost
more than the rest of minting them, and in a virtual machine a system call is dear:
in a profile of the drain, the two calls were 6% of the server's time. The bytes are the
same `os.urandom` bytes, handed out in order and never twice. A forked child starts with
an empty pool, so a parent and its children never share bytes (`serve --processes`).
"""

from __future__ import annotations

import base64
import os
import threading

#: Bytes drawn from the OS at once: 256 ids of 16 bytes.
DRAW = 4096


class RandomPool:
    def __init__(self, draw: int = DRAW) -> None:
        self._draw = draw
        self._buffer = b""
        self._at = 0
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self.clear)

    def take(self, n: int) -> bytes:
        with self._lock:
            end = self._at + n
            if end > len(self._buffer):
                self._buffer = os.urandom(max(self._draw, n))
                self._at, end = 0, n
            chunk = self._buffer[self._at : end]
            self._at = end
            return chunk

    def clear(self) -> None:
        """Forget the bytes not handed out yet (the pool after a fork)."""
        self._lock = threading.Lock()  # a fork may happen while another thread holds it
        self._buffer = b""
        self._at = 0


POOL = RandomPool()


def token_bytes(n: int) -> bytes:
    return POOL.take(n)


def token_hex(n: int) -> str:
    return POOL.take(n).hex()


def token_urlsafe(n: int) -> str:
    """As :func:`secrets.token_urlsafe`: `n` random bytes, base64url without padding."""
    return base64.urlsafe_b64encode(POOL.take(n)).rstrip(b"=").decode("ascii")
