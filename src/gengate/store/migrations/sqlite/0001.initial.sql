-- The embedded schema: keys and tasks.
CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    key_hash    TEXT NOT NULL UNIQUE,
    prefix      TEXT NOT NULL,
    disabled    INTEGER NOT NULL DEFAULT 0,
    expires_at  INTEGER,
    models      TEXT,                -- JSON array of model ids; NULL admits every model
    created_at  INTEGER NOT NULL
);

CREATE TABLE tasks (
    id             TEXT PRIMARY KEY,
    key_id         TEXT NOT NULL,
    model          TEXT NOT NULL,
    mode           TEXT NOT NULL,
    state          TEXT NOT NULL,
    input          TEXT NOT NULL,    -- validated input, JSON
    request        TEXT NOT NULL,    -- the client's original body, JSON
    request_type   TEXT NOT NULL,
    callback_url   TEXT,
    priority       INTEGER NOT NULL DEFAULT 0,
    create_time    INTEGER NOT NULL,
    start_time     INTEGER,
    complete_time  INTEGER,
    cost_time      INTEGER,
    progress       INTEGER,
    files          TEXT,             -- JSON array of [name, content_type, size]
    fail_code      TEXT,
    fail_msg       TEXT,
    attempts       INTEGER NOT NULL DEFAULT 0,
    lease_owner    TEXT,
    lease_expires  INTEGER,
    trace_id       TEXT,
    files_removed  INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX tasks_queue ON tasks (model, priority DESC, create_time) WHERE state = 'pending';
CREATE INDEX tasks_leases ON tasks (lease_expires) WHERE state = 'processing';
CREATE INDEX tasks_retention ON tasks (complete_time) WHERE state = 'success' AND files_removed = 0;
CREATE INDEX tasks_by_key ON tasks (key_id, create_time);
