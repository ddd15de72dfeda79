-- The PostgreSQL driver's own statements: where many processes share the database, claims skip
-- rows another process is taking (SKIP LOCKED), admission checks take advisory locks, and the
-- hot writes go as one statement for many rows (the batched submit and the batched success).

-- One lateral walk of the partial queue index per model, at most that model's free capacity,
-- skipping rows another worker is claiming this instant; then the best `limit` of those.
-- name: claim
WITH heads AS (
    SELECT h.id, h.priority, h.create_time
      FROM unnest(:models::text[], :free::int[]) AS w(model, free)
      CROSS JOIN LATERAL (
          SELECT id, priority, create_time FROM tasks
           WHERE {from pending to processing} AND model = w.model AND run_after <= :now
           ORDER BY priority DESC, create_time
           LIMIT w.free
           FOR UPDATE SKIP LOCKED
      ) AS h
), picked AS (
    SELECT id FROM heads ORDER BY priority DESC, create_time LIMIT :limit
)
UPDATE tasks AS t
   SET state = 'processing', lease_owner = :owner, lease_expires = :expires,
       attempts = t.attempts + 1, start_time = :now, progress = NULL
  FROM picked
 WHERE t.id = picked.id
RETURNING {t.task_columns}, t.trace_context

-- Serialises the claims of capped models over the cluster until the claiming transaction ends.
-- name: lock_models
SELECT pg_advisory_xact_lock(hashtextextended('gengate-model:' || m, 0)) FROM unnest(:models::text[]) AS m

-- name: running_of_models
SELECT model, count(*) FROM tasks WHERE state = 'processing' AND model = ANY(:models::text[]) GROUP BY model

-- Several reapers may run at once (one per worker process): SKIP LOCKED gives each row to one.
-- name: expired_leases
SELECT id, model, attempts, cancel_requested FROM tasks
 WHERE state = 'processing' AND lease_expires < :now
 ORDER BY lease_expires LIMIT 500
 FOR UPDATE SKIP LOCKED

-- Not locked: the queue cap keeps a queue bounded, where a few concurrent submits over it do
-- no harm, and a lock would serialise every submit of the model.
-- name: pending_of_model
SELECT count(*) FROM (SELECT 1 FROM tasks WHERE state = 'pending' AND model = :model LIMIT :cap) AS t

-- Serialises the admission checks of one key (max_concurrent): without it, concurrent submits
-- under READ COMMITTED would each count the same old total.
-- name: lock_admission
SELECT pg_advisory_xact_lock(hashtextextended(:lock, 0))

-- The row stays locked until commit: no charge slips in between an admin's read and write.
-- name: get_key_for_update
SELECT {key_columns} FROM api_keys WHERE id = :id FOR UPDATE

-- name: claim_deliveries
UPDATE deliveries SET lease_owner = :owner, lease_expires = :expires
 WHERE id IN (SELECT id FROM deliveries
               WHERE state = 'pending' AND next_attempt_at <= :now
                 AND (lease_expires IS NULL OR lease_expires < :now)
               ORDER BY next_attempt_at LIMIT :limit
               FOR UPDATE SKIP LOCKED)
RETURNING {delivery_columns}

-- The tasks of a claimed batch of callbacks, with their trace contexts (`ids`: a JSON array).
-- name: callback_tasks
SELECT {task_columns}, trace_context FROM tasks
 WHERE id = ANY(ARRAY(SELECT jsonb_array_elements_text(:ids::jsonb)))

-- A batch of callback attempts in one statement (one transaction, one WAL flush): each recorded,
-- with what follows it, only while its lease is still `owner`'s; answers the ids recorded.
-- name: record_attempts
WITH input AS (
    SELECT * FROM jsonb_to_recordset(:attempts::jsonb)
        AS i(id text, attempt int, state text, next_attempt_at bigint, started_at bigint,
             status_code int, latency_ms int, error text)
), updated AS (
    UPDATE deliveries d
       SET attempts = i.attempt, state = i.state, next_attempt_at = i.next_attempt_at,
           completed_at = CASE WHEN i.state = 'pending' THEN NULL ELSE CAST(:now AS BIGINT) END,
           lease_owner = NULL, lease_expires = NULL
      FROM input i
     WHERE d.id = i.id AND d.lease_owner = :owner AND d.attempts = i.attempt - 1
    RETURNING d.id
), inserted AS (
    INSERT INTO delivery_attempts (delivery_id, attempt, started_at, status_code, latency_ms, error)
    SELECT i.id, i.attempt, i.started_at, i.status_code, i.latency_ms, i.error
      FROM input i JOIN updated u ON u.id = i.id
)
SELECT id FROM updated

