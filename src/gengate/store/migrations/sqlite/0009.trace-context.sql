-- depends: 0008.task-output-logs
-- The OpenTelemetry context of a task's submit (W3C traceparent), read by the worker that claims
-- it and by the sender of its callbacks; NULL when the submit was not traced. Status reads never
-- select it.
ALTER TABLE tasks ADD COLUMN trace_context TEXT;
