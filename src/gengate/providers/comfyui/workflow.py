"""A ComfyUI workflow as a model: the API-format graph, the bindings of input fields to node inputs.

ComfyUI runs a graph exported with "Export (API)": `{node_id: {"class_type", "inputs"}}`, each
input a literal or a link (`[node_id, output_index]`). A model binds its input fields to literal
node inputs (`prompt = "6.inputs.text"`); each field takes the type of the value the graph holds
there (bool, int, float, str), and that value is its default. A field whose name ends in
`image_url` takes an image URL instead: gengate uploads the picture and binds its file name.
Everything is checked once, at start, so a typo in a binding is a configuration error, not a
failed task.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from gengate.domain.inputs import ImageUrl

Graph = dict[str, dict[str, Any]]
_TEXT_LIMIT = 100_000


@dataclass(frozen=True, slots=True)
class Binding:
    """One input field of the model. Fields: `field` (its name), `node` (node id in the graph),
    `input` (the node's input name), `kind` (bool, int, float, str, or image: an image URL)."""

    field: str
    node: str
    input: str
    kind: Literal["bool", "int", "float", "str", "image"]


class Workflow:
    """A graph and its bindings, checked; `input_type(mode)` is the model's input schema."""

    def __init__(self, graph: Graph, bind: Mapping[str, str], source: str = "the workflow") -> None:
        if not bind:
            raise ValueError(f"{source}: a ComfyUI model needs `bind` (input field -> node input)")
        self.graph = graph
        self.bindings = tuple(_binding(graph, field, target, source) for field, target in bind.items())

    @classmethod
    def load(cls, path: Path, bind: Mapping[str, str]) -> Workflow:
        """Read an API-format graph from `path`; `ValueError` says what is wrong with it."""
        try:
            graph = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ValueError(f"cannot read workflow {str(path)!r}: {exc.strerror or exc}") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"workflow {str(path)!r} is not JSON: {exc}") from None
        return cls(check_graph(graph, str(path)), bind, f"workflow {str(path)!r}")

    def input_type(self, mode: str) -> type[msgspec.Struct]:
        """The struct client input converts to: every bound field optional, unknown ones refused."""
        fields: list[tuple[str, Any, Any]] = [("mode", Literal[mode], mode)]
        for binding in self.bindings:
            if binding.kind == "image":
                fields.append((binding.field, ImageUrl | None, None))
            else:
                value = self.graph[binding.node]["inputs"][binding.input]
                fields.append((binding.field, _TYPES[binding.kind], value))
        # Named by its mode: the API docs draw one input schema per mode, under the struct's name.
        words = re.split(r"[^A-Za-z0-9]+", mode)
        return msgspec.defstruct(
            "ComfyUI" + "".join(word.capitalize() for word in words) + "Input",
            fields,
            kw_only=True,
            forbid_unknown_fields=True,
            omit_defaults=True,
        )

    def fill(self, values: Mapping[str, Any]) -> Graph:
        """A copy of the graph with each given field's value at its node input."""
        graph = copy.deepcopy(self.graph)
        for binding in self.bindings:
            if binding.field in values and values[binding.field] is not None:
                graph[binding.node]["inputs"][binding.input] = values[binding.field]
        return graph

    def images(self) -> list[Binding]:
        return [binding for binding in self.bindings if binding.kind == "image"]


_TYPES: dict[str, Any] = {
    "bool": bool,
    "int": int,
    "float": float,
    "str": Annotated[str, msgspec.Meta(max_length=_TEXT_LIMIT)],
}


def check_graph(graph: Any, source: str) -> Graph:
    """`graph` if it is in API format; the UI format (with `nodes` and `links`) is named as such."""
    if isinstance(graph, dict) and "nodes" in graph and "links" in graph:
        raise ValueError(
            f"{source} is in ComfyUI's UI format; export it with Workflow > Export (API) instead"
        )
    if not isinstance(graph, dict) or not graph:
        raise ValueError(f"{source} is not an API-format graph (an object of nodes)")
    for node_id, node in graph.items():
        if not (isinstance(node, dict) and isinstance(node.get("class_type"), str)):
            raise ValueError(f"{source}: node {node_id!r} has no `class_type`")
        if not isinstance(node.get("inputs", {}), dict):
            raise ValueError(f"{source}: node {node_id!r}: `inputs` is not an object")
    return graph


def _binding(graph: Graph, field: str, target: str, source: str) -> Binding:
    where = f"{source}: bind.{field} = {target!r}"
    if field == "mode" or not field.isidentifier():
        raise ValueError(f"{where}: {field!r} cannot be an input field's name")
    node, dot, rest = target.partition(".")
    section, dot2, name = rest.partition(".")
    if not (dot and dot2 and section == "inputs" and name):
        raise ValueError(f"{where}: write `<node id>.inputs.<input name>`")
    if node not in graph:
        raise ValueError(f"{where}: the graph has no node {node!r}")
    inputs = graph[node].get("inputs", {})
    if name not in inputs:
        known = ", ".join(sorted(inputs)) or "none"
        raise ValueError(
            f"{where}: node {node} ({graph[node]['class_type']}) has no input {name!r}; it has {known}"
        )
    value = inputs[name]
    if isinstance(value, list):
        raise ValueError(f"{where}: that input is linked to another node's output; bind a literal input")
    if field.endswith("image_url"):
        if not isinstance(value, str):
            raise ValueError(f"{where}: an image field binds an input that names a file (a string)")
        return Binding(field, node, name, "image")
    kind = {bool: "bool", int: "int", float: "float", str: "str"}.get(type(value))
    if kind is None:
        raise ValueError(
            f"{where}: the graph's value there is {type(value).__name__}, not a bool, number or string"
        )
    return Binding(field, node, name, kind)  # type: ignore[arg-type]
