"""Signed, expiring file URLs: HMAC-SHA256 of the path and the expiry, keyed by the server secret.

A signed URL lets a client fetch a result without its API key (a browser `<img>`, a
downstream service), while the expiry bounds how long a leaked URL stays useful.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from gengate.domain.errors import Forbidden

INVALID_SIGNATURE = "The URL signature is invalid."
EXPIRED = "The URL has expired."


class UrlSigner:
    """Signs and verifies `(path, expires_ms)` pairs with one secret."""

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        if not secret:
            raise ValueError("The URL signing secret must not be empty.")
        self._secret = secret

    def sign(self, path: str, expires_ms: int) -> str:
        """The signature: unpadded base64url of HMAC-SHA256 over the expiry and the path.

        The expiry comes first and ends at a newline it cannot contain, so no two
        `(path, expiry)` pairs share a signed message.
        """
        message = f"{expires_ms}\n{path}".encode("utf-8", "surrogatepass")
        digest = hmac.new(self._secret, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def verify(self, path: str, expires_ms: int, signature: str, now_ms: int) -> None:
        """Raise :class:`Forbidden` unless `signature` is this path's and `now_ms` is before expiry.

        The signature is checked first so a forged URL never learns whether it expired.
        """
        expected = self.sign(path, expires_ms).encode("ascii")
        if not hmac.compare_digest(expected, signature.encode("utf-8", "surrogatepass")):
            raise Forbidden(INVALID_SIGNATURE)
        if now_ms >= expires_ms:
            raise Forbidden(EXPIRED)

    def query(self, path: str, expires_ms: int) -> str:
        """`?expires=<ms>&signature=<sig>` for `path`; base64url needs no escaping."""
        return f"?expires={expires_ms}&signature={self.sign(path, expires_ms)}"
