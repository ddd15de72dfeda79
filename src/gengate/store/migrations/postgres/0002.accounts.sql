-- depends: 0001.initial
-- Accounts: credit balances, per-key limits, and a ledger of every charge, refund and top-up
-- (as SQLite migration 0006).

-- NULL credits: unlimited. NULL rate_limit: the server's default. NULL max_concurrent: no cap.
ALTER TABLE api_keys ADD COLUMN credits BIGINT;
ALTER TABLE api_keys ADD COLUMN rate_limit TEXT;
ALTER TABLE api_keys ADD COLUMN max_concurrent INTEGER;

-- The credits a task was charged at submit: what a failed or canceled task gives back.
ALTER TABLE tasks ADD COLUMN charge BIGINT NOT NULL DEFAULT 0;

CREATE INDEX tasks_active_by_key ON tasks (key_id) WHERE state IN ('pending', 'processing');

CREATE TABLE ledger (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key_id      TEXT NOT NULL,
    task_id     TEXT,
    kind        TEXT NOT NULL,        -- 'charge', 'refund' or 'topup'
    amount      BIGINT NOT NULL,
    balance     BIGINT,
    created_at  BIGINT NOT NULL
);
CREATE INDEX ledger_by_key ON ledger (key_id, id);
-- At most one refund per task, whatever path ends it; charges (one per submit) get no entry.
CREATE UNIQUE INDEX ledger_one_refund ON ledger (task_id) WHERE kind = 'refund';
