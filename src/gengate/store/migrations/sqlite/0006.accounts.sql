-- depends: 0005.retry
-- Accounts: credit balances, per-key limits, and a ledger of every charge, refund and top-up.

-- NULL credits: unlimited. NULL rate_limit: the server's default. NULL max_concurrent: no cap.
ALTER TABLE api_keys ADD COLUMN credits INTEGER;
ALTER TABLE api_keys ADD COLUMN rate_limit TEXT;          -- a `limits` string, e.g. '60/minute'
ALTER TABLE api_keys ADD COLUMN max_concurrent INTEGER;   -- pending + processing tasks at once

-- The credits a task was charged at submit: what a failed or canceled task gives back.
ALTER TABLE tasks ADD COLUMN charge INTEGER NOT NULL DEFAULT 0;

-- A key's unfinished tasks, counted against its max_concurrent by every submit.
CREATE INDEX tasks_active_by_key ON tasks (key_id) WHERE state IN ('pending', 'processing');

CREATE TABLE ledger (
    id          INTEGER PRIMARY KEY,  -- increasing, the cursor of usage pages (PostgreSQL: identity)
    key_id      TEXT NOT NULL,
    task_id     TEXT,                 -- NULL for a top-up
    kind        TEXT NOT NULL,        -- 'charge', 'refund' or 'topup'
    amount      INTEGER NOT NULL,     -- signed change of the balance: -charge, +refund, +/-topup
    balance     INTEGER,              -- the balance after it; NULL while the key is unlimited
    created_at  INTEGER NOT NULL,
    -- One charge and at most one refund per task: a second refund is a no-op, whatever path
    -- (finish, cancel, reaper) ends the task. NULL task ids (top-ups) never collide.
    UNIQUE (task_id, kind)
);
CREATE INDEX ledger_by_key ON ledger (key_id, id);
