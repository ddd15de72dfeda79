"""API keys as the gateway knows them: never the key itself, only its hash and a display prefix."""

from __future__ import annotations

import msgspec


class ApiKey(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """A client's key.

    Fields: `id` (`key_...`, public), `name`, `key_hash` (SHA-256 of the key), `prefix` (first
    characters, to tell keys apart), `disabled`, `expires_at` (Unix ms or None), `models`
    (allowed model ids, None for all), `created_at` (Unix ms), `webhook_secret_version` (bumped by a
    rotation; the secret itself is derived, never stored), `credits` (balance; None is unlimited),
    `rate_limit` (a `limits` string such as `60/minute`; None takes the server's default),
    `max_concurrent` (pending and processing tasks at once; None is no cap).
    """

    id: str
    name: str
    key_hash: str
    prefix: str
    disabled: bool = False
    expires_at: int | None = None
    models: tuple[str, ...] | None = None
    created_at: int
    webhook_secret_version: int = 1
    credits: int | None = None
    rate_limit: str | None = None
    max_concurrent: int | None = None

    def public(self) -> dict[str, object]:
        """The fields an admin may see: everything but the hash."""
        return {
            "id": self.id,
            "name": self.name,
            "prefix": self.prefix,
            "disabled": self.disabled,
            "expires_at": self.expires_at,
            "models": list(self.models) if self.models is not None else None,
            "created_at": self.created_at,
            "credits": self.credits,
            "rate_limit": self.rate_limit,
            "max_concurrent": self.max_concurrent,
        }


class KeyChanges(msgspec.Struct, frozen=True, kw_only=True):
    """A partial update of a key; `UNSET` fields stay as they are. A new `credits` sets the
    balance: the store writes the difference to the ledger as a top-up."""

    name: str | msgspec.UnsetType = msgspec.UNSET
    disabled: bool | msgspec.UnsetType = msgspec.UNSET
    expires_at: int | msgspec.UnsetType | None = msgspec.UNSET
    models: tuple[str, ...] | msgspec.UnsetType | None = msgspec.UNSET
    webhook_secret_version: int | msgspec.UnsetType = msgspec.UNSET
    credits: int | msgspec.UnsetType | None = msgspec.UNSET
    rate_limit: str | msgspec.UnsetType | None = msgspec.UNSET
    max_concurrent: int | msgspec.UnsetType | None = msgspec.UNSET
