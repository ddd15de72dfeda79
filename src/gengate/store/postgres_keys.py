"""The PostgreSQL store's keys and credit ledger."""

from __future__ import annotations

import msgspec

from gengate.domain.clock import now_ms
from gengate.domain.keys import ApiKey, KeyChanges
from gengate.domain.ledger import LedgerEntry
from gengate.store import postgres_accounts as accounts
from gengate.store import postgres_queries as q
from gengate.store.postgres_edge import PgBase, unavailable_on_error
from gengate.store.sqlite_rows import key_from_row, key_row, ledger_from_row, models_json


class PgKeys(PgBase):
    @unavailable_on_error
    async def insert_key(self, key: ApiKey) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(q.INSERT_KEY, *key_row(key))
            await accounts.record_new_balance(conn, key.id, None, key.credits, key.created_at)

    @unavailable_on_error
    async def get_key_by_hash(self, key_hash: str) -> ApiKey | None:
        row = await self.pool.fetchrow(q.GET_KEY_BY_HASH, key_hash)
        return key_from_row(tuple(row)) if row is not None else None

    @unavailable_on_error
    async def get_key(self, key_id: str) -> ApiKey | None:
        row = await self.pool.fetchrow(q.GET_KEY, key_id)
        return key_from_row(tuple(row)) if row is not None else None

    @unavailable_on_error
    async def list_keys(self) -> list[ApiKey]:
        return [key_from_row(tuple(row)) for row in await self.pool.fetch(q.LIST_KEYS)]

    @unavailable_on_error
    async def update_key(self, key_id: str, changes: KeyChanges) -> ApiKey | None:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(q.GET_KEY_FOR_UPDATE, key_id)
            if row is None:
                return None
            updated = msgspec.structs.replace(
                key_from_row(tuple(row)),
                **{
                    f: v for f in changes.__struct_fields__ if (v := getattr(changes, f)) is not msgspec.UNSET
                },
            )
            await conn.execute(
                q.UPDATE_KEY,
                updated.name,
                int(updated.disabled),
                updated.expires_at,
                models_json(updated.models),
                updated.webhook_secret_version,
                updated.credits,
                updated.rate_limit,
                updated.max_concurrent,
                key_id,
            )
            # The row is locked since the read: no charge slips in, so the difference is exact.
            await accounts.record_new_balance(
                conn, key_id, key_from_row(row).credits, updated.credits, now_ms()
            )
        return updated

    @unavailable_on_error
    async def add_credits(self, key_id: str, amount: int) -> ApiKey | None:
        async with self.pool.acquire() as conn, conn.transaction():
            if not await accounts.add_credits(conn, key_id, amount, now_ms()):
                return None
            row = await conn.fetchrow(q.GET_KEY, key_id)
        return key_from_row(row) if row is not None else None

    # -- ledger ----------------------------------------------------------------
    @unavailable_on_error
    async def list_ledger(self, key_id: str, before: int | None, limit: int) -> list[LedgerEntry]:
        rows = await self.pool.fetch(
            q.LIST_LEDGER, key_id, before if before is not None else 2**63 - 1, limit
        )
        return [ledger_from_row(row) for row in rows]
