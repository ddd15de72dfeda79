"""The fal dialect as pure functions: status bodies fal-client parses, results, webhooks, errors."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from fal_client.client import Completed, InProgress, Queued, SyncRequestHandle

from gengate.dialects import fal
from gengate.domain.dialect import Dialect
from gengate.domain.errors import TaskNotFound
from gengate.domain.states import TaskState
from gengate.domain.task import ResultFile, Task, TaskLog

BASE = "https://gate.test"
URLS = fal.queue_urls(BASE, "gengate/demo-image", "task_1")


class IndexedLinks:
    """Every file of a task at a URL naming its index."""

    def result_urls(self, task: Task) -> list[str]:
        return [f"https://files.test/{task.id}/{i}" for i in range(len(task.files))]

    def result_json(self, task: Task) -> str:
        return orjson.dumps({"resultUrls": self.result_urls(task)}).decode()


def task(state: TaskState, **fields: Any) -> Task:
    values: dict[str, Any] = {
        "id": "task_1",
        "key_id": "key_1",
        "model": "demo-image",
        "mode": "text-to-image",
        "state": state,
        "input_json": '{"prompt":"a cat","width":320,"height":200,"seed":7}',
        "request_json": '{"prompt":"a cat"}',
        "create_time": 1000,
        "complete_time": 3000 if state.is_terminal() else None,
        "cost_time": 1500 if state is TaskState.SUCCESS else None,
        "dialect": Dialect.FAL,
        **fields,
    }
    return Task(**values)


def parse(body: dict[str, Any]) -> Any:
    """What fal-client 1.x makes of a status body, by its own parser."""
    handle = SyncRequestHandle("task_1", "r", "s", "c", client=None)  # type: ignore[arg-type]
    return handle._parse_status(orjson.loads(orjson.dumps(body)))


def test_app_ids_and_urls() -> None:
    assert fal.app_id("demo-image", "gengate") == "gengate/demo-image"
    assert fal.app_id("fal-ai/flux", "gengate") == "fal-ai/flux"
    assert fal.app_id("fal-ai/flux/dev", "gengate") == "fal-ai/flux"  # calls by id drop the sub-path
    assert URLS == {
        "response_url": "https://gate.test/fal/gengate/demo-image/requests/task_1",
        "status_url": "https://gate.test/fal/gengate/demo-image/requests/task_1/status",
        "cancel_url": "https://gate.test/fal/gengate/demo-image/requests/task_1/cancel",
    }


def test_a_queued_request_reads_as_queued_with_its_position() -> None:
    body = fal.status_body(task(TaskState.PENDING), URLS, queue_position=3)
    assert body["status"] == "IN_QUEUE"
    assert body["logs"] is None
    assert parse(body) == Queued(position=3)


def test_a_running_request_has_its_log_lines() -> None:
    logs = [TaskLog(at=1_700_000_000_123, line="step 1/10"), TaskLog(at=1_700_000_000_456, line="step 2/10")]
    body = fal.status_body(task(TaskState.PROCESSING), URLS, logs=logs)
    assert body["logs"] == [
        {"message": "step 1/10", "level": "INFO", "source": "user", "timestamp": "2023-11-14T22:13:20.123Z"},
        {"message": "step 2/10", "level": "INFO", "source": "user", "timestamp": "2023-11-14T22:13:20.456Z"},
    ]
    parsed = parse(body)
    assert isinstance(parsed, InProgress)
    assert [entry["message"] for entry in parsed.logs or []] == ["step 1/10", "step 2/10"]
    assert "queue_position" not in body


def test_completed_requests_have_metrics_and_failures_their_error() -> None:
    done = parse(fal.status_body(task(TaskState.SUCCESS), URLS, logs=[]))
    assert done == Completed(logs=[], metrics={"inference_time": 1.5}, error=None, error_type=None)
    failed = task(TaskState.FAILED, fail_code="CONTENT_VIOLATION", fail_msg="Refused.")
    parsed = parse(fal.status_body(failed, URLS))
    assert isinstance(parsed, Completed)
    assert (parsed.error, parsed.error_type, parsed.logs) == ("Refused.", "CONTENT_VIOLATION", None)


def test_an_image_result_names_its_images_size_and_seed() -> None:
    files = (ResultFile("0.png", "image/png", 10), ResultFile("1.png", "image/png", 11))
    body = fal.result_body(task(TaskState.SUCCESS, files=files), IndexedLinks())
    assert body == {
        "images": [
            {
                "url": "https://files.test/task_1/0",
                "content_type": "image/png",
                "file_name": "0.png",
                "file_size": 10,
                "width": 320,
                "height": 200,
            },
            {
                "url": "https://files.test/task_1/1",
                "content_type": "image/png",
                "file_name": "1.png",
                "file_size": 11,
                "width": 320,
                "height": 200,
            },
        ],
        "seed": 7,
    }


def test_a_video_result_and_other_files() -> None:
    video = task(TaskState.SUCCESS, input_json="{}", files=(ResultFile("v.mp4", "video/mp4", 5),))
    assert fal.result_body(video, IndexedLinks()) == {
        "video": {
            "url": "https://files.test/task_1/0",
            "content_type": "video/mp4",
            "file_name": "v.mp4",
            "file_size": 5,
        }
    }
    other = task(TaskState.SUCCESS, input_json="{}", files=(ResultFile("r.json", "application/json", 2),))
    assert list(fal.result_body(other, IndexedLinks())) == ["files"]


def test_plain_output_values_are_merged_in() -> None:
    obj = task(TaskState.SUCCESS, output_json='{"text":"hi","seed":9}', files=())
    assert fal.result_body(obj, IndexedLinks()) == {"text": "hi", "seed": 9}
    listed = task(TaskState.SUCCESS, output_json='["a","b"]', files=(ResultFile("0.png", "image/png", 1),))
    body = fal.result_body(listed, IndexedLinks())
    assert body["output"] == ["a", "b"]
    assert body["seed"] == 7
    assert len(body["images"]) == 1


@pytest.mark.parametrize(
    ("code", "status"),
    [("CONTENT_VIOLATION", 422), ("INVALID_INPUT", 422), ("TIMEOUT", 504), ("CANCELED", 400), ("X", 500)],
)
def test_a_failed_result_is_an_error_fal_client_does_not_retry(code: str, status: int) -> None:
    error = fal.RequestFailed(task(TaskState.FAILED, fail_code=code, fail_msg="why"))
    assert error.status == status
    assert status not in (408, 409, 429)
    assert error.headers == {"x-fal-request-id": "task_1"}  # without it a 504 reads as the ingress's
    body = fal.error_envelope(error, "trace_1")
    assert body == {
        "detail": "why",
        "error_type": code,
        "error": {"code": code, "message": "why"},
        "trace_id": "trace_1",
        "request_id": "task_1",
    }


def test_error_envelope_has_detail_and_the_gateway_error() -> None:
    body = fal.error_envelope(TaskNotFound("gone"), "t")
    assert body == {
        "detail": "gone",
        "error_type": "task_not_found",
        "error": {"code": "task_not_found", "message": "gone"},
        "trace_id": "t",
    }


def test_webhook_bodies() -> None:
    files = (ResultFile("0.png", "image/png", 10),)
    ok = orjson.loads(fal.callback_body(task(TaskState.SUCCESS, files=files), IndexedLinks()))
    assert ok["request_id"] == ok["gateway_request_id"] == "task_1"
    assert (ok["status"], ok["error"]) == ("OK", None)
    assert ok["payload"]["images"][0]["url"] == "https://files.test/task_1/0"
    failed = task(TaskState.FAILED, fail_code="TIMEOUT", fail_msg="Too slow.")
    error = orjson.loads(fal.callback_body(failed, IndexedLinks()))
    assert error == {
        "request_id": "task_1",
        "gateway_request_id": "task_1",
        "status": "ERROR",
        "payload": {"detail": "Too slow.", "error_type": "TIMEOUT"},
        "error": "Too slow.",
    }