-- name: mark_files_removed
UPDATE tasks SET files_removed = 1 WHERE id = ANY(:ids::text[])

-- A submit with neither an Idempotency-Key nor a per-key cap, in one statement and so in one
-- round trip: the charge (taken only if a limited key's balance covers it; the UPDATE re-checks
-- its WHERE after waiting for a concurrent charge's row lock, so no balance is overdrawn), its
-- ledger row, and the task, all or none. `ok` false: not enough credits, or no such key.
-- name: insert_task_charged
WITH key AS (
    SELECT credits FROM api_keys WHERE id = :key_id::text
), taken AS (
    UPDATE api_keys SET credits = credits - :charge::bigint
     WHERE id = :key_id::text AND :charge::bigint > 0 AND credits >= :charge::bigint
    RETURNING credits
), admitted AS (
    SELECT :charge::bigint = 0
           OR (EXISTS (SELECT 1 FROM key)
               AND ((SELECT credits FROM key) IS NULL OR EXISTS (SELECT 1 FROM taken))) AS ok
), charged AS (
    INSERT INTO ledger (key_id, task_id, kind, amount, balance, created_at)
    SELECT :key_id::text, :id::text, 'charge', -:charge::bigint, (SELECT credits FROM taken),
           :create_time::bigint
      FROM admitted WHERE ok AND :charge::bigint > 0
), inserted AS (
    INSERT INTO tasks ({task_columns}, trace_context)
    SELECT :id::text, :key_id::text, :model::text, :mode::text, :state::text, :input::text,
           :request::text, :request_type::text, :callback_url::text, :priority::int, :create_time::bigint,
           :start_time::bigint, :complete_time::bigint, :cost_time::bigint, :progress::int, :files::text,
           :fail_code::text, :fail_msg::text, :attempts::int, :lease_owner::text, :lease_expires::bigint,
           :trace_id::text, :dialect::text, :upstream::text, :charge::bigint, :output::text,
           :trace_context::text
      FROM admitted WHERE ok
)
SELECT ok, EXISTS (SELECT 1 FROM key), (SELECT credits FROM key) FROM admitted

-- Many successes in one statement (see `Batcher`): each row fenced as in finish_success, and
-- the outbox row of each that has a callback. Rows whose claim is no longer current are simply
-- not returned.
-- name: finish_success_many
WITH given AS (
    SELECT * FROM unnest(:ids::text[], :owners::text[], :attempts::int[], :files::text[], :outputs::text[],
                         :delivery_ids::text[])
        AS g(id, owner, attempt, files, output, delivery_id)
), done AS (
    UPDATE tasks AS t
       SET state = 'success', complete_time = :now, cost_time = :now - t.start_time, progress = 100,
           files = g.files, output = g.output, fail_code = NULL, fail_msg = NULL, lease_owner = NULL,
           lease_expires = NULL
      FROM given AS g
     WHERE t.id = g.id AND t.{from processing to success} AND t.lease_owner = g.owner
       AND t.attempts = g.attempt
    RETURNING {t.task_columns}, g.delivery_id
), owed AS (
    INSERT INTO deliveries (id, task_id, key_id, url, dialect, state, next_attempt_at, created_at)
    SELECT delivery_id, id, key_id, callback_url, dialect, 'pending', :now + :first_delay, :now
      FROM done WHERE callback_url IS NOT NULL AND callback_url <> ''
)
SELECT {task_columns} FROM done

-- A batch of a running claim's log lines (`lines`: JSON [[at, line], ...]), kept only while
-- the claim is current (fenced like progress).
-- name: append_logs
INSERT INTO task_logs (task_id, attempt, at, line)
SELECT :id, :attempt, (e->>0)::bigint, e->>1 FROM jsonb_array_elements(:lines::jsonb) AS e
 WHERE EXISTS (SELECT 1 FROM tasks WHERE id = :id AND state = 'processing' AND lease_owner = :owner
                                     AND attempts = :attempt)
