"""API keys as the gateway knows them: never the key itself, only its hash and a display prefix."""

from __future__ import annotations

import msgspec


class ApiKey(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """A client's key.

    Fields: `id` (`key_...`, public), `name`, `key_hash` (SHA-256 of the key), `prefix` (first
    characters, to tell keys apart), `disabled`, `expires_at` (Unix ms or None), `models`
    (allowed model ids, None for all), `created_at` (Unix ms), `webhook_secret_version` (bumped by a
    rotation; the secret itself is derived, never stored).
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
        }


class KeyChanges(msgspec.Struct, frozen=True, kw_only=True):
    """A partial update of a key; `UNSET` fields stay as they are."""

    name: str | msgspec.UnsetType = msgspec.UNSET
    disabled: bool | msgspec.UnsetType = msgspec.UNSET
    expires_at: int | msgspec.UnsetType | None = msgspec.UNSET
    models: tuple[str, ...] | msgspec.UnsetType | None = msgspec.UNSET
    webhook_secret_version: int | msgspec.UnsetType = msgspec.UNSET
