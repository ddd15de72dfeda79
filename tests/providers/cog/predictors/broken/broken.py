"""A cog predictor for the tests whose setup fails: its server reports SETUP_FAILED."""

from cog import BasePredictor


class Predictor(BasePredictor):
    def setup(self) -> None:
        raise RuntimeError("no weights here")

    def predict(self, prompt: str) -> str:
        return prompt
