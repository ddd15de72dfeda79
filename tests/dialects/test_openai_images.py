"""The OpenAI Images dialect as pure functions: request fields mapped to a model's input, the
images response, and OpenAI's error body."""

from __future__ import annotations

from typing import Any, Literal

import msgspec
import orjson
import pytest

from gengate.dialects import openai_images
from gengate.domain.catalogue import ModelSpec
from gengate.domain.errors import BadRequest, GatewayError, Timeout, UsedUp
from gengate.domain.inputs import EchoInput, ImageToImageInput, TextToImageInput
from gengate.domain.states import TaskState
from gengate.domain.task import ResultFile, Task
from gengate.providers.relay.inputs import RelayImageToImageInput, RelayTextToImageInput

DEMO = ModelSpec(id="demo-image", inputs={"text-to-image": TextToImageInput}, provider="demo-image")
RELAY = ModelSpec(
    id="relayed",
    inputs={"text-to-image": RelayTextToImageInput, "image-to-image": RelayImageToImageInput},
    provider="up",
)
LOCAL = ModelSpec(id="local", inputs={"image-to-image": ImageToImageInput}, provider="local")
ECHO = ModelSpec(id="demo-echo", inputs={"echo": EchoInput}, provider="demo-echo")


class FixedLinks:
    def result_urls(self, task: Task) -> list[str]:
        return [f"https://files.test/{task.id}/{file.name}" for file in task.files]

    def result_json(self, task: Task) -> str:
        return orjson.dumps({"resultUrls": self.result_urls(task)}).decode()


def refused(fields: dict[str, Any], spec: ModelSpec = DEMO, mode: str = "text-to-image") -> str | None:
    with pytest.raises(BadRequest) as caught:
        openai_images.task_input(fields, spec, mode)
    return openai_images.param_of(caught.value)


def test_size_goes_to_width_and_height_or_to_the_model_own_size() -> None:
    fields = {"prompt": "a fox", "size": "64x48", "n": 2}
    assert openai_images.task_input(fields, DEMO, "text-to-image") == {
        "prompt": "a fox",
        "n": 2,
        "width": 64,
        "height": 48,
    }
    relayed = openai_images.task_input(fields, RELAY, "text-to-image")
    assert relayed == {"prompt": "a fox", "n": 2, "size": "64x48"}
    assert openai_images.task_input({"prompt": "a fox", "size": "auto"}, DEMO, "text-to-image") == {
        "prompt": "a fox",
        "n": 1,
    }


def test_hints_go_to_a_model_that_takes_them_and_are_dropped_otherwise() -> None:
    fields = {"prompt": "p", "quality": "high", "style": "vivid", "user": "u1", "output_format": "webp"}
    assert openai_images.task_input(fields, RELAY, "text-to-image") == {
        "prompt": "p",
        "n": 1,
        "quality": "high",
        "style": "vivid",
        "output_format": "webp",
    }
    hints = {"prompt": "p", "quality": "high", "style": "vivid", "user": "u1", "background": "opaque"}
    assert openai_images.task_input(hints, DEMO, "text-to-image") == {"prompt": "p", "n": 1}


def test_model_own_fields_ride_along_and_null_fields_are_absent() -> None:
    fields = {"prompt": "p", "seed": 7, "duration_ms": 10, "size": None, "stream": False}
    assert openai_images.task_input(fields, DEMO, "text-to-image") == {
        "prompt": "p",
        "n": 1,
        "seed": 7,
        "duration_ms": 10,
    }


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"prompt": "p", "size": "large"}, "size"),
        ({"prompt": "p", "size": "0x10"}, "size"),
        ({"prompt": "p", "size": 512}, "size"),
        ({"prompt": "p", "n": 0}, "n"),
        ({"prompt": "p", "n": 11}, "n"),
        ({"prompt": "p", "n": True}, "n"),
        ({"prompt": "p", "output_format": "png"}, "output_format"),
        ({"prompt": "p", "background": "transparent"}, "background"),
        ({"prompt": "p", "background": 5}, "background"),
        ({"prompt": "p", "quality": 2957}, "quality"),  # ignored hints keep OpenAI's types
        ({"prompt": "p", "user": ["u"]}, "user"),
        ({"prompt": "p", "output_compression": "high"}, "output_compression"),
        ({"prompt": "p", "partial_images": True}, "partial_images"),
        ({"prompt": "p", "svg": {"model": "x"}}, "svg"),
        ({"prompt": "p", "stream": True}, "stream"),
        ({"prompt": ""}, "prompt"),
        ({"n": 1}, "prompt"),
    ],
)
def test_what_the_model_cannot_do_is_refused_naming_the_field(fields: dict[str, Any], param: str) -> None:
    assert refused(fields) == param


class OneImageInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    mode: Literal["text-to-image"] = "text-to-image"
    prompt: str


def test_a_model_without_a_count_makes_one_image() -> None:
    one = ModelSpec(id="one", inputs={"text-to-image": OneImageInput}, provider="one")
    assert openai_images.task_input({"prompt": "p", "n": 1}, one, "text-to-image") == {"prompt": "p"}
    assert refused({"prompt": "p", "n": 2}, one) == "n"


