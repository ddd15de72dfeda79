"""`kind = "cog"` in the configuration: options checked at start, the model's input checked by its
servers' schema through the catalogue."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cog_servers import CogServer
from gengate.domain.errors import BadRequest
from gengate.providers.cog.provider import CogProvider
from gengate.providers.registry import ConfigError, build_catalogue, build_providers, close_providers
from gengate.settings import load_settings


def test_a_misspelt_option_is_named(tmp_path: Path) -> None:
    settings = load_settings(
        data_dir=tmp_path, providers={"mycog": {"kind": "cog", "urls": ["http://a:5000"], "slotz": 2}}
    )
    with pytest.raises(ConfigError, match=re.escape('has no setting "slotz"; did you mean "slots"?')):
        build_providers(settings)


def test_urls_are_required(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, providers={"mycog": {"kind": "cog"}})
    with pytest.raises(ConfigError, match="urls"):
        build_providers(settings)


async def test_the_catalogue_checks_input_with_the_servers_schema(
    tmp_path: Path, image_server: CogServer
) -> None:
    settings = load_settings(
        data_dir=tmp_path,
        providers={"mycog": {"kind": "cog", "urls": [image_server.url]}},
        models={"my-model": {"providers": ["mycog"]}},
    )
    providers = build_providers(settings)
    try:
        catalogue = build_catalogue(settings, providers)
        spec = catalogue.get("my-model")
        assert spec.modes == ("predict",)
        # Not known yet: passes through (and starts watching the servers, which learns it).
        assert catalogue.validate_input(spec, {"prompt": "x", "size": 1}).value == {
            "mode": "predict",
            "prompt": "x",
            "size": 1,
        }
        cog = next(link.provider for link in providers["mycog"].links)  # type: ignore[attr-defined]
        assert isinstance(cog, CogProvider)
        await cog.watch.started()
        assert catalogue.validate_input(spec, {"prompt": "x"}).value == {"mode": "predict", "prompt": "x"}
        with pytest.raises(BadRequest, match=re.escape("input.size: 1 is less than the minimum of 8")):
            catalogue.validate_input(spec, {"mode": "predict", "prompt": "x", "size": 1})
    finally:
        await close_providers(providers)
