-- depends: 0001.initial
-- Callbacks: a durable outbox row per callback owed, and every attempt to deliver it.
ALTER TABLE api_keys ADD COLUMN webhook_secret_version INTEGER NOT NULL DEFAULT 1;

-- Which wire dialect created the task: its callback body is that dialect's status body.
ALTER TABLE tasks ADD COLUMN dialect TEXT NOT NULL DEFAULT 'apixo';

CREATE TABLE deliveries (
    id               TEXT PRIMARY KEY,   -- the Standard Webhooks message id, kept across retries
    task_id          TEXT NOT NULL,
    key_id           TEXT NOT NULL,
    url              TEXT NOT NULL,
    dialect          TEXT NOT NULL,
    state            TEXT NOT NULL,      -- pending, delivered, failed
    attempts         INTEGER NOT NULL DEFAULT 0,
    round_start      INTEGER NOT NULL DEFAULT 0,  -- attempts made before a redelivery began
    next_attempt_at  INTEGER,            -- Unix ms; NULL once delivered or failed
    lease_owner      TEXT,
    lease_expires    INTEGER,
    created_at       INTEGER NOT NULL,
    completed_at     INTEGER
);

CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_by_task ON deliveries (task_id, created_at);

CREATE TABLE delivery_attempts (
    delivery_id  TEXT NOT NULL,
    attempt      INTEGER NOT NULL,
    started_at   INTEGER NOT NULL,
    status_code  INTEGER,
    latency_ms   INTEGER,
    error        TEXT,
    PRIMARY KEY (delivery_id, attempt)
);
