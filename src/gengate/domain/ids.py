"""Identifiers and secrets: task ids, API keys and how keys are hashed for storage."""

from __future__ import annotations

import hashlib
import secrets

from gengate.domain.randomness import token_hex, token_urlsafe

TASK_ID_PREFIX = "task_"
KEY_PREFIX = "gg_"
#: Characters of the key, after its prefix, kept in clear to tell keys apart in listings.
KEY_DISPLAY_CHARS = 6


def new_task_id() -> str:
    """`task_` and 22 URL-safe characters: 128 random bits, so ids cannot be guessed."""
    return TASK_ID_PREFIX + token_urlsafe(16)


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
