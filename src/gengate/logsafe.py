"""Secrets never reach a log line: every record's text is scrubbed as it is formatted.

Keys (`gg_...`, admin keys behind `Bearer`), webhook secrets (`whsec_...`), passwords in URLs
and secret-looking URL parameters are replaced, whichever library logs them (ours, uvicorn,
httpx). A parameter is secret-looking by its name (any name containing `secret`, `sig`, `token`,
`key`, `auth`, `pass`, `pwd`, `code`, `session`, `hmac` or `credential`, in any case and
percent-encoding) or by its value (an AWS key id, a JWT, a long digest or random-looking token).
At INFO and above a URL keeps no query at all (`https://host/path?[3 params]`): a callback URL
is the client's, and a name no pattern knows may still carry a secret.

It works on the record itself (a record factory), so no handler, filter or logger
configuration can be missed; an API key keeps its display prefix so that a line still tells
keys apart.
"""

from __future__ import annotations

import functools
import logging
import re
from urllib.parse import unquote_plus

REDACTED = "[redacted]"

#: Words that make a parameter's name secret-looking wherever they stand in it.
_SECRET_NAME = re.compile(r"(?i)secret|sig|token|key|auth|pass|pwd|code|session|hmac|credential")
#: The same idea in free text (`name=value`, `"name": "value"`), with fewer, less common words:
#: a prose "code=200" or "key=key_..." is not a secret.
_FREE_NAME = (
    r"[\w-]*(?:secret|signature|token|password|passwd|pwd|credential|hmac|session|api_?key|access_?key)[\w-]*"
)

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # API keys: the display prefix (gg_ and 6 characters) stays, the rest goes.
    (re.compile(r"\b(gga?_[A-Za-z0-9_-]{6})[A-Za-z0-9_-]{6,}"), r"\1…[redacted]"),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=_-]{6,}"), "whsec_[redacted]"),
    (re.compile(r"(?i)\b(bearer)\s+[^\s,;\"']+"), r"\1 [redacted]"),
    (re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)[^\s,;\"']+(\s+[^\s,;\"']+)?"), r"\1[redacted]"),
    # user:password@ in URLs.
    (re.compile(r"(?<=://)[^/@\s:]+:[^/@\s]+@"), "[redacted]@"),
    # Credentials of a well-known shape, wherever they appear: AWS key ids, JWTs.
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), REDACTED),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]*"), REDACTED),
    # `client_secret=...`, `Signature=...` (an AWS authorization header), `"password": "..."`.
    (re.compile(rf"(?i)(?<![\w%-])({_FREE_NAME})(\s*=\s*)b?[\"']?[^\s,;&\"'<>]+"), rf"\1\2{REDACTED}"),
    (re.compile(rf"(?i)([\"']{_FREE_NAME}[\"']\s*:\s*b?[\"']?)[^\s,;&\"'<>]+"), rf"\1{REDACTED}"),
)

#: One `name=value` of a query string (also `;`-separated ones).
_PARAMETER = re.compile(r"(?P<lead>[?&;])(?P<name>[^=&;?#\s\"'<>]+)=(?P<value>[^&;#\s\"'<>]*)")
#: A URL with a query (and maybe a fragment), and a request line's target with one (access logs);
#: not one whose query is already counted, so that scrubbing twice changes nothing.
_URL_QUERY = re.compile(
    r"(?P<base>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s?#\"'<>]*)\?(?!\[\d+ params?\])(?P<query>[^\s\"'<>]*)"
)
_TARGET_QUERY = re.compile(
    r"(?P<base>\b(?:GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS) /[^\s?#\"'<>]*)\?(?!\[\d+ params?\])"
    r"(?P<query>[^\s\"'<>]*)"
)
_HEX = re.compile(r"[0-9A-Fa-f]{32,}")
_TOKENISH = re.compile(r"[A-Za-z0-9+/=_.~-]{32,}")


def looks_like_credential(value: str) -> bool:
    """A long digest, or a long token mixing upper case, lower case and digits (random bytes
    in base64): our own ids (`task_` and 22 characters) and UUIDs are neither."""
    if _HEX.fullmatch(value):
        return True
    return (
        _TOKENISH.fullmatch(value) is not None
        and any(c.isupper() for c in value)
        and any(c.islower() for c in value)
        and any(c.isdigit() for c in value)
    )


def _redact_parameter(match: re.Match[str]) -> str:
    name, value = match["name"], match["value"]
    # A value in running text may end in the text's own punctuation ("...&sig=abc, then").
    if _SECRET_NAME.search(unquote_plus(name)) or looks_like_credential(unquote_plus(value).rstrip(",.)]}")):
        return f"{match['lead']}{name}={REDACTED}"
    return match[0]


def _count_parameters(match: re.Match[str]) -> str:
    query = match["query"].partition("#")[0]
    count = sum(1 for part in query.split("&") if part)
    return f"{match['base']}?[{count} param{'' if count == 1 else 's'}]"


#: Exact secrets of this process whatever their shape (an operator's admin key).
_known: set[str] = set()


def add_secret(value: str) -> None:
    """Scrub this exact value too (a secret with no recognisable shape)."""
    if len(value) >= 8:
        _known.add(value)
        redact_cached.cache_clear()


def redact(text: str, level: int = logging.DEBUG) -> str:
    """`text` without secrets; from `INFO` up, without any URL's query either."""
    for secret in _known:
        if secret in text:
            text = text.replace(secret, REDACTED)
    if "=" in text:
        text = _PARAMETER.sub(_redact_parameter, text)
    if level >= logging.INFO and "?" in text:
        text = _URL_QUERY.sub(_count_parameters, text)
        text = _TARGET_QUERY.sub(_count_parameters, text)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


@functools.lru_cache(maxsize=1024)
def redact_cached(text: str, level: int = logging.DEBUG) -> str:
    """:func:`redact`, remembered: the same few messages (`request`, `task claimed`) are
    written again and again, and a line must not cost a dozen regular expressions each time."""
    return redact(text, level)


class Scrubbed(str):
    """Text scrubbed already, field by field (a line rendered by :mod:`gengate.observability.logs`):
    a record whose message it is returns it as it is. Scrubbing the rendered JSON line again
    would cost a second pass, and could cut an escaped quote in half."""

    __slots__ = ()


class RedactedRecord(logging.LogRecord):
    """A log record whose message, traceback and stack text are scrubbed of secrets."""

    def getMessage(self) -> str:
        if type(self.msg) is Scrubbed and not self.args:
            return self.msg
        return redact(super().getMessage(), self.levelno)

    # The formatter caches a traceback's text here; scrubbing it on the way in covers every
    # handler at once.
    @property
    def exc_text(self) -> str | None:
        return self._exc_text

    @exc_text.setter
    def exc_text(self, value: str | None) -> None:
        self._exc_text = redact(value, self.levelno) if value else value

    @property
    def stack_info(self) -> str | None:
        return self._stack_info

    @stack_info.setter
    def stack_info(self, value: str | None) -> None:
        self._stack_info = redact(value, self.levelno) if value else value


def install() -> None:
    """Make every log record of this process a scrubbed one (idempotent)."""
    if logging.getLogRecordFactory() is not RedactedRecord:
        logging.setLogRecordFactory(RedactedRecord)
