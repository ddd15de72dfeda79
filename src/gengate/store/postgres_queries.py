"""The PostgreSQL backend's SQL, named and kept together.

Columns are those of the SQLite backend in the same order, so one row mapping serves both.
Wake-ups are not sent from here: triggers announce changes at commit (see the migration).
"""

from __future__ import annotations

from gengate.store.sqlite_queries import DELIVERY_COLUMNS, KEY_COLUMNS, TASK_COLUMNS

__all__ = ["DELIVERY_COLUMNS", "KEY_COLUMNS", "TASK_COLUMNS"]

_TASK_ARITY = len(TASK_COLUMNS.split(","))

INSERT_TASK = (
    f"INSERT INTO tasks ({TASK_COLUMNS}) VALUES ({', '.join(f'${i}' for i in range(1, _TASK_ARITY + 1))})"
)

GET_TASK = f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1"

# Owns the key when it is new or its earlier use is past the TTL; otherwise returns nothing, and
# the earlier use is read with GET_IDEMPOTENCY. A concurrent insert of the same key waits on the
# primary key until the first commits, so two requests never both own one key.
CLAIM_IDEMPOTENCY = """
INSERT INTO idempotency_keys (key_id, idem_key, request_hash, task_id, created_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (key_id, idem_key) DO UPDATE
   SET request_hash = EXCLUDED.request_hash, task_id = EXCLUDED.task_id, created_at = EXCLUDED.created_at
 WHERE idempotency_keys.created_at < $6
RETURNING task_id
"""

GET_IDEMPOTENCY = "SELECT request_hash, task_id FROM idempotency_keys WHERE key_id = $1 AND idem_key = $2"

# {filters} adds `AND ...` clauses with numbered parameters from $3 on.
LIST_TASKS = f"""
SELECT {TASK_COLUMNS} FROM tasks
 WHERE key_id = $1 {{filters}}
 ORDER BY create_time DESC, id DESC
 LIMIT $2
"""

# One lateral walk of the partial queue index per model, at most that model's free capacity,
# skipping rows another worker is claiming this instant; then the best `limit` of those.
CLAIM = f"""
WITH heads AS (
    SELECT h.id, h.priority, h.create_time
      FROM unnest($1::text[], $2::int[]) AS w(model, free)
      CROSS JOIN LATERAL (
          SELECT id, priority, create_time FROM tasks
           WHERE state = 'pending' AND model = w.model AND run_after <= $5
           ORDER BY priority DESC, create_time
           LIMIT w.free
           FOR UPDATE SKIP LOCKED
      ) AS h
), picked AS (
    SELECT id FROM heads ORDER BY priority DESC, create_time LIMIT $3
)
UPDATE tasks AS t
   SET state = 'processing', lease_owner = $4, lease_expires = $6,
       attempts = t.attempts + 1, start_time = $5, progress = NULL
  FROM picked
 WHERE t.id = picked.id
RETURNING {", ".join(f"t.{column.strip()}" for column in TASK_COLUMNS.split(","))}
"""

# Serialises the claims of capped models over the cluster until the claiming transaction ends.
LOCK_MODELS = (
    "SELECT pg_advisory_xact_lock(hashtextextended('gengate-model:' || m, 0)) FROM unnest($1::text[]) AS m"
)

RUNNING_OF_MODELS = """
SELECT model, count(*) FROM tasks WHERE state = 'processing' AND model = ANY($1::text[]) GROUP BY model
"""

HEARTBEAT = """
UPDATE tasks SET lease_expires = $4
 WHERE id = $1 AND state = 'processing' AND lease_owner = $2 AND attempts = $3
RETURNING cancel_requested
"""

CANCEL_PENDING = f"""
UPDATE tasks
   SET state = 'failed', complete_time = $2, fail_code = 'CANCELED', fail_msg = $3
 WHERE id = $1 AND state = 'pending'
RETURNING {TASK_COLUMNS}
"""

