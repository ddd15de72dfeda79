"""Secrets never reach a log line: every record's text is scrubbed as it is formatted.

Keys (`gg_...`, admin keys behind `Bearer`), webhook secrets (`whsec_...`), passwords in URLs
and secret-looking query parameters (`?token=...`) are replaced, whichever library logs them
(ours, uvicorn, httpx). It works on the record itself (a record factory), so no handler, filter
or logger configuration can be missed; an API key keeps its display prefix so that a line still
tells keys apart.
"""

from __future__ import annotations

import logging
import re

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # API keys: the display prefix (gg_ and 6 characters) stays, the rest goes.
    (re.compile(r"\b(gga?_[A-Za-z0-9_-]{6})[A-Za-z0-9_-]{6,}"), r"\1…[redacted]"),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=_-]{6,}"), "whsec_[redacted]"),
    (re.compile(r"(?i)\b(bearer)\s+[^\s,;\"']+"), r"\1 [redacted]"),
    (re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)[^\s,;\"']+(\s+[^\s,;\"']+)?"), r"\1[redacted]"),
    # user:password@ in URLs.
    (re.compile(r"(?<=://)[^/@\s:]+:[^/@\s]+@"), "[redacted]@"),
    # Query parameters that usually carry secrets.
    (
        re.compile(
            r"(?i)([?&](?:token|key|api_?key|secret|signature|sig|password|access_token|auth)=)[^&\s#\"']+"
        ),
        r"\1[redacted]",
    ),
)


#: Exact secrets of this process whatever their shape (an operator's admin key).
_known: set[str] = set()


def add_secret(value: str) -> None:
    """Scrub this exact value too (a secret with no recognisable shape)."""
    if len(value) >= 8:
        _known.add(value)


def redact(text: str) -> str:
    for secret in _known:
        if secret in text:
            text = text.replace(secret, "[redacted]")
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactedRecord(logging.LogRecord):
    """A log record whose message, traceback and stack text are scrubbed of secrets."""

    def getMessage(self) -> str:
        return redact(super().getMessage())

    # The formatter caches a traceback's text here; scrubbing it on the way in covers every
    # handler at once.
    @property
    def exc_text(self) -> str | None:
        return self._exc_text

    @exc_text.setter
    def exc_text(self, value: str | None) -> None:
        self._exc_text = redact(value) if value else value

    @property
    def stack_info(self) -> str | None:
        return self._stack_info

    @stack_info.setter
    def stack_info(self, value: str | None) -> None:
        self._stack_info = redact(value) if value else value


def install() -> None:
    """Make every log record of this process a scrubbed one (idempotent)."""
    if logging.getLogRecordFactory() is not RedactedRecord:
        logging.setLogRecordFactory(RedactedRecord)
