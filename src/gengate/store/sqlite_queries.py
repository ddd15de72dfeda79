"""The SQLite backend's SQL, named and kept together."""

from __future__ import annotations

TASK_COLUMNS = (
    "id, key_id, model, mode, state, input, request, request_type, callback_url, priority, "
    "create_time, start_time, complete_time, cost_time, progress, files, fail_code, fail_msg, "
    "attempts, lease_owner, lease_expires, trace_id, dialect, upstream, charge"
)

KEY_COLUMNS = (
    "id, name, key_hash, prefix, disabled, expires_at, models, created_at, webhook_secret_version, "
    "credits, rate_limit, max_concurrent"
)

PRAGMAS = (
    "PRAGMA journal_mode = WAL",
    # FULL: a commit is on disk before it returns, so an accepted task survives power loss.
    "PRAGMA synchronous = FULL",
    "PRAGMA busy_timeout = 5000",
    # Point reads of a large table touch a few pages each: keep them in memory (64 MiB of cache,
    # and the file mapped), so a status read costs about the same at a million tasks as at a
    # thousand.
    "PRAGMA cache_size = -65536",
    "PRAGMA mmap_size = 268435456",
)

INSERT_TASK = f"INSERT INTO tasks ({TASK_COLUMNS}) VALUES ({', '.join('?' * len(TASK_COLUMNS.split(',')))})"

GET_TASK = f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?"

GET_IDEMPOTENCY = """
SELECT request_hash, task_id FROM idempotency_keys
 WHERE key_id = :key_id AND idem_key = :idem_key AND created_at >= :since
"""

PUT_IDEMPOTENCY = """
INSERT OR REPLACE INTO idempotency_keys (key_id, idem_key, request_hash, task_id, created_at)
VALUES (:key_id, :idem_key, :request_hash, :task_id, :now)
"""

# {filters} adds `AND ...` clauses; the cursor is the (create_time, id) of the last row seen.
LIST_TASKS = f"""
SELECT {TASK_COLUMNS} FROM tasks
 WHERE key_id = :key_id {{filters}}
 ORDER BY create_time DESC, id DESC
 LIMIT :limit
"""

# {heads} is one CLAIM_HEAD per model, joined by UNION ALL: each walks the partial queue
# index of its model for at most that model's free capacity, so a long queue costs nothing.
CLAIM = f"""
UPDATE tasks
   SET state = 'processing', lease_owner = :owner, lease_expires = :expires,
       attempts = attempts + 1, start_time = :now, progress = NULL
 WHERE id IN (SELECT id FROM ({{heads}}) ORDER BY priority DESC, create_time LIMIT :limit)
RETURNING {TASK_COLUMNS}
"""

CLAIM_HEAD = """
SELECT * FROM (SELECT id, priority, create_time FROM tasks
                WHERE state = 'pending' AND model = :m{i} AND run_after <= :now
                ORDER BY priority DESC, create_time LIMIT :c{i})
"""

HEARTBEAT = """
UPDATE tasks SET lease_expires = :expires
 WHERE id = :id AND state = 'processing' AND lease_owner = :owner AND attempts = :attempt
RETURNING cancel_requested
"""

CANCEL_PENDING = f"""
UPDATE tasks
   SET state = 'failed', complete_time = :now, fail_code = 'CANCELED', fail_msg = :fail_msg
 WHERE id = :id AND state = 'pending'
RETURNING {TASK_COLUMNS}
"""

REQUEST_CANCEL = f"""
UPDATE tasks SET cancel_requested = 1 WHERE id = :id AND state = 'processing'
RETURNING {TASK_COLUMNS}
"""

SET_PROGRESS = """
UPDATE tasks SET progress = :progress
 WHERE id = :id AND state = 'processing' AND lease_owner = :owner AND attempts = :attempt
"""

FINISH = f"""
UPDATE tasks
   SET state = :state, complete_time = :now, cost_time = :now - start_time,
       progress = CASE WHEN :state = 'success' THEN 100 ELSE progress END,
       files = :files, fail_code = :fail_code, fail_msg = :fail_msg,
       lease_owner = NULL, lease_expires = NULL
 WHERE id = :id AND state = 'processing' AND lease_owner = :owner AND attempts = :attempt
RETURNING {TASK_COLUMNS}
"""

