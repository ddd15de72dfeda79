-- depends: 0003.cancel
-- Idempotency-Key: the same key and request within 24 h returns the task made the first time.
CREATE TABLE idempotency_keys (
    key_id        TEXT NOT NULL,
    idem_key      TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    task_id       TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (key_id, idem_key)
);
CREATE INDEX idempotency_age ON idempotency_keys (created_at);