REQUEST_CANCEL = f"""
UPDATE tasks SET cancel_requested = 1 WHERE id = $1 AND state = 'processing'
RETURNING {TASK_COLUMNS}
"""

SET_PROGRESS = """
UPDATE tasks SET progress = $4
 WHERE id = $1 AND state = 'processing' AND lease_owner = $2 AND attempts = $3
"""

SET_UPSTREAM = """
UPDATE tasks SET upstream = $4
 WHERE id = $1 AND state = 'processing' AND lease_owner = $2 AND attempts = $3
"""

FINISH = f"""
UPDATE tasks
   SET state = $4, complete_time = $5, cost_time = $5 - start_time,
       progress = CASE WHEN $4 = 'success' THEN 100 ELSE progress END,
       files = $6, fail_code = $7, fail_msg = $8,
       lease_owner = NULL, lease_expires = NULL
 WHERE id = $1 AND state = 'processing' AND lease_owner = $2 AND attempts = $3
RETURNING {TASK_COLUMNS}
"""

RETRY_LATER = """
UPDATE tasks SET state = 'pending', lease_owner = NULL, lease_expires = NULL, progress = NULL, run_after = $4
 WHERE id = $1 AND state = 'processing' AND lease_owner = $2 AND attempts = $3
"""

RELEASE = """
UPDATE tasks SET state = 'pending', lease_owner = NULL, lease_expires = NULL, progress = NULL
 WHERE id = $1 AND state = 'processing' AND lease_owner = $2 AND attempts = $3
"""

# Several reapers may run at once (one per worker process): SKIP LOCKED gives each row to one.
EXPIRED_LEASES = """
SELECT id, model, attempts, cancel_requested FROM tasks
 WHERE state = 'processing' AND lease_expires < $1
 ORDER BY lease_expires LIMIT 500
 FOR UPDATE SKIP LOCKED
"""

REQUEUE = """
UPDATE tasks SET state = 'pending', lease_owner = NULL, lease_expires = NULL, progress = NULL
 WHERE id = $1 AND state = 'processing' AND lease_expires < $2
"""

FAIL_LOST = f"""
UPDATE tasks
   SET state = 'failed', complete_time = $2, fail_code = $3, fail_msg = $4,
       lease_owner = NULL, lease_expires = NULL
 WHERE id = $1 AND state = 'processing' AND lease_expires < $2
RETURNING {TASK_COLUMNS}
"""

EXPIRED_RESULTS = """
SELECT id, files FROM tasks
 WHERE state = 'success' AND files_removed = 0 AND complete_time < $1
 ORDER BY complete_time LIMIT $2
"""

MARK_FILES_REMOVED = "UPDATE tasks SET files_removed = 1 WHERE id = ANY($1::text[])"

QUEUE_DEPTH = "SELECT count(*) FROM tasks WHERE state = 'pending' AND model = $1"

QUEUE_POSITION = """
SELECT count(*) FROM tasks
 WHERE state = 'pending' AND model = $1
   AND (priority > $2 OR (priority = $2 AND create_time < $3))
"""

INSERT_KEY = (
    f"INSERT INTO api_keys ({KEY_COLUMNS}) "
    f"VALUES ({', '.join(f'${i}' for i in range(1, len(KEY_COLUMNS.split(',')) + 1))})"
)

GET_KEY_BY_HASH = f"SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = $1"

GET_KEY = f"SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1"

GET_KEY_FOR_UPDATE = f"SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1 FOR UPDATE"

LIST_KEYS = f"SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, id"

UPDATE_KEY = """
UPDATE api_keys SET name = $1, disabled = $2, expires_at = $3, models = $4, webhook_secret_version = $5,
       credits = $6, rate_limit = $7, max_concurrent = $8
 WHERE id = $9
"""

# -- callbacks -----------------------------------------------------------------------------
INSERT_DELIVERY = """
INSERT INTO deliveries (id, task_id, key_id, url, dialect, state, next_attempt_at, created_at)
VALUES ($1, $2, $3, $4, $5, 'pending', $6 + $7, $6)
"""

