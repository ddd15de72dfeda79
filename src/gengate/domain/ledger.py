"""The credit ledger: every change of a key's balance, with the task that caused it."""

from __future__ import annotations

import enum

import msgspec

#: The largest balance a key may hold: exact in JSON clients that read numbers as doubles.
MAX_CREDITS = 2**53 - 1


class LedgerKind(enum.StrEnum):
    """Why a balance changed: a submit paid for its task, a failed or canceled task was paid
    back (once), or an admin changed the balance."""

    CHARGE = "charge"
    REFUND = "refund"
    TOPUP = "topup"


class LedgerEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One change of a key's balance.

    Fields: `id` (increasing: the cursor of usage pages), `key_id`, `kind`, `amount` (signed:
    negative for a charge), `balance` (after the change; None for an unlimited key), `task_id`
    (None for a top-up), `created_at` (Unix ms).
    """

    id: int
    key_id: str
    kind: LedgerKind
    amount: int
    balance: int | None
    task_id: str | None
    created_at: int

    def public(self) -> dict[str, object]:
        return {
            "id": self.id,
            "kind": self.kind.value,
            "amount": self.amount,
            "balance": self.balance,
            "taskId": self.task_id,
            "createdAt": self.created_at,
        }


def topup_amount(old: int | None, new: int | None) -> int:
    """The ledger amount of an admin setting a balance from `old` to `new` (None: unlimited):
    the difference; becoming unlimited is a zero row, and from unlimited the whole new balance."""
    return 0 if new is None else new - (old or 0)
