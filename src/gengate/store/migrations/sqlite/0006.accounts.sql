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

-- Pending tasks per model, kept by the triggers below in the transaction of every change: the
-- queue cap reads one row where counting a deep queue would cost a millisecond per submit.
-- (PostgreSQL: one hot row per model would serialise submits; count or estimate there.)
CREATE TABLE queue_depths (
    model    TEXT PRIMARY KEY,
    pending  INTEGER NOT NULL DEFAULT 0
);
INSERT INTO queue_depths (model, pending)
SELECT model, count(*) FROM tasks WHERE state = 'pending' GROUP BY model;

CREATE TRIGGER queue_depth_insert AFTER INSERT ON tasks WHEN NEW.state = 'pending'
BEGIN
    INSERT INTO queue_depths (model, pending) VALUES (NEW.model, 1)
    ON CONFLICT (model) DO UPDATE SET pending = pending + 1;
END;

-- Claimed, or canceled while pending.
CREATE TRIGGER queue_depth_leave AFTER UPDATE OF state ON tasks
WHEN OLD.state = 'pending' AND NEW.state != 'pending'
BEGIN
    UPDATE queue_depths SET pending = pending - 1 WHERE model = OLD.model;
END;

-- Back to the queue: a lease that expired, a release, a retry after a transient failure.
CREATE TRIGGER queue_depth_return AFTER UPDATE OF state ON tasks
WHEN OLD.state != 'pending' AND NEW.state = 'pending'
BEGIN
    INSERT INTO queue_depths (model, pending) VALUES (NEW.model, 1)
    ON CONFLICT (model) DO UPDATE SET pending = pending + 1;
END;

CREATE TRIGGER queue_depth_delete AFTER DELETE ON tasks WHEN OLD.state = 'pending'
BEGIN
    UPDATE queue_depths SET pending = pending - 1 WHERE model = OLD.model;
END;

CREATE TABLE ledger (
    id          INTEGER PRIMARY KEY,  -- increasing, the cursor of usage pages (PostgreSQL: identity)
    key_id      TEXT NOT NULL,
    task_id     TEXT,                 -- NULL for a top-up
    kind        TEXT NOT NULL,        -- 'charge', 'refund' or 'topup'
    amount      INTEGER NOT NULL,     -- signed change of the balance: -charge, +refund, +/-topup
    balance     INTEGER,              -- the balance after it; NULL while the key is unlimited
    created_at  INTEGER NOT NULL
);
CREATE INDEX ledger_by_key ON ledger (key_id, id);
-- At most one refund per task: a second one is a no-op, whatever path (finish, cancel, the
-- reaper) ends the task. (One charge per task holds by itself: a task is inserted once.) Only
-- refunds are indexed, so a charge, written with every submit, costs no index entry here.
CREATE UNIQUE INDEX ledger_one_refund ON ledger (task_id) WHERE kind = 'refund';