CLAIM_DELIVERIES = f"""
UPDATE deliveries SET lease_owner = $1, lease_expires = $2
 WHERE id IN (SELECT id FROM deliveries
               WHERE state = 'pending' AND next_attempt_at <= $3
                 AND (lease_expires IS NULL OR lease_expires < $3)
               ORDER BY next_attempt_at LIMIT $4
               FOR UPDATE SKIP LOCKED)
RETURNING {DELIVERY_COLUMNS}
"""

NEXT_DELIVERY_DUE = """
SELECT min(CASE WHEN lease_expires >= $1 THEN lease_expires ELSE next_attempt_at END)
  FROM deliveries WHERE state = 'pending'
"""

INSERT_ATTEMPT = """
INSERT INTO delivery_attempts (delivery_id, attempt, started_at, status_code, latency_ms, error)
VALUES ($1, $2, $3, $4, $5, $6)
"""

RECORD_ATTEMPT = """
UPDATE deliveries
   SET attempts = $3, state = $4, next_attempt_at = $5,
       completed_at = CASE WHEN $4 = 'pending' THEN NULL ELSE $6 END,
       lease_owner = NULL, lease_expires = NULL
 WHERE id = $1 AND lease_owner = $2 AND attempts = $3 - 1
"""

DELIVERIES_OF_TASK = f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE task_id = $1 ORDER BY created_at, id"

ATTEMPTS_OF_DELIVERY = """
SELECT attempt, started_at, status_code, latency_ms, error FROM delivery_attempts
 WHERE delivery_id = $1 ORDER BY attempt
"""

REDELIVER = """
UPDATE deliveries SET state = 'pending', next_attempt_at = $2, completed_at = NULL, round_start = attempts
 WHERE id = $1 AND state <> 'pending'
"""

# -- accounts: admission caps, credits and the ledger (as the SQLite statements) -------------
# A concurrent submit of the same key waits on the key's row lock taken by CHARGE_KEY, and the
# conditional UPDATE re-checks its WHERE after the wait: balances are never overdrawn.
QUEUE_DEPTH_UPTO = """
SELECT count(*) FROM (SELECT 1 FROM tasks WHERE state = 'pending' AND model = $1 LIMIT $2) AS t
"""

ACTIVE_OF_KEY_UPTO = """
SELECT count(*) FROM (SELECT 1 FROM tasks
                       WHERE key_id = $1 AND state IN ('pending', 'processing') LIMIT $2) AS t
"""

# Serialises the admission checks of one key (max_concurrent) and one model (max_queue):
# without it, concurrent submits under READ COMMITTED would each count the same old total.
LOCK_ADMISSION = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"

CHARGE_KEY = "UPDATE api_keys SET credits = credits - $2 WHERE id = $1 AND credits >= $2 RETURNING credits"

KEY_CREDITS = "SELECT credits FROM api_keys WHERE id = $1"

ADD_CREDITS = """
UPDATE api_keys SET credits = credits + $2
 WHERE id = $1 AND credits IS NOT NULL AND credits + $2 BETWEEN 0 AND $3
RETURNING credits
"""

INSERT_LEDGER = """
INSERT INTO ledger (key_id, task_id, kind, amount, balance, created_at) VALUES ($1, $2, $3, $4, $5, $6)
"""

INSERT_REFUND = """
INSERT INTO ledger (key_id, task_id, kind, amount, balance, created_at)
VALUES ($1, $2, 'refund', $3, NULL, $4)
ON CONFLICT (task_id) WHERE kind = 'refund' DO NOTHING
RETURNING id
"""

CREDIT_KEY = (
    "UPDATE api_keys SET credits = credits + $2 WHERE id = $1 AND credits IS NOT NULL RETURNING credits"
)

SET_LEDGER_BALANCE = "UPDATE ledger SET balance = $2 WHERE id = $1"

LEDGER_COLUMNS = "id, key_id, kind, amount, balance, task_id, created_at"

LIST_LEDGER = f"""
SELECT {LEDGER_COLUMNS} FROM ledger
 WHERE key_id = $1 AND id < $2
 ORDER BY id DESC
 LIMIT $3
"""

