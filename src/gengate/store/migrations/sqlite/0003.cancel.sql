-- depends: 0002.webhooks
-- A client asked to cancel a running task: its worker sees this and stops the provider.
ALTER TABLE tasks ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
