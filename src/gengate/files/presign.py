"""Presigned S3 GET URLs (SigV4 query-string auth), signed here rather than by botocore.

Why not botocore's `generate_presigned_url`: it runs the SDK's whole request pipeline
(endpoint rules, event hooks), about 300 µs a URL, and a status read builds one URL per
result file; this is string and hash work, about 12 µs, with no I/O. It also signs at
a time the caller picks rather than "now", so a result's URL is the same on every read and
dies exactly when the result expires.

The algorithm: https://docs.aws.amazon.com/AmazonS3/latest/API/sigv4-query-string-auth.html
The tests check these URLs against botocore's own signer, behind a real S3 server.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from typing import NamedTuple, Protocol
from urllib.parse import quote, urlsplit

#: SigV4 refuses presigned URLs valid for longer than 7 days.
MAX_EXPIRES_S = 7 * 24 * 3600
_ALGORITHM = "AWS4-HMAC-SHA256"
_DEFAULT_PORTS = {"http": 80, "https": 443}
#: Scopes kept: one per credentials and day, and URLs are signed on many days.
_SCOPES_KEPT = 64


class Credentials(Protocol):
    """What a presigned URL is signed with (botocore's `ReadOnlyCredentials` has this shape)."""

    @property
    def access_key(self) -> str | None: ...

    @property
    def secret_key(self) -> str | None: ...

    @property
    def token(self) -> str | None: ...


class Presigner:
    """Signs GET URLs for the objects of one bucket at one base URL.

    `base_url` is where object keys are appended: `http://host:9000/bucket` (path style) or
    `https://bucket.s3.region.amazonaws.com` (virtual-hosted style). `credentials` is called
    for every URL, so rotated credentials are picked up.
    """

    __slots__ = ("_credentials", "_host", "_origin", "_path", "_region", "_scopes")

    def __init__(self, base_url: str, region: str, credentials: Callable[[], Credentials]) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
            raise ValueError(f"Not an http(s) base URL: {base_url!r}.")
        host = parts.hostname.lower()
        if ":" in host:
            host = f"[{host}]"
        if parts.port is not None and parts.port != _DEFAULT_PORTS[parts.scheme]:
            host = f"{host}:{parts.port}"
        self._host = host
        self._path = parts.path.rstrip("/")
        self._origin = f"{parts.scheme}://{host}"
        self._region = region
        self._credentials = credentials
        self._scopes: dict[tuple[str | None, str | None, str | None, str], _Scope] = {}

    def url(self, key: str, signed_s: int, expires_in_s: int) -> str:
        """The URL of object `key`, signed at Unix time `signed_s` and valid `expires_in_s` after it."""
        if not 1 <= expires_in_s <= MAX_EXPIRES_S:
            raise ValueError(f"A presigned URL lives 1 s to 7 days, not {expires_in_s} s.")
        path = f"{self._path}/{quote(key, safe='/~')}"
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(signed_s))
        creds = self._credentials()
        cache_key = (creds.access_key, creds.secret_key, creds.token, amz_date[:8])
        scope = self._scopes.get(cache_key) or self._new_scope(cache_key)
        # The canonical query lists its parameters sorted by name, as this does.
        query = f"{scope.query_head}{amz_date}&X-Amz-Expires={expires_in_s}{scope.query_tail}"
        canonical = f"GET\n{path}\n{query}\nhost:{self._host}\n\nhost\nUNSIGNED-PAYLOAD"
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        to_sign = f"{_ALGORITHM}\n{amz_date}\n{scope.scope}\n{digest}"
        signature = hmac.digest(scope.signing_key, to_sign.encode(), "sha256").hex()
        return f"{self._origin}{path}?{query}&X-Amz-Signature={signature}"

    def _new_scope(self, cache_key: tuple[str | None, str | None, str | None, str]) -> _Scope:
        """What all URLs signed with these credentials on this day share; derived once and kept."""
        access_key, secret_key, token, day = cache_key
        if not (access_key and secret_key):
            raise RuntimeError("No S3 credentials to sign result URLs with.")
        scope = f"{day}/{self._region}/s3/aws4_request"
        signing_key = f"AWS4{secret_key}".encode()
        for part in (day, self._region, "s3", "aws4_request"):
            signing_key = hmac.digest(signing_key, part.encode(), "sha256")
        credential = quote(f"{access_key}/{scope}", safe="~")
        tail = f"&X-Amz-Security-Token={quote(token, safe='~')}" if token else ""
        entry = _Scope(
            scope=scope,
            signing_key=signing_key,
            query_head=f"X-Amz-Algorithm={_ALGORITHM}&X-Amz-Credential={credential}&X-Amz-Date=",
            query_tail=f"{tail}&X-Amz-SignedHeaders=host",
        )
        if len(self._scopes) >= _SCOPES_KEPT:
            self._scopes.clear()
        self._scopes[cache_key] = entry
        return entry


class _Scope(NamedTuple):
    """Per credentials and day: the credential scope, its signing key, and the query around the date."""

    scope: str
    signing_key: bytes
    query_head: str
    query_tail: str
