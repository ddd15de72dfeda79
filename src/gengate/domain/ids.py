"""Identifiers and secrets: task ids, API keys and how keys are hashed for storage."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time

from gengate.domain.randomness import token_bytes, token_hex

TASK_ID_PREFIX = "task_"
KEY_PREFIX = "gg_"
#: Characters of the key, after its prefix, kept in clear to tell keys apart in listings.
KEY_DISPLAY_CHARS = 6


def new_task_id() -> str:
    """`task_`, the creation time in 8 characters, then 22 URL-safe random ones (128 bits, so ids
    cannot be guessed). Ids that sort by time are inserted at the right edge of an index, so a
    commit of many new tasks writes a few index pages instead of one per task.

    Within a process they also sort in the order they were made: in the same millisecond the
    random part is the last one's plus a random step of up to 64 bits (as a monotonic ULID,
    but not guessable from the last), so a queue position can tell two tasks of one
    millisecond apart by id."""
    global _last_task  # noqa: PLW0603 - one sequence for the process (the event loop's thread)
    ms = time.time_ns() // 1_000_000
    last_ms, prefix, last = _last_task
    if ms > last_ms:
        prefix, value = sortable_ms(ms), int.from_bytes(token_bytes(16))
    else:  # the same millisecond (or the clock stepped back): after the last one
        ms, value = last_ms, last + 1 + int.from_bytes(token_bytes(8))
    _last_task = (ms, prefix, value)
    return TASK_ID_PREFIX + prefix + _sortable_132(value)


#: The last task id's millisecond, its text, and its random part as a number.
_last_task: tuple[int, str, int] = (-1, "", 0)


def _sortable_132(value: int) -> str:
    """`value` (under 2**132) as 22 characters that sort as the number: base64 of it, with each
    base64 digit replaced by the sortable digit of the same value."""
    return base64.urlsafe_b64encode(value.to_bytes(18)).decode().translate(_BASE64_TO_SORTABLE)[2:]


#: URL-safe characters in ASCII order: text of them sorts as the numbers they encode.
_SORTABLE = "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
_BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_BASE64_TO_SORTABLE = str.maketrans(_BASE64, _SORTABLE)
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
