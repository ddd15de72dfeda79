"""A cog predictor for the tests: files inside a structure beside plain values; no published schema."""

import tempfile

from cog import BaseModel, BasePredictor, Path
from PIL import Image


class Output(BaseModel):
    images: list[Path]
    caption: str
    score: float


class Predictor(BasePredictor):
    def predict(self, count: int = 2) -> Output:
        folder = Path(tempfile.mkdtemp())
        images = []
        for index in range(count):
            path = folder / f"{index}.png"
            Image.new("RGB", (8, 8), (index * 40, 0, 0)).save(path)
            images.append(path)
        return Output(images=images, caption=f"{count} squares", score=0.5)
