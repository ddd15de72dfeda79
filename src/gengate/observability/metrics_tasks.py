"""Task metrics: how many tasks came in and ended, how long they waited and ran.

Counted on the hot paths (every submit, every end), so each label set's child is bound once
and kept: a count is then one dict lookup and one locked add, with no label dict built per
call. Labels are bounded by the catalogue (model, provider), the wire formats (dialect), the
task states and the fail codes; never a key id or task id.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from gengate.domain.states import FailCode
from gengate.domain.task import Task

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
        self.submitted = Counter(
            "gengate_tasks_submitted",
            "Tasks accepted by model and the dialect (wire format) they came in.",
            ["model", "dialect"],
            registry=registry,
        )
        self.ended = Counter(
            "gengate_tasks_ended",
            "Tasks ended by model, dialect, state (success, failed) and failCode (empty on success).",
            ["model", "dialect", "state", "fail_code"],
            registry=registry,
        )
        self.requeued = Counter(
            "gengate_tasks_requeued",
            "Tasks whose worker's lease ran out, queued again for another worker.",
            ["model"],
            registry=registry,
        )
        self.queue_wait, self.run_time = (
            Histogram(name, doc, ["model", "provider"], registry=registry, buckets=TASK_BUCKETS)
            for name, doc in (
                (
                    "gengate_task_queue_wait_seconds",
                    "Time from a task's submit to its first claim by a worker.",
                ),
                ("gengate_task_run_seconds", "Time one attempt of a task ran on its provider, files saved."),
            )
        )
        self.file_save = Histogram(
            "gengate_file_save_seconds",
            "Time to take one task's result files into the file store.",
            registry=registry,
            buckets=SAVE_BUCKETS,
        )
        # Keyed by the task's fields as they are (a dialect or state read from a row may be a
        # plain str: it hashes and compares as the enum member does).
        self._submitted: dict[tuple[str, str], Counter] = {}
        self._ended: dict[tuple[str, str, str, str], Counter] = {}
        self._timed: dict[tuple[str, str], tuple[Histogram, Histogram]] = {}

    def task_submitted(self, task: Task) -> None:
        labels = (task.model, task.dialect)
        child = self._submitted.get(labels)
        if child is None:
            child = self._submitted[labels] = self.submitted.labels(task.model, str(task.dialect))
        child.inc()

    def task_ended(self, task: Task) -> None:
        """Count a task that just reached a terminal state (once per task, by whoever ended it)."""
        labels = (task.model, task.dialect, task.state, task.fail_code or "")
        child = self._ended.get(labels)
        if child is None:
            child = self.ended.labels(task.model, str(task.dialect), str(task.state), fail_code_label(task))
            self._ended[labels] = child
        child.inc()

    def task_requeued(self, model: str) -> None:
        self.requeued.labels(model).inc()

    def _histograms(self, model: str, provider: str) -> tuple[Histogram, Histogram]:
        found = self._timed.get((model, provider))
        if found is None:
            found = (self.queue_wait.labels(model, provider), self.run_time.labels(model, provider))
            self._timed[(model, provider)] = found
        return found

    def task_claimed(self, task: Task, provider: str) -> None:
        """A worker took the task (`start_time` is the claim's): its wait in the queue, counted
        on its first attempt only (a retry waits out its backoff on purpose)."""
        if task.attempts <= 1 and task.start_time is not None:
            wait_ms = max(0, task.start_time - task.create_time)
            self._histograms(task.model, provider)[0].observe(wait_ms / 1000)

    def task_ran(self, model: str, provider: str, seconds: float) -> None:
        self._histograms(model, provider)[1].observe(seconds)