# A transient failure: back to the queue, not claimable before `run_after`.
RETRY_LATER = """
UPDATE tasks SET state = 'pending', lease_owner = NULL, lease_expires = NULL, progress = NULL,
       run_after = :run_after
 WHERE id = :id AND state = 'processing' AND lease_owner = :owner AND attempts = :attempt
"""

SET_UPSTREAM = """
UPDATE tasks SET upstream = :upstream
 WHERE id = :id AND state = 'processing' AND lease_owner = :owner AND attempts = :attempt
"""

# Tasks of each model running now, over every worker: the cluster-wide concurrency caps.
RUNNING_BY_MODEL = "SELECT model, count(*) FROM tasks WHERE state = 'processing' GROUP BY model"

RELEASE = """
UPDATE tasks SET state = 'pending', lease_owner = NULL, lease_expires = NULL, progress = NULL
 WHERE id = :id AND state = 'processing' AND lease_owner = :owner AND attempts = :attempt
"""

EXPIRED_LEASES = """
SELECT id, model, attempts, cancel_requested FROM tasks
 WHERE state = 'processing' AND lease_expires < :now
"""

REQUEUE = """
UPDATE tasks SET state = 'pending', lease_owner = NULL, lease_expires = NULL, progress = NULL
 WHERE id = :id AND state = 'processing' AND lease_expires < :now
"""

FAIL_LOST = f"""
UPDATE tasks
   SET state = 'failed', complete_time = :now, fail_code = :fail_code, fail_msg = :fail_msg,
       lease_owner = NULL, lease_expires = NULL
 WHERE id = :id AND state = 'processing' AND lease_expires < :now
RETURNING {TASK_COLUMNS}
"""

EXPIRED_RESULTS = """
SELECT id, files FROM tasks
 WHERE state = 'success' AND files_removed = 0 AND complete_time < :before
 ORDER BY complete_time LIMIT :limit
"""

MARK_FILES_REMOVED = "UPDATE tasks SET files_removed = 1 WHERE id = ?"

QUEUE_DEPTH = "SELECT count(*) FROM tasks WHERE state = 'pending' AND model = ?"

QUEUE_POSITION = """
SELECT count(*) FROM tasks
 WHERE state = 'pending' AND model = :model
   AND (priority > :priority OR (priority = :priority AND create_time < :create_time))
"""

INSERT_KEY = f"INSERT INTO api_keys ({KEY_COLUMNS}) VALUES ({', '.join('?' * len(KEY_COLUMNS.split(',')))})"

GET_KEY_BY_HASH = f"SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = ?"

GET_KEY = f"SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?"

LIST_KEYS = f"SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, id"

UPDATE_KEY = """
UPDATE api_keys SET name = ?, disabled = ?, expires_at = ?, models = ?, webhook_secret_version = ?,
       credits = ?, rate_limit = ?, max_concurrent = ?
 WHERE id = ?
"""

# -- accounts: admission caps, credits and the ledger ---------------------------------------
# Each runs inside the insert's (or the task end's) write transaction, so the checks and the
# writes they guard are one atomic step; under PostgreSQL the conditional UPDATEs hold the
# same guarantees by themselves (a row lock, then a re-checked WHERE).

# Pending tasks of a model, as the triggers of migration 0006 keep them (no row: none).
PENDING_OF_MODEL = "SELECT pending FROM queue_depths WHERE model = :model"

# A key's unfinished tasks, counted no further than its cap (index tasks_active_by_key).
ACTIVE_OF_KEY_UPTO = """
SELECT count(*) FROM (SELECT 1 FROM tasks
                       WHERE key_id = :key_id AND state IN ('pending', 'processing') LIMIT :cap)
"""

# Take a task's price from a limited key, only if its balance covers it: no row back means
# "not enough", or an unlimited key (NULL credits), which KEY_CREDITS tells apart.
CHARGE_KEY = """
UPDATE api_keys SET credits = credits - :amount
 WHERE id = :key_id AND credits >= :amount
RETURNING credits
"""

KEY_CREDITS = "SELECT credits FROM api_keys WHERE id = ?"

