"""Task metrics: how many tasks came in and ended, how long they waited and ran.

Counted on the hot paths (every submit, every claim, every end) in
:mod:`gengate.observability.metrics_lite`'s counters and histograms: a count is a dict lookup and
an addition. Labels are bounded by the catalogue (model, provider), the wire formats (dialect),
the task states and the fail codes; never a key id or task id.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from gengate.domain.states import FailCode
from gengate.domain.task import Task
from gengate.observability.metrics_lite import LiteCounter, LiteHistogram

#: Queue waits and run times: from a demo model's milliseconds to a video model's minutes.
TASK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
#: Result file saves: a rename on the local disk, an upload to S3.
SAVE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
#: A fail code outside the documented set (a provider's own), so the label set stays bounded.
OTHER_FAIL_CODE = "OTHER"
_FAIL_CODES = frozenset(code.value for code in FailCode)


def fail_code_label(task: Task) -> str:
    """The `fail_code` label of an ended task: empty for a success."""
    code = task.fail_code or ""
    return code if code in _FAIL_CODES or not code else OTHER_FAIL_CODE


class TaskMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.submitted = LiteCounter(
            "gengate_tasks_submitted",
            "Tasks accepted by model and the dialect (wire format) they came in.",
            ["model", "dialect"],
            registry=registry,
        )
        self.ended = LiteCounter(
            "gengate_tasks_ended",
            "Tasks ended by model, dialect, state (success, failed) and failCode (empty on success).",
            ["model", "dialect", "state", "fail_code"],
            registry=registry,
        )
        self.requeued = LiteCounter(
            "gengate_tasks_requeued",
            "Tasks whose worker's lease ran out, queued again for another worker.",
            ["model"],
            registry=registry,
        )
        self.queue_wait, self.run_time = (
            LiteHistogram(name, doc, ["model", "provider"], registry=registry, buckets=TASK_BUCKETS)
            for name, doc in (
                (
                    "gengate_task_queue_wait_seconds",
                    "Time from a task's submit to its first claim by a worker.",
                ),
                ("gengate_task_run_seconds", "Time one attempt of a task ran on its provider, files saved."),
            )
        )
        self.file_save = LiteHistogram(
            "gengate_file_save_seconds",
            "Time to take one task's result files into the file store.",
            registry=registry,
            buckets=SAVE_BUCKETS,
        )

    def task_submitted(self, task: Task) -> None:
        # A dialect or state read from a row may be a plain str: it hashes, compares and is
        # written as the enum member is.
        self.submitted.labels(task.model, task.dialect).inc()

    def task_ended(self, task: Task) -> None:
        """Count a task that just reached a terminal state (once per task, by whoever ended it)."""
        self.ended.labels(task.model, task.dialect, task.state, fail_code_label(task)).inc()

    def task_requeued(self, model: str) -> None:
        self.requeued.labels(model).inc()

    def task_claimed(self, task: Task, provider: str) -> None:
        """A worker took the task (`start_time` is the claim's): its wait in the queue, counted
        on its first attempt only (a retry waits out its backoff on purpose)."""
        if task.attempts <= 1 and task.start_time is not None:
            wait_ms = max(0, task.start_time - task.create_time)
            self.queue_wait.labels(task.model, provider).observe(wait_ms / 1000)

    def task_ran(self, model: str, provider: str, seconds: float) -> None:
        self.run_time.labels(model, provider).observe(seconds)
