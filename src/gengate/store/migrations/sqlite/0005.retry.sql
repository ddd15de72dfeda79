-- depends: 0004.idempotency
-- Transient failures are retried with backoff: a pending task is not claimed before `run_after`.
ALTER TABLE tasks ADD COLUMN run_after INTEGER NOT NULL DEFAULT 0;
-- The upstream's own reference of a relayed task (JSON: provider, task id, trace id).
ALTER TABLE tasks ADD COLUMN upstream TEXT;
