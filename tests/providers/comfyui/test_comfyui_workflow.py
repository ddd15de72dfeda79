"""A workflow's bindings: checked at start, typed from the graph's values, filled into a copy."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from comfyui_fake import text_to_image_workflow
from gengate.domain.errors import BadRequest
from gengate.domain.validation import convert
from gengate.providers.comfyui.workflow import Workflow


def _workflow(**bind: str) -> Workflow:
    return Workflow(text_to_image_workflow(), bind)


def test_each_field_takes_the_type_and_default_of_the_graphs_value() -> None:
    workflow = _workflow(prompt="6.inputs.text", seed="3.inputs.seed", cfg="3.inputs.cfg")
    struct = workflow.input_type("workflow")

    given = msgspec.to_builtins(convert({"mode": "workflow", "seed": 3, "cfg": 5}, struct, "input"))
    assert given == {"seed": 3, "cfg": 5.0}  # what is left out keeps the graph's own value
    for bad in ({"seed": "3"}, {"cfg": "high"}, {"prompt": 1}, {"seed": True}, {"steps": 4}):
        with pytest.raises(BadRequest):
            convert({"mode": "workflow", **bad}, struct, "input")


def test_fill_changes_a_copy_only() -> None:
    workflow = _workflow(prompt="6.inputs.text", width="5.inputs.width")
    filled = workflow.fill({"prompt": "a fox", "width": 32})

    assert (filled["6"]["inputs"]["text"], filled["5"]["inputs"]["width"]) == ("a fox", 32)
    assert workflow.graph["6"]["inputs"]["text"] == "beautiful scenery nature glass bottle landscape"
    assert filled["7"] == workflow.graph["7"]


@pytest.mark.parametrize(
    ("bind", "words"),
    [
        ({"prompt": "6.text"}, "write `<node id>.inputs.<input name>`"),
        ({"prompt": "60.inputs.text"}, "the graph has no node '60'"),
        ({"prompt": "6.inputs.txt"}, "has no input 'txt'; it has clip, text"),
        ({"model": "3.inputs.model"}, "linked to another node's output"),
        ({"mode": "6.inputs.text"}, "cannot be an input field's name"),
        ({"image_url": "3.inputs.seed"}, "an image field binds an input that names a file"),
    ],
)
def test_a_wrong_binding_is_named(bind: dict[str, str], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        _workflow(**bind)


def test_a_workflow_in_the_ui_format_is_refused_with_the_way_to_export(tmp_path: Path) -> None:
    path = tmp_path / "ui.json"
    path.write_text(json.dumps({"last_node_id": 9, "nodes": [], "links": []}))
    with pytest.raises(ValueError, match=r"UI format; export it with Workflow > Export \(API\)"):
        Workflow.load(path, {"prompt": "6.inputs.text"})
