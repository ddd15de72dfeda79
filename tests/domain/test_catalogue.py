from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gengate.domain.catalogue import Catalogue, ModelSpec
from gengate.domain.errors import BadRequest, ModelNotFound
from gengate.domain.inputs import EchoInput, TextToImageInput

IMAGE = ModelSpec(id="img", inputs={"text-to-image": TextToImageInput}, provider="demo-image")
MULTI = ModelSpec(id="multi", inputs={"text-to-image": TextToImageInput, "echo": EchoInput}, provider="x")
CATALOGUE = Catalogue({"img": IMAGE, "multi": MULTI})


def test_lookup() -> None:
    assert CATALOGUE.get("img") is IMAGE
    assert "img" in CATALOGUE
    with pytest.raises(ModelNotFound, match="nope"):
        CATALOGUE.get("nope")


def test_defaults_are_filled() -> None:
    checked = CATALOGUE.validate_input(IMAGE, {"mode": "text-to-image", "prompt": "a cat"})
    assert checked.mode == "text-to-image"
    assert checked.value == {
        "mode": "text-to-image",
        "prompt": "a cat",
        "width": 512,
        "height": 512,
        "n": 1,
        "seed": None,
        "duration_ms": 0,
        "fail_code": None,
        "fail_attempts": 0,
    }


def test_single_mode_model_takes_input_without_mode() -> None:
    assert CATALOGUE.validate_input(IMAGE, {"prompt": "a cat"}).mode == "text-to-image"


def test_multi_mode_model_needs_the_mode() -> None:
    with pytest.raises(BadRequest, match=r"input\.mode. is required"):
        CATALOGUE.validate_input(MULTI, {"prompt": "a cat"})


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        ({"prompt": "x", "width": "a"}, "input.width"),
        ({"prompt": "x", "width": 4096}, "input.width"),
        ({"prompt": "x", "n": 0}, "input.n"),
        ({"prompt": ""}, "input.prompt"),
        ({}, "prompt"),
        ({"prompt": "x", "colour": "red"}, "colour"),
        ({"prompt": "x", "width": 512.5}, "input.width"),  # 512.0 is an integer, as JSON Schema says
        ({"prompt": "x", "fail_code": "lower"}, "input.fail_code"),
        ({"mode": "video", "prompt": "x"}, "input.mode"),
        ({"mode": 3, "prompt": "x"}, "input.mode"),
    ],
)
def test_bad_input_names_the_field(raw: dict[str, Any], names: str) -> None:
    with pytest.raises(BadRequest) as caught:
        CATALOGUE.validate_input(IMAGE, raw)
    assert names in caught.value.message


def test_input_must_be_an_object() -> None:
    with pytest.raises(BadRequest, match="JSON object"):
        CATALOGUE.validate_input(IMAGE, ["prompt"])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


@given(
    st.dictionaries(
        st.sampled_from(["mode", "prompt", "width", "height", "n", "seed", "duration_ms", "fail_code", "x"]),
        json_values,
    )
)
def test_any_json_input_is_accepted_or_a_bad_request(raw: dict[str, Any]) -> None:
    try:
        checked = CATALOGUE.validate_input(MULTI, raw)
    except BadRequest as exc:
        message = exc.message
        assert message
    else:
        assert checked.mode in MULTI.modes
        assert checked.value["mode"] == checked.mode
