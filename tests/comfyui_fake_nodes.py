"""The nodes of the fake ComfyUI (`comfyui_fake`): their inputs, the prompt validation as
ComfyUI's `execution.validate_prompt` / `validate_inputs` word it, the saved PNG, the binary
frames (`protocol.BinaryEventTypes`), and ComfyUI's default graphs in API format."""

from __future__ import annotations

import hashlib
import io
import json
import struct
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

CHECKPOINTS = ["sd_xl_base_1.0.safetensors", "v1-5-pruned-emaonly.safetensors"]
SAMPLERS = ["euler", "euler_ancestral", "dpmpp_2m"]
SCHEDULERS = ["normal", "karras", "simple"]
#: class -> (inputs: name -> spec, is an output node). Spec: ("INT"|"FLOAT", min, max), ("STRING",),
#: ("COMBO", options), ("LINK",), ("IMAGEFILE",) (a file of the input folder).
NODES: dict[str, tuple[dict[str, tuple[Any, ...]], bool]] = {
    "CheckpointLoaderSimple": ({"ckpt_name": ("COMBO", CHECKPOINTS)}, False),
    "CLIPTextEncode": ({"text": ("STRING",), "clip": ("LINK",)}, False),
    "EmptyLatentImage": (
        {"width": ("INT", 16, 16384), "height": ("INT", 16, 16384), "batch_size": ("INT", 1, 4096)},
        False,
    ),
    "KSampler": (
        {
            "seed": ("INT", 0, 0xFFFFFFFFFFFFFFFF),
            "steps": ("INT", 1, 10000),
            "cfg": ("FLOAT", 0.0, 100.0),
            "sampler_name": ("COMBO", SAMPLERS),
            "scheduler": ("COMBO", SCHEDULERS),
            "denoise": ("FLOAT", 0.0, 1.0),
            "model": ("LINK",),
            "positive": ("LINK",),
            "negative": ("LINK",),
            "latent_image": ("LINK",),
        },
        False,
    ),
    "VAEDecode": ({"samples": ("LINK",), "vae": ("LINK",)}, False),
    "VAEEncode": ({"pixels": ("LINK",), "vae": ("LINK",)}, False),
    "LoadImage": ({"image": ("IMAGEFILE",)}, False),
    "SaveImage": ({"filename_prefix": ("STRING",), "images": ("LINK",)}, True),
    "PreviewImage": ({"images": ("LINK",)}, True),
}


def text_to_image_workflow() -> dict[str, Any]:
    """ComfyUI's default text-to-image graph, as "Export (API)" writes it."""
    return {
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 156680208700286,
                "steps": 5,
                "cfg": 8.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
            "_meta": {"title": "KSampler"},
        },
        "4": {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"},
            "_meta": {"title": "Load Checkpoint"},
        },
        "5": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": 64, "height": 48, "batch_size": 1},
            "_meta": {"title": "Empty Latent Image"},
        },
        "6": {
            "class_type": "CLIPTextEncode",
            "inputs": {"text": "beautiful scenery nature glass bottle landscape", "clip": ["4", 1]},
            "_meta": {"title": "CLIP Text Encode (Prompt)"},
        },
        "7": {
            "class_type": "CLIPTextEncode",
            "inputs": {"text": "text, watermark", "clip": ["4", 1]},
            "_meta": {"title": "CLIP Text Encode (Prompt)"},
        },
        "8": {
            "class_type": "VAEDecode",
            "inputs": {"samples": ["3", 0], "vae": ["4", 2]},
            "_meta": {"title": "VAE Decode"},
        },
        "9": {
            "class_type": "SaveImage",
            "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]},
            "_meta": {"title": "Save Image"},
        },
    }


def image_to_image_workflow() -> dict[str, Any]:
    """The default graph starting from a picture: LoadImage -> VAEEncode instead of an empty latent."""
    graph = text_to_image_workflow()
    del graph["5"]
    graph["10"] = {
        "class_type": "LoadImage",
        "inputs": {"image": "example.png"},
        "_meta": {"title": "Load Image"},
    }
    graph["11"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}}
    graph["3"]["inputs"]["latent_image"] = ["11", 0]
    graph["3"]["inputs"]["denoise"] = 0.6
    return graph


def validate_prompt(
    prompt: Any, input_dir: Path
) -> tuple[bool, dict[str, Any] | None, list[str], dict[str, Any]]:
    outputs = []
    for node_id, node in prompt.items():
        if "class_type" not in node:
            error = {
                "type": "invalid_prompt",
                "message": "Cannot execute because a node is missing the class_type property.",
                "details": f"Node ID '#{node_id}'",
                "extra_info": {},
            }
            return False, error, [], {}
        if node["class_type"] not in NODES:
            error = {
                "type": "invalid_prompt",
                "message": f"Cannot execute because node {node['class_type']} does not exist.",
                "details": f"Node ID '#{node_id}'",
                "extra_info": {},
            }
            return False, error, [], {}
        if NODES[node["class_type"]][1]:
            outputs.append(node_id)
    if not outputs:
        error = {
            "type": "prompt_no_outputs",
            "message": "Prompt has no outputs",
            "details": "",
            "extra_info": {},
        }
        return False, error, [], {}
    node_errors: dict[str, Any] = {}
    for node_id, node in prompt.items():
        errors = validate_inputs(prompt, node, input_dir)
        if errors:
            node_errors[node_id] = {
                "errors": errors,
                "dependent_outputs": outputs,
                "class_type": node["class_type"],
            }
    if node_errors:
        details = "\n".join(
            f"{e['message']}: {e['details']}" for n in node_errors.values() for e in n["errors"]
        )
        error = {
            "type": "prompt_outputs_failed_validation",
            "message": "Prompt outputs failed validation",
            "details": details,
            "extra_info": {},
        }
        return False, error, [], node_errors
    return True, None, outputs, {}


