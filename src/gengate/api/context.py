"""What the routes are given: the services and the few settings they read."""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from gengate.domain.catalogue import Catalogue
from gengate.domain.task import Task
from gengate.files.base import FileStore
from gengate.metrics import Metrics
from gengate.services.keys import KeyService
from gengate.services.tasks import TaskService

RESULT_JSON_CACHE_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class ApiContext:
    keys: KeyService
    tasks: TaskService
    catalogue: Catalogue
    files: FileStore
    result_ttl_ms: int
    max_body_bytes: int
    sync_wait_s: float
    metrics: Metrics
    #: resultJson of recently read finished tasks: a finished task is immutable, and
    #: clients poll the same ones over and over.
    _result_json: dict[tuple[str, int], str] = field(default_factory=dict)

    def result_urls(self, task: Task) -> list[str]:
        """Signed URLs of a finished task; they all expire `result_ttl` after completion."""
        if not task.files or task.complete_time is None:
            return []
        expires = task.complete_time + self.result_ttl_ms
        return [self.files.url(task.id, file, expires) for file in task.files]

    def result_json(self, task: Task) -> str:
        """The `resultJson` string of a successful task: `{"resultUrls": [...]}`."""
        cache_key = (task.id, task.complete_time or 0)
        cached = self._result_json.get(cache_key)
        if cached is None:
            if len(self._result_json) >= RESULT_JSON_CACHE_SIZE:
                self._result_json.clear()
            cached = orjson.dumps({"resultUrls": self.result_urls(task)}).decode()
            self._result_json[cache_key] = cached
        return cached
