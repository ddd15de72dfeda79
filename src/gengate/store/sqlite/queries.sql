-- The SQLite driver's own statements: where SQLite needs other SQL than PostgreSQL. The
-- writer thread serialises every write, so none of them takes a lock.

-- {heads} is one claim_head per model, joined by UNION ALL: each walks the partial queue index
-- of its model for at most that model's free capacity, so a long queue costs nothing.
-- name: claim
UPDATE tasks
   SET state = 'processing', lease_owner = :owner, lease_expires = :expires,
       attempts = attempts + 1, start_time = :now, progress = NULL
 WHERE id IN (SELECT id FROM ({{heads}}) ORDER BY priority DESC, create_time LIMIT :limit)
RETURNING {task_columns}, trace_context

-- name: claim_head
SELECT * FROM (SELECT id, priority, create_time FROM tasks
                WHERE {from pending to processing} AND model = :m{{i}} AND run_after <= :now
                ORDER BY priority DESC, create_time LIMIT :c{{i}})

-- Tasks of each model running now, over every worker: the cluster-wide concurrency caps.
-- name: running_by_model
SELECT model, count(*) FROM tasks WHERE state = 'processing' GROUP BY model

-- name: expired_leases
SELECT id, model, attempts, cancel_requested FROM tasks
 WHERE state = 'processing' AND lease_expires < :now

-- Pending tasks of a model, as the triggers of migration 0006 keep them (no row: none).
-- name: pending_of_model
SELECT coalesce((SELECT pending FROM queue_depths WHERE model = :model), 0)

-- As the shared charge_key, but an unlimited key (NULL credits) comes back too, as a row with
-- NULL: one statement where the shared form needs key_credits after it. The one writer makes
-- rewriting that row unchanged cheap; PostgreSQL keeps the shared form, as an UPDATE there would
-- lock an unlimited key's row for every submit. No row: not enough credits, or no such key.
-- name: charge_key
UPDATE api_keys SET credits = credits - :amount
 WHERE id = :key_id AND (credits IS NULL OR credits >= :amount) RETURNING credits

-- The one writer already keeps anything from slipping in between read and write.
-- name: get_key_for_update
SELECT {key_columns} FROM api_keys WHERE id = :id

-- name: claim_deliveries
UPDATE deliveries SET lease_owner = :owner, lease_expires = :expires
 WHERE id IN (SELECT id FROM deliveries
               WHERE state = 'pending' AND next_attempt_at <= :now
                 AND (lease_expires IS NULL OR lease_expires < :now)
               ORDER BY next_attempt_at LIMIT :limit)
RETURNING {delivery_columns}

-- A batch of callback attempts (`attempts`: a JSON array of objects), each recorded, with what
-- follows it, only while its lease is still `owner`'s; answers the ids recorded. Two statements
-- per batch (with `insert_attempts`), not two per attempt.
-- name: record_attempts
UPDATE deliveries
   SET attempts = i.attempt, state = i.state, next_attempt_at = i.next_attempt_at,
       completed_at = CASE WHEN i.state = 'pending' THEN NULL ELSE :now END,
       lease_owner = NULL, lease_expires = NULL
  FROM (SELECT value ->> 'id' AS id, value ->> 'attempt' AS attempt, value ->> 'state' AS state,
               value ->> 'next_attempt_at' AS next_attempt_at
          FROM json_each(:attempts)) AS i
 WHERE deliveries.id = i.id AND deliveries.lease_owner = :owner AND deliveries.attempts = i.attempt - 1
RETURNING deliveries.id

-- The history rows of the attempts `record_attempts` recorded (`recorded`: their ids, JSON).
-- name: insert_attempts
INSERT INTO delivery_attempts (delivery_id, attempt, started_at, status_code, latency_ms, error)
SELECT value ->> 'id', value ->> 'attempt', value ->> 'started_at', value ->> 'status_code',
       value ->> 'latency_ms', value ->> 'error'
  FROM json_each(:attempts)
 WHERE value ->> 'id' IN (SELECT value FROM json_each(:recorded))

-- The tasks of a claimed batch of callbacks, with their trace contexts (`ids`: a JSON array).
-- name: callback_tasks
SELECT {task_columns}, trace_context FROM tasks WHERE id IN (SELECT value FROM json_each(:ids))

-- name: mark_files_removed
UPDATE tasks SET files_removed = 1 WHERE id = :id

-- A batch of a running claim's log lines (`lines`: JSON [[at, line], ...]), kept only while
-- the claim is current (fenced like progress).
-- name: append_logs
INSERT INTO task_logs (task_id, attempt, at, line)
SELECT :id, :attempt, json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(:lines)
 WHERE EXISTS (SELECT 1 FROM tasks WHERE id = :id AND state = 'processing' AND lease_owner = :owner
                                     AND attempts = :attempt)
