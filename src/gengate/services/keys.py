"""API keys: creating them for admins, and checking a bearer key on every request.

Checking is on the hot path of every status read, so known keys are cached for a short
time; a change made here drops the cache at once, and other processes see it within
`cache_ttl_s`. Every bearer value, whatever its shape (wrong, truncated, the right prefix with
a wrong secret), takes the same path: hashed, looked up by hash, compared in constant time;
unknown keys all get the same `invalid_token` answer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Sequence

from gengate.domain.clock import now_ms
from gengate.domain.errors import BadRequest, Disabled, InvalidToken, KeyNotFound, NoToken, TokenExpired
from gengate.domain.ids import hash_key, key_display_prefix, new_api_key, new_key_id
from gengate.domain.keys import ApiKey, KeyChanges
from gengate.domain.ledger import LedgerEntry
from gengate.services.ratelimit import parse_rate_limit
from gengate.store.base import Store
from gengate.webhooks.secrets import webhook_secret


class KeyService:
    def __init__(
        self,
        store: Store,
        admin_key: str | None,
        *,
        server_secret: bytes = b"",
        cache_ttl_s: float = 2.0,
    ) -> None:
        self.store = store
        self._server_secret = server_secret
        #: None (a command-line tool managing keys) admits no admin request at all.
        self._admin_hash = hash_key(admin_key).encode() if admin_key is not None else None
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}
        self._ttl = cache_ttl_s

    # -- checking --------------------------------------------------------------
    async def authenticate(self, authorization: str | None) -> ApiKey:
        """The key behind an `Authorization: Bearer` header, or the error that says why not."""
        token_hash = hash_key(bearer_token(authorization))
        now = time.monotonic()
        cached = self._cache.get(token_hash)
        if cached is not None and cached[0] > now:
            key = cached[1]
        else:
            key = await self.store.get_key_by_hash(token_hash)
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[token_hash] = (now + self._ttl, key)
        # The lookup was by this very hash; comparing again in constant time costs nothing and
        # keeps any future lookup (a prefix index, say) from becoming a timing oracle.
        if key is not None and not hmac.compare_digest(key.key_hash.encode(), token_hash.encode()):
            key = None
        return _usable(key)

    async def check_key(self, key_id: str) -> ApiKey:
        """A key named by id (in a signed token): still there, enabled and unexpired."""
        return _usable(await self.store.get_key(key_id))

    def authenticate_admin(self, authorization: str | None) -> None:
        token_hash = hash_key(bearer_token(authorization)).encode()
        if self._admin_hash is None or not hmac.compare_digest(token_hash, self._admin_hash):
            raise InvalidToken("The specified admin token is invalid or wrong.")

    def admin_fingerprint(self) -> str | None:
        """A short digest of the admin key's hash: a console session of the admin key names it,
        so that a new admin key ends the sessions of the old one."""
        if self._admin_hash is None:
            return None
        return hashlib.sha256(b"gengate-admin:" + self._admin_hash).hexdigest()[:16]

    # -- managing ----------------------------------------------------------------
    async def create(
        self,
        name: str,
        *,
        models: Sequence[str] | None = None,
        expires_at: int | None = None,
        disabled: bool = False,
        credits: int | None = None,
        rate_limit: str | None = None,
        max_concurrent: int | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key and its secret, which is shown this once and never stored."""
        check_rate_limit(rate_limit)
        secret = new_api_key()
        key = ApiKey(
            id=new_key_id(),
            name=name,
            key_hash=hash_key(secret),
            prefix=key_display_prefix(secret),
            disabled=disabled,
            expires_at=expires_at,
            models=tuple(models) if models is not None else None,
            created_at=now_ms(),
            credits=credits,
            rate_limit=rate_limit,
            max_concurrent=max_concurrent,
        )
        await self.store.insert_key(key)
        return key, secret

    async def list(self) -> list[ApiKey]:
        return await self.store.list_keys()

    async def update(self, key_id: str, changes: KeyChanges) -> ApiKey:
        if isinstance(changes.rate_limit, str):
            check_rate_limit(changes.rate_limit)
        key = await self.store.update_key(key_id, changes)
        if key is None:
            raise KeyNotFound(f"Key '{key_id}' does not exist.")
        self._cache.pop(key.key_hash, None)
        return key

    async def add_credits(self, key_id: str, amount: int) -> ApiKey:
        """Top a limited key up by `amount` (negative takes away), atomically, on the ledger."""
        key = await self.store.add_credits(key_id, amount)
        if key is None:
            raise KeyNotFound(f"Key '{key_id}' does not exist.")
        self._cache.pop(key.key_hash, None)
        return key

    async def usage(self, key: ApiKey, before: int | None, limit: int) -> Sequence[LedgerEntry]:
        """The key's ledger, newest first, from before the entry id `before`."""
        return await self.store.list_ledger(key.id, before, limit)

    async def balance(self, key: ApiKey) -> int | None:
        """The balance now (the cached key may be a moment old); None for unlimited."""
        current = await self.store.get_key(key.id)
        return current.credits if current is not None else key.credits

    # -- scoped tokens -----------------------------------------------------------
    def scoped_token(self, key: ApiKey, scope: str, ttl_ms: int) -> tuple[str, int]:
        """A short-lived token standing for `key` on one `scope` only (a browser's event
        stream, which cannot send headers); returns it and its expiry (Unix ms)."""
        expires = now_ms() + ttl_ms
        return f"{key.id}.{expires}.{self._sign_scope(key.id, scope, expires)}", expires

    async def key_of_scoped_token(self, token: str, scope: str) -> ApiKey:
        key_id, _, rest = token.partition(".")
        expires_text, _, signature = rest.partition(".")
        if not (expires_text.isascii() and expires_text.isdigit()) or len(expires_text) > 18:
            raise InvalidToken("The token is invalid.")
        expected = self._sign_scope(key_id, scope, int(expires_text))
        if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "surrogatepass")):
            raise InvalidToken("The token is invalid.")
        if int(expires_text) <= now_ms():
            raise TokenExpired("The token has expired; ask for a new one.")
        return await self.check_key(key_id)

    def _sign_scope(self, key_id: str, scope: str, expires: int) -> str:
        if not self._server_secret:
            raise RuntimeError("scoped tokens need the server secret")
        message = f"gengate-scoped:{key_id}:{scope}:{expires}".encode()
        digest = hmac.new(self._server_secret, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    # -- webhook secrets ---------------------------------------------------------
    def webhook_secret(self, key: ApiKey) -> str:
        if not self._server_secret:
            raise RuntimeError("webhook secrets need the server secret")
        return webhook_secret(self._server_secret, key)

    async def webhook_secret_of(self, key_id: str) -> str:
        key = await self.store.get_key(key_id)
        if key is None:
            raise KeyNotFound(f"Key '{key_id}' does not exist.")
        return self.webhook_secret(key)

    async def rotate_webhook_secret(self, key: ApiKey) -> ApiKey:
        """A new secret; callbacks signed from now on use it, and the old one stops verifying."""
        changes = KeyChanges(webhook_secret_version=key.webhook_secret_version + 1)
        return await self.update(key.id, changes)


def _usable(key: ApiKey | None) -> ApiKey:
    if key is None:
        raise InvalidToken
    if key.disabled:
        raise Disabled
    if key.expires_at is not None and key.expires_at <= now_ms():
        raise TokenExpired
    return key


def check_rate_limit(text: str | None) -> None:
    if text is not None:
        try:
            parse_rate_limit(text)
        except ValueError as exc:
            raise BadRequest(f"rate_limit: {exc}") from None


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise NoToken
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise NoToken("Malformed Authorization header: send `Authorization: Bearer <key>`.")
    return token
