"""The console's view logic without a browser: the form made from an input schema and the
input made from the form, the chart's scale, the "copy as" snippets."""

from __future__ import annotations

import json
import shlex

import pytest

from gengate.console.charts import daily_chart, nice_top
from gengate.console.forms import fields_of, input_of
from gengate.console.snippets import snippets
from gengate.console.views import preview_kind
from gengate.domain.errors import BadRequest
from gengate.domain.inputs import EchoInput, TextToImageInput, input_json_schema
from gengate.store.console_base import DailyUsage

SCHEMA = {
    "type": "object",
    "properties": {
        "mode": {"enum": ["m"], "default": "m"},
        "prompt": {"type": "string", "maxLength": 4000, "minLength": 1},
        "style": {"enum": ["photo", "sketch"]},
        "steps": {"type": "integer", "minimum": 1, "maximum": 50, "default": 20},
        "guidance": {"anyOf": [{"type": "number", "minimum": 0, "maximum": 20}, {"type": "null"}]},
        "image_url": {"type": "string", "format": "uri"},
        "image_urls": {"type": "array", "items": {"type": "string", "format": "uri"}},
        "hd": {"type": "boolean", "default": False},
        "extra": {},
    },
    "required": ["prompt"],
}


def test_fields_follow_the_schema() -> None:
    fields = {f.name: f for f in fields_of(SCHEMA)}
    assert "mode" not in fields
    assert fields["prompt"].widget == "textarea"
    assert fields["prompt"].required
    assert (fields["style"].widget, fields["style"].options) == ("select", ("photo", "sketch"))
    steps = fields["steps"]
    assert (steps.widget, steps.minimum, steps.maximum, steps.step, steps.default) == (
        "number",
        1,
        50,
        "1",
        20,
    )
    assert (fields["guidance"].widget, fields["guidance"].step, fields["guidance"].maximum) == (
        "number",
        "any",
        20,
    )
    assert fields["image_url"].widget == "url"
    assert fields["image_urls"].widget == "urls"
    assert fields["hd"].widget == "checkbox"
    assert fields["extra"].widget == "json"


def test_the_form_becomes_a_typed_input_with_empty_fields_left_out() -> None:
    fields = fields_of(SCHEMA)
    form = {
        "in.prompt": " a cat ",
        "in.style": "",
        "in.steps": "30",
        "in.guidance": "7.5",
        "in.image_urls": "http://a.example/1.png\n\nhttp://a.example/2.png\n",
        "in.hd": "on",
        "in.extra": '{"k": [1]}',
    }
    assert input_of(fields, form, "m") == {
        "mode": "m",
        "prompt": "a cat",
        "steps": 30,
        "guidance": 7.5,
        "image_urls": ["http://a.example/1.png", "http://a.example/2.png"],
        "hd": True,
        "extra": {"k": [1]},
    }
    assert input_of(fields, {"in.prompt": "x"}, "m") == {"mode": "m", "prompt": "x", "hd": False}


@pytest.mark.parametrize(("name", "raw"), [("in.steps", "2.5"), ("in.guidance", "lots"), ("in.extra", "{")])
def test_a_field_that_does_not_parse_names_itself(name: str, raw: str) -> None:
    with pytest.raises(BadRequest, match=name.removeprefix("in.").capitalize()):
        input_of(fields_of(SCHEMA), {"in.prompt": "x", name: raw}, "m")


def test_the_demo_models_schemas_make_forms() -> None:
    image = {f.name: f for f in fields_of(input_json_schema(TextToImageInput))}
    assert image["prompt"].widget == "textarea"
    assert (image["width"].minimum, image["width"].maximum) == (16, 2048)
    assert image["seed"].widget == "number"
    echo = {f.name: f for f in fields_of(input_json_schema(EchoInput))}
    assert echo["data"].widget == "json"


def test_chart_scale_and_bars() -> None:
    assert [nice_top(v) for v in (0, 1, 3, 7, 10, 11, 480, 5001)] == [1, 1, 5, 10, 10, 20, 500, 10000]
    rows = [DailyUsage(100, "a", 2, 6), DailyUsage(100, "b", 1, 4), DailyUsage(102, "a", 1, 3)]
    chart = daily_chart("spend", "Spent", rows, [100, 101, 102], lambda r: r.spent)
    assert len(chart.bars) == 3
    day_one = [b for b in chart.bars if b.x == chart.bars[0].x]
    assert sum(b.height for b in day_one) == pytest.approx(chart.height - 28 - 12)  # 10 of a top of 10
    assert [label.text for label in chart.x_labels] == ["04-11", "04-12", "04-13"]
    assert daily_chart("x", "x", [], [100], lambda r: r.spent).empty


def test_snippets_carry_the_request_and_never_a_key() -> None:
    task_input = {"mode": "text-to-image", "prompt": 'it\'s a "test"'}
    code = {
        s.id: s.code for s in snippets("http://gw.example/", "demo-image", task_input, "http://cb.example/h")
    }
    curl = shlex.split(code["curl"].replace("\\\n", " "))
    body = json.loads(curl[curl.index("-d") + 1])
    assert body == {"request_type": "callback", "input": task_input, "callback_url": "http://cb.example/h"}
    assert "http://gw.example/api/v1/generateTask/demo-image" in curl
    for text in code.values():
        assert "GENGATE_API_KEY" in text
        compile(text, "snippet", "exec") if not text.startswith("curl") else None


def test_preview_kinds() -> None:
    assert [preview_kind(t) for t in ("image/png", "video/mp4", "audio/wav", "application/json")] == [
        "image",
        "video",
        "audio",
        "file",
    ]
