"""The dialect renderers as pure functions: no server, no store, a task built by hand."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest

from gengate import dialects
from gengate.dialects import apixo, kie, xhuo
from gengate.domain.dialect import Dialect
from gengate.domain.errors import GatewayError, TaskNotFound, Timeout
from gengate.domain.states import TaskState
from gengate.domain.task import ResultFile, Task

URL = "https://files.test/task_1/0.png"


class FixedLinks:
    """Links that sign nothing: every file of a finished task at one URL."""

    def result_urls(self, task: Task) -> list[str]:
        return [URL for _ in task.files]

    def result_json(self, task: Task) -> str:
        return orjson.dumps({"resultUrls": self.result_urls(task)}).decode()


def task(state: TaskState, dialect: Dialect | str = Dialect.APIXO, **fields: object) -> Task:
    finished = state.is_terminal()
    return Task(
        id="task_1",
        key_id="key_1",
        model="demo-echo",
        mode="echo",
        state=state,
        input_json="{}",
        request_json='{"model":"demo-echo","input":{}}',
        create_time=1000,
        complete_time=3000 if finished else None,
        cost_time=1500 if state is TaskState.SUCCESS else None,
        files=(ResultFile("0.png", "image/png", 3),) if state is TaskState.SUCCESS else (),
        trace_id="trace_1",
        dialect=dialect,  # type: ignore[arg-type]
        **fields,  # type: ignore[arg-type]
    )


def test_every_dialect_has_a_module() -> None:
    assert set(dialects.MODULES) == set(Dialect)


@pytest.mark.parametrize("dialect", list(Dialect))
def test_a_callback_is_rendered_from_the_stored_text_as_from_the_enum(dialect: Dialect) -> None:
    """Tasks read back from the store carry the dialect as text; the body must not differ."""
    done = task(TaskState.SUCCESS, dialect)
    assert dialects.render_callback(dialect.value, done, FixedLinks()) == dialects.render_callback(
        dialect, done, FixedLinks()
    )


def test_apixo_callback_is_the_status_body() -> None:
    body = dialects.render_callback(Dialect.APIXO, task(TaskState.SUCCESS), FixedLinks())
    assert body == (
        b'{"code":200,"message":"success","data":{"taskId":"task_1","state":"success",'
        b'"resultJson":"{\\"resultUrls\\":[\\"https://files.test/task_1/0.png\\"]}","costTime":1500,'
        b'"createTime":1000,"completeTime":3000,"model":"demo-echo"}}'
    )


def test_kie_callback_is_the_record_body_with_every_field() -> None:
    body = orjson.loads(dialects.render_callback(Dialect.KIE, task(TaskState.PENDING), FixedLinks()))
    assert body == {
        "code": 200,
        "msg": "success",
        "data": {
            "taskId": "task_1",
            "model": "demo-echo",
            "state": "waiting",
            "param": '{"model":"demo-echo","input":{}}',
            "resultJson": None,
            "failCode": None,
            "failMsg": None,
            "costTime": None,
            "completeTime": None,
            "createTime": 1000,
            "progress": None,
        },
    }


def test_xhuo_callback_of_a_failed_task_carries_the_fail_code() -> None:
    failed = task(TaskState.FAILED, fail_code="TIMEOUT", fail_msg="too slow")
    assert orjson.loads(dialects.render_callback(Dialect.XHUO, failed, FixedLinks())) == {
        "success": False,
        "task_id": "task_1",
        "trace_id": "trace_1",
        "error": {"code": "TIMEOUT", "message": "too slow"},
    }


def test_kie_state_names_fold_and_read_back() -> None:
    """Every state has a KIE name; a name read back (the KIE relay) ends where it began."""
    assert {state: kie.state_name(state) for state in TaskState} == {
        TaskState.PENDING: "waiting",
        TaskState.PROCESSING: "waiting",
        TaskState.SUCCESS: "success",
        TaskState.FAILED: "fail",
    }
    for name, state in kie.STATES_BY_NAME.items():
        assert kie.state_name(state) == name
    assert [apixo.state_name(state) for state in TaskState] == [s.value for s in TaskState]


@pytest.mark.parametrize(
    ("dialect", "expected"),
    [
        (
            Dialect.APIXO,
            {
                "code": 404,
                "message": "gone",
                "data": None,
                "error": {"code": "task_not_found", "message": "gone"},
                "trace_id": "t",
            },
        ),
        (
            Dialect.KIE,
            {
                "code": 404,
                "msg": "gone",
                "data": None,
                "error": {"code": "task_not_found", "message": "gone"},
                "trace_id": "t",
            },
        ),
        (Dialect.XHUO, {"error": {"code": "task_not_found", "message": "gone"}, "trace_id": "t"}),
    ],
)
def test_error_envelopes(dialect: Dialect, expected: dict[str, object]) -> None:
    body = dialects.error_envelope(dialect, TaskNotFound("gone"), "t")
    assert body == expected
    assert list(body) == list(expected)  # the order of the keys on the wire


def test_error_extra_fields_sit_beside_error() -> None:
    error: GatewayError = Timeout("late", extra={"task_id": "task_1"})
    assert dialects.error_envelope(Dialect.XHUO, error, "t")["task_id"] == "task_1"
    assert dialects.error_envelope(Dialect.APIXO, error, "t")["task_id"] == "task_1"


def test_a_failed_run_reads_as_its_fail_code() -> None:
    failed = task(TaskState.FAILED, fail_code="CONTENT_VIOLATION", fail_msg="no")
    error = xhuo.TaskFailed(failed)
    assert (error.code, error.status, error.extra) == ("CONTENT_VIOLATION", 403, {"task_id": "task_1"})


def test_the_renderers_need_no_web_framework() -> None:
    code = "import sys, gengate.dialects; print(any(m.startswith('starlette') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
