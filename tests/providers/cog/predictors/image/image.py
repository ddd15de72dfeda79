"""A cog predictor for the tests: a PNG of one colour, after `steps` logged steps, or a failure."""

import os
import tempfile
import time

from cog import BasePredictor, Input, Path
from PIL import Image


class Predictor(BasePredictor):
    def setup(self) -> None:
        time.sleep(float(os.environ.get("TEST_SETUP_S", "0")))  # a model loading its weights

    def predict(  # noqa: PLR0917 - cog passes the inputs by name, as declared
        self,
        prompt: str = Input(description="Only echoed in logs and errors."),
        color: str = Input(default="red", choices=["red", "blue"]),
        size: int = Input(default=16, ge=8, le=256),
        steps: int = Input(default=0, ge=0, le=1000),
        step_s: float = Input(default=0.1, ge=0, le=5),
        fail: bool = Input(default=False),
    ) -> Path:
        for step in range(steps):
            print(f"step {step + 1}/{steps}", flush=True)
            time.sleep(step_s)
        if fail:
            raise RuntimeError(f"the model broke on {prompt!r}")
        out = Path(tempfile.mkdtemp()) / "out.png"
        Image.new("RGB", (size, size), color).save(out)
        return out
