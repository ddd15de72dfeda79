-- The PostgreSQL schema: the SQLite schema of migrations 0001-0005 in one step, with the same
-- columns and meanings, so that rows map to records the same way on both backends.
CREATE TABLE api_keys (
    id                      TEXT PRIMARY KEY,
    name                    TEXT NOT NULL,
    key_hash                TEXT NOT NULL UNIQUE,
    prefix                  TEXT NOT NULL,
    disabled                INTEGER NOT NULL DEFAULT 0,
    expires_at              BIGINT,
    models                  TEXT,            -- JSON array of model ids; NULL admits every model
    created_at              BIGINT NOT NULL,
    webhook_secret_version  INTEGER NOT NULL DEFAULT 1
);

CREATE TABLE tasks (
    id                TEXT PRIMARY KEY,
    key_id            TEXT NOT NULL,
    model             TEXT NOT NULL,
    mode              TEXT NOT NULL,
    state             TEXT NOT NULL,
    input             TEXT NOT NULL,         -- validated input, JSON
    request           TEXT NOT NULL,         -- the client's original body, JSON
    request_type      TEXT NOT NULL,
    callback_url      TEXT,
    priority          INTEGER NOT NULL DEFAULT 0,
    create_time       BIGINT NOT NULL,
    start_time        BIGINT,
    complete_time     BIGINT,
    cost_time         BIGINT,
    progress          INTEGER,
    files             TEXT,                  -- JSON array of [name, content_type, size]
    fail_code         TEXT,
    fail_msg          TEXT,
    attempts          INTEGER NOT NULL DEFAULT 0,
    lease_owner       TEXT,
    lease_expires     BIGINT,
    trace_id          TEXT,
    dialect           TEXT NOT NULL DEFAULT 'apixo',
    upstream          TEXT,
    files_removed     INTEGER NOT NULL DEFAULT 0,
    cancel_requested  INTEGER NOT NULL DEFAULT 0,
    run_after         BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX tasks_queue ON tasks (model, priority DESC, create_time) WHERE state = 'pending';
CREATE INDEX tasks_leases ON tasks (lease_expires) WHERE state = 'processing';
CREATE INDEX tasks_running ON tasks (model) WHERE state = 'processing';
CREATE INDEX tasks_retention ON tasks (complete_time) WHERE state = 'success' AND files_removed = 0;
CREATE INDEX tasks_by_key ON tasks (key_id, create_time);

CREATE TABLE idempotency_keys (
    key_id        TEXT NOT NULL,
    idem_key      TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    task_id       TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (key_id, idem_key)
);
CREATE INDEX idempotency_age ON idempotency_keys (created_at);

CREATE TABLE deliveries (
    id               TEXT PRIMARY KEY,   -- the Standard Webhooks message id, kept across retries
    task_id          TEXT NOT NULL,
    key_id           TEXT NOT NULL,
    url              TEXT NOT NULL,
    dialect          TEXT NOT NULL,
    state            TEXT NOT NULL,      -- pending, delivered, failed
    attempts         INTEGER NOT NULL DEFAULT 0,
    round_start      INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT,
    lease_owner      TEXT,
    lease_expires    BIGINT,
    created_at       BIGINT NOT NULL,
    completed_at     BIGINT
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_by_task ON deliveries (task_id, created_at);

CREATE TABLE delivery_attempts (
    delivery_id  TEXT NOT NULL,
    attempt      INTEGER NOT NULL,
    started_at   BIGINT NOT NULL,
    status_code  INTEGER,
    latency_ms   INTEGER,
    error        TEXT,
    PRIMARY KEY (delivery_id, attempt)
);

-- Wake-ups across processes: every change of a task row is announced on `gengate_task` (long-poll
-- and SSE waiters), work becoming claimable on `gengate_work` (workers), a cancel of a running task
-- on `gengate_cancel` (its worker), a callback owed or due again on `gengate_deliveries` (senders).
-- NOTIFY is sent at commit, so a listener never reads a change before it is visible.
CREATE FUNCTION gengate_task_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        -- Heartbeats only move the lease: nobody waits for that.
        IF NEW.state <> OLD.state OR NEW.progress IS DISTINCT FROM OLD.progress THEN
            PERFORM pg_notify('gengate_task', NEW.id);
        END IF;
        IF NEW.cancel_requested = 1 AND OLD.cancel_requested = 0 THEN
            PERFORM pg_notify('gengate_cancel', NEW.id);
        END IF;
    END IF;
    IF NEW.state = 'pending' AND (TG_OP = 'INSERT' OR OLD.state <> 'pending') THEN
        PERFORM pg_notify('gengate_work', NEW.model);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER tasks_notify AFTER INSERT OR UPDATE ON tasks
    FOR EACH ROW EXECUTE FUNCTION gengate_task_notify();

CREATE FUNCTION gengate_delivery_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state = 'pending' AND (TG_OP = 'INSERT' OR OLD.state <> 'pending') THEN
        PERFORM pg_notify('gengate_deliveries', '');
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER deliveries_notify AFTER INSERT OR UPDATE ON deliveries
    FOR EACH ROW EXECUTE FUNCTION gengate_delivery_notify();
