-- depends: 0007.console-sessions
-- Plain output values beside the files (a model server's numbers or text), JSON, on success.
ALTER TABLE tasks ADD COLUMN output TEXT;
-- A run's log lines, kept apart from the task row so that status reads never carry them.
CREATE TABLE task_logs (
    id       INTEGER PRIMARY KEY,
    task_id  TEXT NOT NULL,
    attempt  INTEGER NOT NULL,
    at       INTEGER NOT NULL,
    line     TEXT NOT NULL
);
CREATE INDEX task_logs_task ON task_logs (task_id, id);
