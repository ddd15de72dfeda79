-- depends: 0003.notify-after-commit
-- Web console sign-ins (as SQLite migration 0007): only the SHA-256 of the session id is kept.
CREATE TABLE console_sessions (
    id_hash     TEXT PRIMARY KEY,
    key_id      TEXT NOT NULL,
    csrf        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
