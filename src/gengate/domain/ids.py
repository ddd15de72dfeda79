"""Identifiers and secrets: task ids, API keys and how keys are hashed for storage."""

from __future__ import annotations

import hashlib
import secrets
import time

from gengate.domain.randomness import token_hex, token_urlsafe

TASK_ID_PREFIX = "task_"
KEY_PREFIX = "gg_"
#: Characters of the key, after its prefix, kept in clear to tell keys apart in listings.
KEY_DISPLAY_CHARS = 6


def new_task_id() -> str:
    """`task_`, the creation time in 8 characters, then 22 URL-safe random ones (128 bits, so ids
    cannot be guessed). Ids that sort by time are inserted at the right edge of an index, so a
    commit of many new tasks writes a few index pages instead of one per task."""
    return TASK_ID_PREFIX + time_prefix() + token_urlsafe(16)


#: URL-safe characters in ASCII order: text of them sorts as the numbers they encode.
_SORTABLE = "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
#: The last millisecond's prefix: ids made within one millisecond share it.
_last_prefix: tuple[int, str] = (-1, "")


def time_prefix() -> str:
    """The wall clock's millisecond as :func:`sortable_ms` text (cached for the millisecond)."""
    global _last_prefix  # noqa: PLW0603 - one cache for the process; a race computes it twice
    ms = time.time_ns() // 1_000_000
    if _last_prefix[0] != ms:
        _last_prefix = (ms, sortable_ms(ms))
    return _last_prefix[1]


def sortable_ms(ms: int) -> str:
    """`ms` (48 bits: until the year 10889) as 8 URL-safe characters that sort as the number."""
    return "".join(_SORTABLE[(ms >> shift) & 63] for shift in range(42, -6, -6))


def new_key_id() -> str:
    return "key_" + token_hex(8)


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def new_trace_id() -> str:
    """A random (version 4) UUID in its usual text form, as trace ids are on the seeds' wire.

    Built from the hex of 16 random bytes: a third of the cost of `str(uuid.uuid4())`,
    paid on every request.
    """
    h = token_hex(16)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def hash_key(key: str) -> str:
    """SHA-256 of the key. Keys carry 256 random bits, so a fast hash is as safe as a slow one
    and keeps authentication a single indexed lookup."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def key_display_prefix(key: str) -> str:
    return key[: len(KEY_PREFIX) + KEY_DISPLAY_CHARS]
