-- depends: 0005.task-output-logs
-- The OpenTelemetry context of a task's submit (as SQLite migration 0009).
ALTER TABLE tasks ADD COLUMN trace_context TEXT;
