"""The `comfyui` provider kind: ComfyUI workflows as models, on a pool of ComfyUI servers."""
