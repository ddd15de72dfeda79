-- depends: 0006.accounts
-- Web console sign-ins: one row per session, shared by every API process. Only the SHA-256 of
-- the session id (the cookie) is kept, so a copy of the database signs nobody in.
CREATE TABLE console_sessions (
    id_hash     TEXT PRIMARY KEY,
    key_id      TEXT NOT NULL,       -- the signed-in key, or `admin:<fingerprint>` for the admin key
    csrf        TEXT NOT NULL,       -- the synchronizer token every form and htmx request sends back
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
