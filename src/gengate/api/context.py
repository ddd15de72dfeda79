"""What the routes are given: the services and the few settings they read."""

from __future__ import annotations

from dataclasses import dataclass

from gengate.domain.catalogue import Catalogue
from gengate.domain.task import Task
from gengate.files.base import FileStore
from gengate.services.keys import KeyService
from gengate.services.tasks import TaskService


@dataclass(frozen=True, slots=True)
class ApiContext:
    keys: KeyService
    tasks: TaskService
    catalogue: Catalogue
    files: FileStore
    result_ttl_ms: int
    max_body_bytes: int
    sync_wait_s: float

    def result_urls(self, task: Task) -> list[str]:
        """Signed URLs of a finished task; they all expire `result_ttl` after completion."""
        if not task.files or task.complete_time is None:
            return []
        expires = task.complete_time + self.result_ttl_ms
        return [self.files.url(task.id, file, expires) for file in task.files]