# -- the submit's fast path -----------------------------------------------------------------
_TASK_TYPES = {
    "id": "text", "key_id": "text", "model": "text", "mode": "text", "state": "text", "input": "text",
    "request": "text", "request_type": "text", "callback_url": "text", "priority": "int",
    "create_time": "bigint", "start_time": "bigint", "complete_time": "bigint", "cost_time": "bigint",
    "progress": "int", "files": "text", "fail_code": "text", "fail_msg": "text", "attempts": "int",
    "lease_owner": "text", "lease_expires": "bigint", "trace_id": "text", "dialect": "text",
    "upstream": "text", "charge": "bigint",
}  # fmt: skip
_TASK_NAMES = [column.strip() for column in TASK_COLUMNS.split(",")]
assert set(_TASK_NAMES) == set(_TASK_TYPES), "a task column without a type for INSERT_TASK_CHARGED"
_ID, _KEY, _NOW, _CHARGE = (
    f"${_TASK_NAMES.index(name) + 1}" for name in ("id", "key_id", "create_time", "charge")
)

# A submit with neither an Idempotency-Key nor a per-key cap, in one statement and so in one
# round trip: the charge (taken only if a limited key's balance covers it; the UPDATE re-checks
# its WHERE after waiting for a concurrent charge's row lock, so no balance is overdrawn), its
# ledger row, and the task, all or none. `ok` false: not enough credits, or no such key.
INSERT_TASK_CHARGED = f"""
WITH key AS (
    SELECT credits FROM api_keys WHERE id = {_KEY}
), taken AS (
    UPDATE api_keys SET credits = credits - {_CHARGE}
     WHERE id = {_KEY} AND {_CHARGE} > 0 AND credits >= {_CHARGE}
    RETURNING credits
), admitted AS (
    SELECT {_CHARGE} = 0
           OR (EXISTS (SELECT 1 FROM key)
               AND ((SELECT credits FROM key) IS NULL OR EXISTS (SELECT 1 FROM taken))) AS ok
), charged AS (
    INSERT INTO ledger (key_id, task_id, kind, amount, balance, created_at)
    SELECT {_KEY}, {_ID}, 'charge', -{_CHARGE}, (SELECT credits FROM taken), {_NOW}
      FROM admitted WHERE ok AND {_CHARGE} > 0
), inserted AS (
    INSERT INTO tasks ({TASK_COLUMNS})
    SELECT {", ".join(f"${i}::{_TASK_TYPES[name]}" for i, name in enumerate(_TASK_NAMES, 1))}
      FROM admitted WHERE ok
)
SELECT ok, EXISTS (SELECT 1 FROM key), (SELECT credits FROM key) FROM admitted
"""

# Many successes in one statement (see `Batcher`): each row fenced as in FINISH, and the outbox
# row of each that has a callback. Rows whose claim is no longer current are simply not returned.
FINISH_SUCCESS_MANY = f"""
WITH given AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::text[])
        AS g(id, owner, attempt, files, delivery_id)
), done AS (
    UPDATE tasks AS t
       SET state = 'success', complete_time = $6, cost_time = $6 - t.start_time, progress = 100,
           files = g.files, fail_code = NULL, fail_msg = NULL, lease_owner = NULL, lease_expires = NULL
      FROM given AS g
     WHERE t.id = g.id AND t.state = 'processing' AND t.lease_owner = g.owner AND t.attempts = g.attempt
    RETURNING {", ".join(f"t.{column.strip()}" for column in TASK_COLUMNS.split(","))}, g.delivery_id
), owed AS (
    INSERT INTO deliveries (id, task_id, key_id, url, dialect, state, next_attempt_at, created_at)
    SELECT delivery_id, id, key_id, callback_url, dialect, 'pending', $6 + $7, $6
      FROM done WHERE callback_url IS NOT NULL AND callback_url <> ''
)
SELECT {TASK_COLUMNS} FROM done
"""