def test_a_model_without_the_mode_is_refused_on_model() -> None:
    assert refused({"prompt": "p"}, ECHO) == "model"


def test_form_text_is_read_as_the_model_field_type() -> None:
    fields = {"prompt": "p", "n": "2", "strength": "0.5", "seed": "x"}
    value = openai_images.task_input(fields, LOCAL, "image-to-image", form=True)
    # The seed stays text, so that validation names it.
    assert value == {"prompt": "p", "n": 2, "strength": 0.5, "seed": "x"}
    assert openai_images.task_input(fields, RELAY, "image-to-image", form=True)["n"] == 2


def test_images_go_to_image_url_or_image_urls_and_a_mask_to_mask_url() -> None:
    one, two = "data:image/png;base64,AA==", "data:image/png;base64,AQ=="
    assert openai_images.image_fields(LOCAL, [one], None) == {"image_url": one}
    assert openai_images.image_fields(RELAY, [one], two) == {"image_url": one, "mask_url": two}
    assert openai_images.image_fields(RELAY, [one, two], None) == {"image_urls": [one, two]}
    for spec, urls, mask, param in [(LOCAL, [one, two], None, "image"), (LOCAL, [one], two, "mask")]:
        with pytest.raises(BadRequest) as caught:
            openai_images.image_fields(spec, urls, mask)
        assert openai_images.param_of(caught.value) == param


@pytest.mark.parametrize(
    ("message", "param"),
    [
        ("input.width: Expected `int` <= 2048", "size"),
        ("input.image_url: Expected `str` matching", "image"),
        ("input.n: Expected `int` <= 4", "n"),
        ("input: Expected `object`", None),
        ("The request body is not valid JSON", None),
    ],
)
def test_a_validation_message_names_the_client_field(message: str, param: str | None) -> None:
    assert openai_images.param_of(BadRequest(message)) == param


def done(state: TaskState, **fields: Any) -> Task:
    return Task(
        id="task_1",
        key_id="key_1",
        model="demo-image",
        mode="text-to-image",
        state=state,
        input_json='{"mode":"text-to-image","prompt":"p","width":64,"height":48,"n":2}',
        request_json="{}",
        create_time=1_700_000_123_456,
        complete_time=1_700_000_124_000,
        trace_id="trace_1",
        **fields,
    )


def test_the_images_body_names_size_and_format() -> None:
    files = (ResultFile("0.png", "image/png", 3), ResultFile("1.png", "image/png", 3))
    task = done(TaskState.SUCCESS, files=files)
    body = openai_images.images_body(task, openai_images.url_items(task, FixedLinks()))
    assert body == {
        "created": 1_700_000_123,
        "data": [{"url": "https://files.test/task_1/0.png"}, {"url": "https://files.test/task_1/1.png"}],
        "size": "64x48",
        "output_format": "png",
    }
    mixed = done(TaskState.SUCCESS, files=(files[0], ResultFile("r.json", "application/json", 2)))
    assert "output_format" not in openai_images.images_body(mixed, [])


def test_errors_are_openai_bodies() -> None:
    body = openai_images.error_envelope(openai_images.invalid("bad size", "size"), "t1")
    assert body == {
        "error": {
            "message": "bad size",
            "type": "invalid_request_error",
            "param": "size",
            "code": "bad_request",
        },
        "trace_id": "t1",
    }
    late = openai_images.error_envelope(Timeout("late", extra={"task_id": "task_1"}), "t2")
    assert late["error"]["type"] == "timeout"
    assert late["task_id"] == "task_1"
    quota = openai_images.error_envelope(UsedUp(status=429), "t3")["error"]
    assert (quota["type"], quota["code"]) == ("insufficient_quota", "used_up")
    assert openai_images.error_envelope(GatewayError(), "t4")["error"]["type"] == "server_error"


@pytest.mark.parametrize(
    ("code", "status", "retry"),
    [("CONTENT_VIOLATION", 400, "false"), ("CANCELED", 409, "false"), ("PROVIDER_ERROR", 500, None)],
)
def test_a_failed_task_is_its_fail_code_with_the_task_named(
    code: str, status: int, retry: str | None
) -> None:
    error = openai_images.task_failed(done(TaskState.FAILED, fail_code=code, fail_msg="why"))
    assert (error.status, error.code, error.message) == (status, code, "why")
    assert error.headers[openai_images.TASK_HEADER] == "task_1"
    assert error.headers.get("x-should-retry") == retry


def test_the_callback_body_is_the_answer_the_request_got() -> None:
    files = (ResultFile("0.png", "image/png", 3),)
    body = orjson.loads(openai_images.callback_body(done(TaskState.SUCCESS, files=files), FixedLinks()))
    assert body["data"] == [{"url": "https://files.test/task_1/0.png"}]
    failed = done(TaskState.FAILED, fail_code="PROVIDER_ERROR", fail_msg="boom")
    error = orjson.loads(openai_images.callback_body(failed, FixedLinks()))
    assert error["error"]["code"] == "PROVIDER_ERROR"
    assert error["task_id"] == "task_1"
