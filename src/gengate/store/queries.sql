-- The SQL both backends share, written once. Each block is one named query; the loader
-- (queries.py) compiles it to each driver's placeholders (`:name` stays for sqlite3, becomes
-- `$n` for asyncpg) and renders two kinds of braces:
--   {task_columns} and the like: the column lists rows.py reads by position;
--   {from A to B}: `state = 'A'`, only where domain/states.py allows A -> B, so a statement
--   that moves a task's state can move it only as the transition table says.
-- Statements that differ between the databases are in sqlite/queries.sql and
-- postgres/queries.sql, under the same kind of name.

-- name: insert_task
INSERT INTO tasks ({task_columns}, trace_context) VALUES ({task_params}, :trace_context)

-- name: get_task
SELECT {task_columns} FROM tasks WHERE id = :id

-- The traced submit's context of a task (migration 0009), read apart from status reads.
-- name: get_trace_context
SELECT trace_context FROM tasks WHERE id = :id

-- name: get_idempotency
SELECT request_hash, task_id FROM idempotency_keys WHERE key_id = :key_id AND idem_key = :idem_key

-- Owns the key when it is new or its earlier use is past the TTL; otherwise returns nothing,
-- and the earlier use is read with get_idempotency. A concurrent insert of the same key waits
-- on the primary key until the first commits, so two requests never both own one key.
-- name: claim_idempotency
INSERT INTO idempotency_keys (key_id, idem_key, request_hash, task_id, created_at)
VALUES (:key_id, :idem_key, :request_hash, :task_id, :now)
ON CONFLICT (key_id, idem_key) DO UPDATE
   SET request_hash = EXCLUDED.request_hash, task_id = EXCLUDED.task_id, created_at = EXCLUDED.created_at
 WHERE idempotency_keys.created_at < :since
RETURNING task_id

-- {filters} adds `AND ...` clauses; the cursor is the (create_time, id) of the last row seen.
-- name: list_tasks
SELECT {task_columns} FROM tasks
 WHERE key_id = :key_id {{filters}}
 ORDER BY create_time DESC, id DESC
 LIMIT :limit

-- name: heartbeat
UPDATE tasks SET lease_expires = :expires
 WHERE id = :id AND state = 'processing' AND lease_owner = :owner AND attempts = :attempt
RETURNING cancel_requested

-- name: cancel_pending
UPDATE tasks
   SET state = 'failed', complete_time = :now, fail_code = :fail_code, fail_msg = :fail_msg
 WHERE id = :id AND {from pending to failed}
RETURNING {task_columns}

-- name: request_cancel
UPDATE tasks SET cancel_requested = 1 WHERE id = :id AND state = 'processing'
RETURNING {task_columns}

-- name: set_progress
UPDATE tasks SET progress = :progress
 WHERE id = :id AND state = 'processing' AND lease_owner = :owner AND attempts = :attempt

-- name: task_logs
SELECT at, line, attempt FROM task_logs WHERE task_id = :id ORDER BY id

-- name: set_upstream
UPDATE tasks SET upstream = :upstream
 WHERE id = :id AND state = 'processing' AND lease_owner = :owner AND attempts = :attempt

-- name: finish_success
UPDATE tasks
   SET state = 'success', complete_time = :now, cost_time = :now - start_time, progress = 100,
       files = :files, output = :output, fail_code = NULL, fail_msg = NULL,
       lease_owner = NULL, lease_expires = NULL
 WHERE id = :id AND {from processing to success} AND lease_owner = :owner AND attempts = :attempt
RETURNING {task_columns}

-- The same for a worker that has the task as it claimed it: only what a run may change (the
-- upstream reference) comes back, not the whole row (RETURNING the row was a third of its cost).
-- name: finish_success_claimed
UPDATE tasks
   SET state = 'success', complete_time = :now, cost_time = :now - start_time, progress = 100,
       files = :files, output = :output, fail_code = NULL, fail_msg = NULL,
       lease_owner = NULL, lease_expires = NULL
 WHERE id = :id AND {from processing to success} AND lease_owner = :owner AND attempts = :attempt
RETURNING upstream, cost_time

-- name: finish_failure
UPDATE tasks
   SET state = 'failed', complete_time = :now, cost_time = :now - start_time,
       files = NULL, fail_code = :fail_code, fail_msg = :fail_msg, lease_owner = NULL, lease_expires = NULL
 WHERE id = :id AND {from processing to failed} AND lease_owner = :owner AND attempts = :attempt
RETURNING {task_columns}

-- A transient failure: back to the queue, not claimable before `run_after`.
-- name: retry_later
UPDATE tasks SET state = 'pending', lease_owner = NULL, lease_expires = NULL, progress = NULL,
       run_after = :run_after
 WHERE id = :id AND {from processing to pending} AND lease_owner = :owner AND attempts = :attempt

