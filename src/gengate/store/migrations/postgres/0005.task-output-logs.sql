-- depends: 0004.console-sessions
-- Plain output values beside the files (as SQLite migration 0008).
ALTER TABLE tasks ADD COLUMN output TEXT;
-- A run's log lines, kept apart from the task row so that status reads never carry them.
CREATE TABLE task_logs (
    id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id  TEXT NOT NULL,
    attempt  INTEGER NOT NULL,
    at       BIGINT NOT NULL,
    line     TEXT NOT NULL
);
CREATE INDEX task_logs_task ON task_logs (task_id, id);