# An admin's top-up (negative takes away): a limited key only, kept within 0..MAX_CREDITS.
ADD_CREDITS = """
UPDATE api_keys SET credits = credits + :amount
 WHERE id = :key_id AND credits IS NOT NULL AND credits + :amount BETWEEN 0 AND :max
RETURNING credits
"""

INSERT_LEDGER = """
INSERT INTO ledger (key_id, task_id, kind, amount, balance, created_at)
VALUES (:key_id, :task_id, :kind, :amount, :balance, :now)
"""

# The refund of a failed or canceled task: its ledger row goes first, and the unique index
# on refunds (ledger_one_refund) makes a second one a no-op that returns no row, so the
# balance below is credited exactly once whichever path (finish, cancel, reaper) ends the task.
INSERT_REFUND = """
INSERT INTO ledger (key_id, task_id, kind, amount, balance, created_at)
VALUES (:key_id, :task_id, 'refund', :amount, NULL, :now)
ON CONFLICT (task_id) WHERE kind = 'refund' DO NOTHING
RETURNING id
"""

# Give credits back to a limited key; an unlimited key (NULL) stays as it is.
CREDIT_KEY = """
UPDATE api_keys SET credits = credits + :amount
 WHERE id = :key_id AND credits IS NOT NULL
RETURNING credits
"""

SET_LEDGER_BALANCE = "UPDATE ledger SET balance = :balance WHERE id = :id"

LEDGER_COLUMNS = "id, key_id, kind, amount, balance, task_id, created_at"

# Newest first; the cursor is the id of the last entry seen.
LIST_LEDGER = f"""
SELECT {LEDGER_COLUMNS} FROM ledger
 WHERE key_id = :key_id AND id < :before
 ORDER BY id DESC
 LIMIT :limit
"""

# -- callbacks -----------------------------------------------------------------------------
DELIVERY_COLUMNS = (
    "id, task_id, key_id, url, dialect, state, attempts, round_start, next_attempt_at, "
    "created_at, completed_at"
)

INSERT_DELIVERY = """
INSERT INTO deliveries (id, task_id, key_id, url, dialect, state, next_attempt_at, created_at)
VALUES (:id, :task_id, :key_id, :url, :dialect, 'pending', :now + :first_delay, :now)
"""

CLAIM_DELIVERIES = f"""
UPDATE deliveries SET lease_owner = :owner, lease_expires = :expires
 WHERE id IN (SELECT id FROM deliveries
               WHERE state = 'pending' AND next_attempt_at <= :now
                 AND (lease_expires IS NULL OR lease_expires < :now)
               ORDER BY next_attempt_at LIMIT :limit)
RETURNING {DELIVERY_COLUMNS}
"""

# A delivery leased to a sender is due again only when its lease runs out.
NEXT_DELIVERY_DUE = """
SELECT min(CASE WHEN lease_expires >= :now THEN lease_expires ELSE next_attempt_at END)
  FROM deliveries WHERE state = 'pending'
"""

INSERT_ATTEMPT = """
INSERT INTO delivery_attempts (delivery_id, attempt, started_at, status_code, latency_ms, error)
VALUES (?, ?, ?, ?, ?, ?)
"""

RECORD_ATTEMPT = """
UPDATE deliveries
   SET attempts = :attempt, state = :state, next_attempt_at = :next_attempt_at,
       completed_at = CASE WHEN :state = 'pending' THEN NULL ELSE :now END,
       lease_owner = NULL, lease_expires = NULL
 WHERE id = :id AND lease_owner = :owner AND attempts = :attempt - 1
"""

DELIVERIES_OF_TASK = f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE task_id = ? ORDER BY created_at, id"

GET_DELIVERY = f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = ?"

ATTEMPTS_OF_DELIVERY = """
SELECT attempt, started_at, status_code, latency_ms, error FROM delivery_attempts
 WHERE delivery_id = ? ORDER BY attempt
"""

# Sends the message again, with the same id, as a fresh run of the retry schedule.
REDELIVER = """
UPDATE deliveries SET state = 'pending', next_attempt_at = :now, completed_at = NULL, round_start = attempts
 WHERE id = :id AND state != 'pending'
"""