-- name: release
UPDATE tasks SET state = 'pending', lease_owner = NULL, lease_expires = NULL, progress = NULL
 WHERE id = :id AND {from processing to pending} AND lease_owner = :owner AND attempts = :attempt
RETURNING model

-- name: requeue
UPDATE tasks SET state = 'pending', lease_owner = NULL, lease_expires = NULL, progress = NULL
 WHERE id = :id AND {from processing to pending} AND lease_expires < :now

-- name: fail_lost
UPDATE tasks
   SET state = 'failed', complete_time = :now, fail_code = :fail_code, fail_msg = :fail_msg,
       lease_owner = NULL, lease_expires = NULL
 WHERE id = :id AND {from processing to failed} AND lease_expires < :now
RETURNING {task_columns}

-- name: expired_results
SELECT id, files FROM tasks
 WHERE state = 'success' AND files_removed = 0 AND complete_time < :before
 ORDER BY complete_time LIMIT :limit

-- name: queue_depth
SELECT count(*) FROM tasks WHERE state = 'pending' AND model = :model

-- Ties of one millisecond go by id: a process makes ids that sort in the order it made them.
-- name: queue_position
SELECT count(*) FROM tasks
 WHERE state = 'pending' AND model = :model
   AND (priority > :priority
        OR (priority = :priority
            AND (create_time < :create_time OR (create_time = :create_time AND id < :id))))

-- A key's unfinished tasks, counted no further than its cap (index tasks_active_by_key).
-- name: active_of_key_upto
SELECT count(*) FROM (SELECT 1 FROM tasks
                       WHERE key_id = :key_id AND state IN ('pending', 'processing') LIMIT :cap) AS t

-- -- keys -------------------------------------------------------------------------------------
-- name: insert_key
INSERT INTO api_keys ({key_columns}) VALUES ({key_params})

-- name: get_key_by_hash
SELECT {key_columns} FROM api_keys WHERE key_hash = :key_hash

-- name: get_key
SELECT {key_columns} FROM api_keys WHERE id = :id

-- name: list_keys
SELECT {key_columns} FROM api_keys ORDER BY created_at, id

-- name: update_key
UPDATE api_keys SET name = :name, disabled = :disabled, expires_at = :expires_at, models = :models,
       webhook_secret_version = :webhook_secret_version, credits = :credits, rate_limit = :rate_limit,
       max_concurrent = :max_concurrent
 WHERE id = :id

-- -- accounts: credits and the ledger ---------------------------------------------------------
-- Each runs in the transaction that inserts or ends a task, so a check and the write it guards
-- are one atomic step (PostgreSQL: the conditional UPDATE takes the key's row lock, then
-- re-checks its WHERE).

-- Take a task's price from a limited key, only if its balance covers it: no row back means
-- "not enough", or an unlimited key (NULL credits), which key_credits tells apart.
-- name: charge_key
UPDATE api_keys SET credits = credits - :amount WHERE id = :key_id AND credits >= :amount RETURNING credits

-- name: key_credits
SELECT credits FROM api_keys WHERE id = :key_id

-- An admin's top-up (negative takes away): a limited key only, kept within 0..MAX_CREDITS.
-- name: add_credits
UPDATE api_keys SET credits = credits + :amount
 WHERE id = :key_id AND credits IS NOT NULL AND credits + :amount BETWEEN 0 AND :max
RETURNING credits

-- name: insert_ledger
INSERT INTO ledger (key_id, task_id, kind, amount, balance, created_at)
VALUES (:key_id, :task_id, :kind, :amount, :balance, :now)

-- The refund of a failed or canceled task: its ledger row goes first, and the unique index on
-- refunds (ledger_one_refund) makes a second one a no-op that returns no row, so the balance is
-- credited exactly once whichever path (finish, cancel, reaper) ends the task.
-- name: insert_refund
INSERT INTO ledger (key_id, task_id, kind, amount, balance, created_at)
VALUES (:key_id, :task_id, 'refund', :amount, NULL, :now)
ON CONFLICT (task_id) WHERE kind = 'refund' DO NOTHING
RETURNING id

-- Give credits back to a limited key; an unlimited key (NULL) stays as it is.
-- name: credit_key
UPDATE api_keys SET credits = credits + :amount WHERE id = :key_id AND credits IS NOT NULL RETURNING credits

-- name: set_ledger_balance
UPDATE ledger SET balance = :balance WHERE id = :id

-- Newest first; the cursor is the id of the last entry seen.
-- name: list_ledger
SELECT {ledger_columns} FROM ledger
 WHERE key_id = :key_id AND id < :before
 ORDER BY id DESC
 LIMIT :limit

