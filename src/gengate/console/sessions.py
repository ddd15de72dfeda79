"""Console sign-ins: an API key (or the admin key) exchanged for a server-side session.

The browser holds only a random session id, in an `HttpOnly`, `SameSite=Strict` cookie scoped
to `/console`; the store holds its SHA-256, so sessions are shared by every API process and a
copy of the database signs nobody in. The key itself is checked once and never kept. Every
request looks the key up again, so a key disabled, expired or removed ends its sessions at once.
Failed sign-ins count against a per-address window in the API's rate-limit storage.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from limits import RateLimitItem

from gengate.domain.clock import now_ms
from gengate.domain.errors import GatewayError, InvalidToken, TooManyRequests
from gengate.domain.keys import ApiKey
from gengate.services.keys import KeyService
from gengate.services.ratelimit import RateLimiter, parse_rate_limit
from gengate.store.base import Store
from gengate.store.console_base import ConsoleSession

COOKIE = "gengate_console"
COOKIE_PATH = "/console"
ADMIN_PREFIX = "admin:"


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is looking: the session, and the key behind it (None for the admin key)."""

    session: ConsoleSession
    key: ApiKey | None

    @property
    def is_admin(self) -> bool:
        return self.key is None

    @property
    def csrf(self) -> str:
        return self.session.csrf


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()


class SessionService:
    def __init__(
        self, store: Store, keys: KeyService, limiter: RateLimiter, *, ttl_s: float, signin_limit: str
    ) -> None:
        self.store = store
        self.keys = keys
        self.limiter = limiter
        self.ttl_ms = int(ttl_s * 1000)
        self.signin_item: RateLimitItem = parse_rate_limit(signin_limit)

    async def sign_in(self, secret: str, address: str) -> tuple[str, Viewer]:
        """A new session for the key `secret`: its cookie value and the viewer. Failures raise the
        API's error for the key (`invalid_token`, `disabled`, ...), or `too_many_requests` once
        this address has failed too often."""
        if await self.limiter.full(self.signin_item, "console-signin", address):
            wait = str(self.signin_item.get_expiry())
            raise TooManyRequests(
                f"Too many failed sign-ins from this address; try again in {wait} s.",
                headers={"Retry-After": wait},
            )
        try:
            key_id, key = await self._identify(secret.strip())
        except GatewayError:
            await self.limiter.hit_item(self.signin_item, "console-signin", address)
            raise
        session_id = secrets.token_urlsafe(32)
        now = now_ms()
        session = ConsoleSession(
            id_hash=_hash(session_id),
            key_id=key_id,
            csrf=secrets.token_urlsafe(32),
            created_at=now,
            expires_at=now + self.ttl_ms,
        )
        await self.store.insert_session(session)
        return session_id, Viewer(session, key)

    async def _identify(self, secret: str) -> tuple[str, ApiKey | None]:
        if not secret:
            raise InvalidToken("Enter an API key.")
        fingerprint = self.keys.admin_fingerprint()
        if fingerprint is not None:
            try:
                self.keys.authenticate_admin(f"Bearer {secret}")
            except GatewayError:
                pass
            else:
                return ADMIN_PREFIX + fingerprint, None
        key = await self.keys.authenticate(f"Bearer {secret}")
        return key.id, key

    async def viewer(self, session_id: str | None) -> Viewer | None:
        """The viewer of a cookie's session, or None: no cookie, an unknown or expired session, or
        a key that may no longer be used (whose session then ends)."""
        if not session_id or len(session_id) > 100:
            return None
        session = await self.store.get_session(_hash(session_id), now_ms())
        if session is None:
            return None
        if session.key_id.startswith(ADMIN_PREFIX):
            if session.key_id != ADMIN_PREFIX + (self.keys.admin_fingerprint() or "-"):
                await self.store.delete_session(session.id_hash)
                return None
            return Viewer(session, None)
        try:
            key = await self.keys.check_key(session.key_id)
        except GatewayError:
            await self.store.delete_session(session.id_hash)
            return None
        return Viewer(session, key)

    async def sign_out(self, viewer: Viewer) -> None:
        await self.store.delete_session(viewer.session.id_hash)