def validate_inputs(prompt: dict[str, Any], node: dict[str, Any], input_dir: Path) -> list[dict[str, Any]]:
    errors = []
    inputs = node.get("inputs", {})
    for name, spec in NODES[node["class_type"]][0].items():
        if name not in inputs:
            errors.append(
                {
                    "type": "required_input_missing",
                    "message": "Required input is missing",
                    "details": name,
                    "extra_info": {"input_name": name},
                }
            )
            continue
        value, kind = inputs[name], spec[0]
        info = {"input_name": name, "input_config": list(spec), "received_value": value}
        if kind == "LINK":
            if not (isinstance(value, list) and len(value) == 2 and str(value[0]) in prompt):
                errors.append(
                    {
                        "type": "bad_linked_input",
                        "message": "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                        "details": name,
                        "extra_info": info,
                    }
                )
        elif kind in ("INT", "FLOAT"):
            try:
                number = int(value) if kind == "INT" else float(value)
            except (TypeError, ValueError) as exc:
                errors.append(
                    {
                        "type": "invalid_input_type",
                        "message": f"Failed to convert an input value to a {kind} value",
                        "details": f"{name}, {value}, {exc}",
                        "extra_info": {**info, "exception_message": str(exc)},
                    }
                )
                continue
            if number < spec[1]:
                errors.append(
                    {
                        "type": "value_smaller_than_min",
                        "message": f"Value {number} smaller than min of {spec[1]}",
                        "details": name,
                        "extra_info": info,
                    }
                )
            elif number > spec[2]:
                errors.append(
                    {
                        "type": "value_bigger_than_max",
                        "message": f"Value {number} bigger than max of {spec[2]}",
                        "details": name,
                        "extra_info": info,
                    }
                )
        elif kind == "COMBO" and value not in spec[1]:
            errors.append(
                {
                    "type": "value_not_in_list",
                    "message": "Value not in list",
                    "details": f"{name}: '{value}' not in {spec[1]}",
                    "extra_info": info,
                }
            )
        elif kind == "IMAGEFILE" and not (input_dir / str(value)).is_file():
            errors.append(
                {
                    "type": "custom_validation_failed",
                    "message": "Custom validation failed for node",
                    "details": f"{name} - Invalid image file: {value}",
                    "extra_info": {"input_name": name},
                }
            )
    return errors


def save_image(
    prompt: dict[str, Any], class_type: str, inputs: dict[str, Any], folders: tuple[Path, Path], counter: int
) -> dict[str, str]:
    """SaveImage (PreviewImage): a PNG of the latent's size (or the loaded picture's), its colour from
    the seed and the prompts, the graph in its `prompt` text chunk as ComfyUI writes it."""
    input_dir, output_dir = folders
    width, height, seed, texts = 512, 512, 0, []
    for node in prompt.values():
        if node["class_type"] == "EmptyLatentImage":
            width, height = int(node["inputs"]["width"]), int(node["inputs"]["height"])
        elif node["class_type"] == "LoadImage":
            with Image.open(input_dir / node["inputs"]["image"]) as source:
                width, height = source.size
        elif node["class_type"] == "KSampler":
            seed = int(node["inputs"]["seed"])
        elif node["class_type"] == "CLIPTextEncode":
            texts.append(str(node["inputs"]["text"]))
    colour = hashlib.sha256(f"{seed}:{'|'.join(texts)}".encode()).digest()[:3]
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", json.dumps(prompt))
    temp = class_type == "PreviewImage"
    prefix = "ComfyUI_temp" if temp else str(inputs.get("filename_prefix", "ComfyUI"))
    subfolder, _, base = prefix.rpartition("/")
    folder = output_dir / subfolder
    folder.mkdir(parents=True, exist_ok=True)
    filename = f"{base}_{counter:05}_.png"
    Image.new("RGB", (width, height), tuple(colour)).save(folder / filename, pnginfo=info)  # type: ignore[arg-type]
    return {"filename": filename, "subfolder": subfolder, "type": "temp" if temp else "output"}


def preview_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buffer, format="JPEG")
    return buffer.getvalue()


def text_frame(node_id: str, text: str) -> bytes:
    node = node_id.encode()
    return struct.pack(">I", len(node)) + node + text.encode()
