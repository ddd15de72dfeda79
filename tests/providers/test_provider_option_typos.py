"""A misspelt option under `[providers.<name>]` is named with its table and the nearest option of
the provider's kind, whichever kind builds it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gengate.providers.registry import ConfigError, build_providers
from gengate.settings import load_settings
from gengate.startup import StartupError

RELAY = {"kind": "apixo", "base_url": "http://upstream.test"}


@pytest.mark.parametrize(
    ("provider", "message"),
    [
        (
            {**RELAY, "poll_intial_s": 1},
            '[providers.p] has no setting "poll_intial_s"; did you mean "poll_initial_s"?',
        ),
        ({**RELAY, "timout_s": 5}, '[providers.p] has no setting "timout_s"; did you mean "timeout_s"?'),
        ({**RELAY, "kind": "openai", "response_fromat": "b64"}, 'did you mean "response_format"?'),
        ({**RELAY, "kind": "xhuo", "retry_atempts": 2}, 'did you mean "retry_attempts"?'),
        (
            {"kind": "demo", "colour": "red"},
            '[providers.p] has no setting "colour" (kind demo takes no options)',
        ),
        (
            {"kind": "diffusers", "path": "/m", "stpes": 4},
            '[providers.p] has no setting "stpes"; did you mean "steps"?',
        ),
    ],
)
def test_an_unknown_option_names_the_table_and_the_nearest_option(
    tmp_path: Path, provider: dict[str, Any], message: str
) -> None:
    settings = load_settings(data_dir=tmp_path, providers={"p": provider})
    with pytest.raises(ConfigError) as caught:
        build_providers(settings)
    assert message in str(caught.value)
    assert isinstance(caught.value, StartupError)  # one line at the command line, no traceback


def test_an_unknown_kind_says_what_kinds_there_are(tmp_path: Path) -> None:
    with pytest.raises(StartupError) as caught:
        load_settings(data_dir=tmp_path, providers={"p": {"kind": "carrier-pigeon"}})
    text = str(caught.value)
    assert text.startswith("[providers.p] kind: must be apixo, kie, xhuo, openai, diffusers, demo")
    assert '(got "carrier-pigeon")' in text