-- -- callbacks --------------------------------------------------------------------------------
-- Leased from the start (`owner`, `expires`) when handed over to this process's sender. The casts:
-- PostgreSQL cannot type `$1 + $2` of two parameters (a failed or cancelled task's ending failed so).
-- name: insert_delivery
INSERT INTO deliveries (id, task_id, key_id, url, dialect, state, next_attempt_at, created_at,
                        lease_owner, lease_expires)
VALUES (:id, :task_id, :key_id, :url, :dialect, 'pending', CAST(:now AS BIGINT) + CAST(:first_delay AS BIGINT),
        :now, :owner, :expires)

-- A running claim's `start` callback (a webhook event of Replicate's): fenced on the claim, and
-- owed once per task, so never beside another delivery of the task (a retried claim's).
-- name: insert_start_delivery
INSERT INTO deliveries (id, task_id, key_id, url, dialect, state, next_attempt_at, created_at)
SELECT :delivery_id, id, key_id, callback_url, dialect, 'pending', :now, :now
  FROM tasks
 WHERE id = :id AND state = 'processing' AND lease_owner = :owner AND attempts = :attempt
   AND callback_url IS NOT NULL
   AND NOT EXISTS (SELECT 1 FROM deliveries WHERE task_id = :id)

-- A running claim's `logs` callback, due at :due: none while one of the task's is still waiting
-- for its first attempt (sent, it shows every line written by then).
-- name: insert_logs_delivery
INSERT INTO deliveries (id, task_id, key_id, url, dialect, state, next_attempt_at, created_at)
SELECT :delivery_id, id, key_id, callback_url, dialect, 'pending', :due, :now
  FROM tasks
 WHERE id = :id AND state = 'processing' AND lease_owner = :owner AND attempts = :attempt
   AND callback_url IS NOT NULL
   AND NOT EXISTS (SELECT 1 FROM deliveries WHERE task_id = :id AND state = 'pending' AND attempts = 0)

-- When the task's latest delivery went out (or is due): the next `logs` one keeps its distance.
-- name: last_delivery_at
SELECT max(coalesce(completed_at, next_attempt_at, created_at)) FROM deliveries WHERE task_id = :id

-- A delivery leased to a sender is due again only when its lease runs out.
-- name: next_delivery_due
SELECT min(CASE WHEN lease_expires >= :now THEN lease_expires ELSE next_attempt_at END)
  FROM deliveries WHERE state = 'pending'

-- A claimed delivery the sender gives back unsent (its receiver's host is busy): due again at
-- :until, no attempt counted.
-- name: defer_delivery
UPDATE deliveries SET lease_owner = NULL, lease_expires = NULL, next_attempt_at = :until
 WHERE id = :id AND lease_owner = :owner AND state = 'pending'

-- name: deliveries_of_task
SELECT {delivery_columns} FROM deliveries WHERE task_id = :task_id ORDER BY created_at, id

-- name: attempts_of_delivery
SELECT attempt, started_at, status_code, latency_ms, error FROM delivery_attempts
 WHERE delivery_id = :delivery_id ORDER BY attempt

-- Sends the message again, with the same id, as a fresh run of the retry schedule.
-- name: redeliver
UPDATE deliveries SET state = 'pending', next_attempt_at = :now, completed_at = NULL, round_start = attempts
 WHERE id = :id AND state <> 'pending'

-- -- the web console ------------------------------------------------------------------------
-- name: insert_session
INSERT INTO console_sessions (id_hash, key_id, csrf, created_at, expires_at)
VALUES (:id_hash, :key_id, :csrf, :created_at, :expires_at)

-- name: delete_expired_sessions
DELETE FROM console_sessions WHERE expires_at <= :now

-- name: get_session
SELECT id_hash, key_id, csrf, created_at, expires_at FROM console_sessions
 WHERE id_hash = :id_hash AND expires_at > :now

-- name: delete_session
DELETE FROM console_sessions WHERE id_hash = :id_hash

-- Per UTC day and model; failed tasks were refunded, so they spent nothing.
-- name: usage_by_day
SELECT create_time / 86400000 AS day, model, count(*),
       coalesce(sum(CASE WHEN state = 'failed' THEN 0 ELSE charge END), 0)
  FROM tasks
 WHERE key_id = :key_id AND create_time >= :since
 GROUP BY day, model
 ORDER BY day, model

-- name: pending_by_model
SELECT model, count(*) FROM tasks WHERE state = 'pending' GROUP BY model

-- name: processing_by_model
SELECT model, count(*) FROM tasks WHERE state = 'processing' GROUP BY model

-- The retention index covers it: successes whose files are still kept (all of the last hour's,
-- unless results live less than that).
-- name: run_times_since
SELECT model, cost_time FROM tasks
 WHERE state = 'success' AND files_removed = 0 AND complete_time >= :since

-- name: worker_leases
SELECT lease_owner, count(*), min(start_time), max(lease_expires) FROM tasks
 WHERE state = 'processing'
 GROUP BY lease_owner
 ORDER BY lease_owner

-- name: retrying_deliveries
SELECT count(*) FROM deliveries WHERE state = 'pending' AND attempts > 0

-- name: failed_deliveries_since
SELECT count(*) FROM deliveries WHERE state = 'failed' AND completed_at >= :since
