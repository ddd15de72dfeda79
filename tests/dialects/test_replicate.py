"""The Replicate renderer as pure functions: prediction objects, statuses, outputs and errors."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
import pytest

from gengate import dialects
from gengate.dialects import replicate
from gengate.domain.dialect import Dialect
from gengate.domain.errors import ModelNotFound, TooManyRequests
from gengate.domain.states import TaskState
from gengate.domain.task import ResultFile, Task, TaskLog


class Links:
    """Every file of a task at its own fixed URL."""

    def result_urls(self, task: Task) -> list[str]:
        return [f"https://files.test/{task.id}/{file.name}" for file in task.files]

    def result_json(self, task: Task) -> str:
        return orjson.dumps({"resultUrls": self.result_urls(task)}).decode()


PNG = ResultFile("0.png", "image/png", 3)
JSON = ResultFile("result.json", "application/json", 2)


def task(state: TaskState, **fields: Any) -> Task:
    finished = state.is_terminal()
    values: dict[str, Any] = {
        "id": "task_1",
        "key_id": "key_1",
        "model": "demo-echo",
        "mode": "echo",
        "state": state,
        "input_json": '{"mode":"echo","prompt":"hi"}',
        "request_json": '{"input":{"prompt":"hi"}}',
        "create_time": 1_700_000_000_000,
        "start_time": 1_700_000_000_250 if state is not TaskState.PENDING else None,
        "complete_time": 1_700_000_001_500 if finished else None,
        "cost_time": 1250 if finished else None,
        "dialect": Dialect.REPLICATE,
    }
    return Task(**(values | fields))


def render(done: Task, logs: tuple[TaskLog, ...] = (), **options: Any) -> dict[str, Any]:
    body: dict[str, Any] = orjson.loads(orjson.dumps(replicate.prediction(done, Links(), logs, **options)))
    return body


def test_a_succeeded_prediction_has_every_field_the_client_reads() -> None:
    done = task(TaskState.SUCCESS, files=(JSON,))
    body = render(done, (TaskLog(1, "step 1"), TaskLog(2, "step 2")), api_base="http://gg.test", owner="acme")
    assert body == {
        "id": "task_1",
        "model": "acme/demo-echo",
        "version": "acme/demo-echo",
        "status": "succeeded",
        "input": {"mode": "echo", "prompt": "hi"},
        "output": "https://files.test/task_1/result.json",
        "logs": "step 1\nstep 2",
        "error": None,
        "metrics": {"predict_time": 1.25},
        "created_at": "2023-11-14T22:13:20.000Z",
        "started_at": "2023-11-14T22:13:20.250Z",
        "completed_at": "2023-11-14T22:13:21.500Z",
        "urls": {
            "get": "http://gg.test/v1/predictions/task_1",
            "cancel": "http://gg.test/v1/predictions/task_1/cancel",
            "stream": "http://gg.test/v1/predictions/task_1/stream",
        },
    }


@pytest.mark.parametrize(
    ("files", "output"),
    [
        ((PNG,), ["https://files.test/task_1/0.png"]),  # images: a list, even of one
        ((JSON,), "https://files.test/task_1/result.json"),  # one other file: its URL
        ((JSON, PNG), ["https://files.test/task_1/result.json", "https://files.test/task_1/0.png"]),
    ],
)
def test_output_is_a_url_for_one_file_and_a_list_for_several_or_for_images(
    files: tuple[ResultFile, ...], output: object
) -> None:
    assert render(task(TaskState.SUCCESS, files=files))["output"] == output


def test_plain_output_values_are_the_output_when_there_are_no_files() -> None:
    assert render(task(TaskState.SUCCESS, output_json='{"text":"a cat","score":0.5}'))["output"] == {
        "text": "a cat",
        "score": 0.5,
    }
    assert render(task(TaskState.SUCCESS))["output"] is None


def test_files_win_over_plain_output_values() -> None:
    done = task(TaskState.SUCCESS, files=(JSON,), output_json='"text"')
    assert render(done)["output"] == "https://files.test/task_1/result.json"


@pytest.mark.parametrize(
    ("state", "fields", "status", "error"),
    [
        (TaskState.PENDING, {}, "starting", None),
        (TaskState.PROCESSING, {}, "processing", None),
        (TaskState.FAILED, {"fail_code": "PROVIDER_ERROR", "fail_msg": "boom"}, "failed", "boom"),
        (TaskState.FAILED, {"fail_code": "TIMEOUT", "fail_msg": None}, "failed", "TIMEOUT"),
        (TaskState.FAILED, {"fail_code": "CANCELED", "fail_msg": "Task canceled."}, "canceled", None),
    ],
)
def test_statuses_and_errors(
    state: TaskState, fields: dict[str, Any], status: str, error: str | None
) -> None:
    body = render(task(state, **fields))
    assert (body["status"], body["error"], body["output"]) == (status, error, None)
    assert body["completed_at"] == ("2023-11-14T22:13:21.500Z" if state.is_terminal() else None)


def test_an_unfinished_prediction_has_no_completion_and_no_metrics() -> None:
    body = render(task(TaskState.PENDING))
    assert (body["started_at"], body["completed_at"], body["metrics"], body["logs"]) == (None, None, {}, "")


def test_a_status_can_be_overridden_and_logs_left_out() -> None:
    """A held create that ran out says `starting`; a listing reads no logs (`null`)."""
    body = render(task(TaskState.PROCESSING), status="starting")
    assert body["status"] == "starting"
    assert (
        orjson.loads(orjson.dumps(replicate.prediction(task(TaskState.PENDING), Links(), None)))["logs"]
        is None
    )


def test_a_model_whose_id_has_an_owner_keeps_it() -> None:
    assert render(task(TaskState.PENDING, model="acme/flux"), owner="gengate")["model"] == "acme/flux"


@pytest.mark.parametrize(
    ("reference", "candidates"),
    [
        ("gengate/demo-image", ["demo-image", "gengate/demo-image"]),
        ("gengate/demo-image:v1", ["demo-image", "gengate/demo-image"]),
        ("acme/flux", ["acme/flux"]),
        ("demo-image", ["demo-image"]),
    ],
)
def test_model_references(reference: str, candidates: list[str]) -> None:
    assert replicate.model_candidates(reference, "gengate") == candidates


def test_the_callback_is_the_prediction() -> None:
    done = task(TaskState.SUCCESS, files=(PNG,))
    body = orjson.loads(dialects.render_callback(Dialect.REPLICATE, done, Links()))
    assert body == render(done) | {"logs": None}  # the sender reads no logs
    assert body["urls"]["get"] == "/v1/predictions/task_1"  # links without a base: relative


def test_errors_are_problem_details_with_the_error_object_and_trace_id() -> None:
    body = dialects.error_envelope(Dialect.REPLICATE, ModelNotFound("Model 'x' does not exist."), "t")
    assert body == {
        "title": "Not Found",
        "detail": "Model 'x' does not exist.",
        "status": 404,
        "error": {"code": "model_not_found", "message": "Model 'x' does not exist."},
        "trace_id": "t",
    }
    assert dialects.error_envelope(Dialect.REPLICATE, TooManyRequests(), "t")["title"] == "Too Many Requests"


@pytest.mark.parametrize(
    ("url", "request_json", "start", "logs"),
    [
        ("https://r.test/hook", '{"input":{}}', False, False),  # no filter: outputs and the completion
        ("https://r.test/hook", '{"input":{},"webhook_events_filter":["start","completed"]}', True, False),
        ("https://r.test/hook", '{"input":{},"webhook_events_filter":["logs"]}', False, True),
        ("https://r.test/hook", '{"input":{},"webhook_events_filter":["completed"]}', False, False),
        (None, '{"input":{},"webhook_events_filter":["start","logs"]}', False, False),
    ],
)
def test_callbacks_of_a_running_task_are_owed_when_the_webhook_asks(
    url: str | None, request_json: str, *, start: bool, logs: bool
) -> None:
    running = task(TaskState.PROCESSING, callback_url=url, request_json=request_json)
    assert (replicate.webhook_wants(running, "start"), replicate.webhook_wants(running, "logs")) == (
        start,
        logs,
    )
    assert (dialects.callback_on(running, dialects.START), dialects.callback_on(running, dialects.LOGS)) == (
        start,
        logs,
    )
    # Other dialects call back at the end only.
    apixo = msgspec.structs.replace(running, dialect=Dialect.APIXO)
    assert not dialects.callback_on(apixo, dialects.START)
    assert not dialects.callback_on(apixo, dialects.LOGS)
