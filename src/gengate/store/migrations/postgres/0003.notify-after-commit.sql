-- depends: 0002.accounts
-- Wake-ups move from triggers to the store, which announces changes after they commit, many to
-- one NOTIFY. A transaction that notifies holds PostgreSQL's notify-queue lock through its
-- commit, so with a NOTIFY in every finish, finishes committed one at a time instead of sharing
-- a WAL flush: the queue drained at a few hundred tasks a second.
DROP TRIGGER tasks_notify ON tasks;
DROP TRIGGER deliveries_notify ON deliveries;
DROP FUNCTION gengate_task_notify();
DROP FUNCTION gengate_delivery_notify();
