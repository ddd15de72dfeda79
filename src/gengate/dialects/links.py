"""The signed result URLs a body names: what a renderer needs beyond the task itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import orjson

from gengate.domain.task import Task
from gengate.files.base import FileStore

RESULT_JSON_CACHE_SIZE = 10_000


class Links(Protocol):
    """Where a finished task's files can be fetched; renderers take this, never a file store."""

    def result_urls(self, task: Task) -> list[str]: ...

    def result_json(self, task: Task) -> str: ...


@dataclass(frozen=True, slots=True)
class SignedLinks:
    """URLs signed by `files`, all expiring `ttl_ms` after the task completed.

    `resultJson` strings of recently read finished tasks are cached: a finished task is
    immutable, and clients poll the same ones over and over. `api_base` (the server's own
    base URL) and `model_owner` are for bodies that name API URLs and `owner/name` models
    (Replicate's predictions).
    """

    files: FileStore
    ttl_ms: int
    api_base: str = ""
    model_owner: str = "gengate"
    _result_json: dict[tuple[str, int], str] = field(default_factory=dict)

    def result_urls(self, task: Task) -> list[str]:
        if not task.files or task.complete_time is None:
            return []
        expires = task.complete_time + self.ttl_ms
        return [self.files.url(task.id, file, expires) for file in task.files]

    def result_json(self, task: Task) -> str:
        """The `resultJson` string of a successful task: `{"resultUrls": [...]}`, and `"output"`
        with the task's plain output values when its model made any (a model server's text)."""
        cache_key = (task.id, task.complete_time or 0)
        cached = self._result_json.get(cache_key)
        if cached is None:
            if len(self._result_json) >= RESULT_JSON_CACHE_SIZE:
                self._result_json.clear()
            result: dict[str, object] = {"resultUrls": self.result_urls(task)}
            if task.output_json is not None:
                result["output"] = orjson.Fragment(task.output_json)
            cached = orjson.dumps(result).decode()
            self._result_json[cache_key] = cached
        return cached
