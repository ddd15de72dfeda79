"""Configuring relays and chains: `[providers.*]`, `providers = [...]`, the registry's checks,
and the pure parts (error mapping, callback tokens, relayed input)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pydantic
import pytest

from gengate.domain.errors import BadRequest
from gengate.providers.fallback import FallbackProvider
from gengate.providers.registry import ConfigError, build_catalogue, build_providers
from gengate.providers.relay.errors import failure_for_request, failure_for_task
from gengate.providers.relay.hooks import UpstreamHooks
from gengate.providers.relay.inputs import upstream_input
from gengate.settings import ModelConfig, Settings, load_settings
from gengate.startup import StartupError
from gengate.wire import APIError

TOML = """
[models.flux-2]
modes = ["text-to-image"]
price = 4
providers = ["apixo:flux-2", "kie:flux-2-pro"]

[providers.apixo]
kind = "apixo"
base_url = "https://api.apixo.example"
api_key_env = "RELAY_CONFIG_KEY"
poll_initial_s = 5

[providers.kie]
kind = "kie"
base_url = "https://kie.example"
"""


def _settings(tmp_path: Path, **fields: Any) -> Settings:
    return load_settings(data_dir=tmp_path / "data", admin_key="adm", **fields)


def test_the_issue_example_loads_into_one_chain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_CONFIG_KEY", "secret")
    config = tmp_path / "gengate.toml"
    config.write_text(TOML)
    settings = load_settings(config, data_dir=tmp_path / "data")
    model = settings.models["flux-2"]
    assert model.provider == "apixo:flux-2,kie:flux-2-pro"
    assert settings.providers["apixo"].options == {"poll_initial_s": 5}
    providers = build_providers(settings)
    chain = providers["apixo:flux-2,kie:flux-2-pro"]
    assert isinstance(chain, FallbackProvider)
    assert [(link.name, link.ref) for link in chain.links] == [
        ("apixo", "apixo:flux-2"),
        ("kie", "kie:flux-2-pro"),
    ]
    spec = build_catalogue(settings, providers).get("flux-2")
    assert (spec.modes, spec.price, spec.provider) == (("text-to-image",), 4, model.provider)
    assert build_catalogue(settings, providers).get("demo-image").provider == "demo-image"


def test_provider_and_providers_are_one_field() -> None:
    assert ModelConfig(provider="demo-echo").providers == ["demo-echo"]
    assert ModelConfig(providers=["a:x", "b"]).provider == "a:x,b"
    assert ModelConfig(provider="a:x,b", providers=["a:x", "b"]).provider == "a:x,b"
    for bad in ({}, {"provider": "a", "providers": ["b"]}, {"providers": ["a b"]}, {"providers": [""]}):
        with pytest.raises(pydantic.ValidationError):
            ModelConfig(**bad)


def test_a_key_is_never_written_in_the_config(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match="api_key_env"):
        _settings(tmp_path, providers={"x": {"kind": "apixo", "base_url": "http://x", "api_key": "sk"}})
    with pytest.raises(StartupError, match="kind"):
        _settings(tmp_path, providers={"x": {"kind": "carrier-pigeon"}})


@pytest.mark.parametrize(
    ("providers", "models", "message"),
    [
        ({}, {"m": {"providers": ["nowhere:x"]}}, "unknown provider 'nowhere'"),
        ({"r": {"kind": "apixo"}}, {}, "needs `base_url`"),
        ({"r": {"kind": "kie", "base_url": "http://x", "api_key_env": "RELAY_UNSET"}}, {}, "RELAY_UNSET"),
        ({"r": {"kind": "apixo", "base_url": "http://x", "pol_initial_s": 1}}, {}, "pol_initial_s"),
        ({"r": {"kind": "apixo", "base_url": "http://x", "modes": ["sing"]}}, {}, "sing"),
        ({"demo-image": {"kind": "demo"}}, {}, "built-in"),
        ({"d": {"kind": "demo"}}, {"m": {"providers": ["d:no-such-demo"]}}, "no-such-demo"),
        ({"d": {"kind": "demo", "colour": "red"}}, {}, "colour"),
    ],
)
def test_configuration_mistakes_are_named(
    tmp_path: Path, providers: dict[str, Any], models: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        build_providers(_settings(tmp_path, providers=providers, models=models))


def test_a_diffusers_provider_without_its_module_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "gengate.providers.diffusers_local", None)  # import fails
    settings = _settings(tmp_path, providers={"local-sdxl": {"kind": "diffusers", "path": "/models/sdxl"}})
    with pytest.raises(ConfigError, match=r"gengate\[diffusers\]"):
        build_providers(settings)


def test_chains_check_their_modes(tmp_path: Path) -> None:
    providers = {"r": {"kind": "apixo", "base_url": "http://x", "modes": ["text-to-video"]}}
    models = {"m": {"providers": ["r", "demo-image"]}}
    with pytest.raises(ConfigError, match="share no mode"):
        build_providers(_settings(tmp_path, providers=providers, models=models))


def test_relayed_input_is_checked_and_passed_on_as_given(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path,
        providers={"r": {"kind": "apixo", "base_url": "http://x"}},
        models={"m": {"providers": ["r:up-model"], "modes": ["text-to-image", "image-to-image"]}},
    )
    catalogue = build_catalogue(settings, build_providers(settings))
    spec = catalogue.get("m")
    valid = catalogue.validate_input(
        spec, {"mode": "text-to-image", "prompt": "x", "aspect_ratio": "16:9", "params": {"style_id": 7}}
    )
    assert valid.value == {
        "mode": "text-to-image",
        "prompt": "x",
        "aspect_ratio": "16:9",
        "params": {"style_id": 7},
    }
    assert upstream_input(valid.value, valid.mode) == {
        "mode": "text-to-image",
        "prompt": "x",
        "aspect_ratio": "16:9",
        "style_id": 7,
    }
    with pytest.raises(BadRequest, match="colour"):
        catalogue.validate_input(spec, {"mode": "text-to-image", "prompt": "x", "colour": "red"})
    with pytest.raises(BadRequest, match="prompt"):
        catalogue.validate_input(spec, {"mode": "text-to-image"})


@pytest.mark.parametrize(
    ("status", "code", "message", "fail_code", "transient"),
    [
        (400, "bad_request", "width must be even", "INVALID_INPUT", False),
        (400, "no_token", "missing header", "PROVIDER_ERROR", True),
        (401, "invalid_token", "bad key", "PROVIDER_ERROR", True),
        (403, "forbidden", "moderation", "CONTENT_VIOLATION", False),
        (403, "used_up", "no credits", "PROVIDER_ERROR", True),
        (404, "model_not_found", "no such model", "PROVIDER_ERROR", True),
        (413, "http_413", "too big", "INVALID_INPUT", False),
        (422, "http_422", "unprocessable", "INVALID_INPUT", False),
        (400, "http_400", "violates our content policy", "CONTENT_VIOLATION", False),
        (429, "too_many_requests", "slow down", "PROVIDER_ERROR", True),
        (500, "api_error", "boom", "PROVIDER_ERROR", True),
        (504, "timeout", "too slow", "TIMEOUT", True),
    ],
)
def test_request_errors_map_by_whose_fault_they_are(
    status: int, code: str, message: str, fail_code: str, transient: bool
) -> None:
    failure = failure_for_request(APIError(status, code, message))
    assert (failure.fail_code, failure.transient) == (fail_code, transient)
    assert message in failure.message


@pytest.mark.parametrize(
    ("code", "fail_code", "transient"),
    [
        ("CONTENT_VIOLATION", "CONTENT_VIOLATION", False),
        ("INVALID_INPUT", "INVALID_INPUT", False),
        ("TIMEOUT", "TIMEOUT", True),
        ("CANCELED", "PROVIDER_ERROR", True),
        ("WORKER_LOST", "PROVIDER_ERROR", True),
        ("400", "INVALID_INPUT", False),
        ("500", "PROVIDER_ERROR", True),
        ("forbidden", "CONTENT_VIOLATION", False),
        (None, "PROVIDER_ERROR", True),
        ("SOMETHING_NEW", "PROVIDER_ERROR", True),
    ],
)
def test_task_failures_map_by_whose_fault_they_are(code: str | None, fail_code: str, transient: bool) -> None:
    failure = failure_for_task(code, "it went wrong")
    assert (failure.fail_code, failure.transient) == (fail_code, transient)
    assert "it went wrong" in failure.message


def test_callback_tokens_are_signed() -> None:
    hooks = UpstreamHooks(b"secret", "https://gateway.example/")
    other = UpstreamHooks(b"another secret", "https://gateway.example")
    with hooks.waiter() as waiter:
        assert waiter is not None
        assert waiter.url.startswith("https://gateway.example/hooks/upstream/")
        token = waiter.url.rsplit("/", 1)[1]
        assert not other.deliver(token)
        assert not hooks.deliver(token.split(".")[0] + ".forged")
        assert not waiter.wake.is_set()
        assert hooks.deliver(token)
        assert waiter.wake.is_set()
    assert hooks.deliver(token)  # still ours, though no one waits any more
    with UpstreamHooks(b"secret", None).waiter() as none:
        assert none is None


def test_a_provider_can_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENGATE_PROVIDERS__UP__KIND", "kie")
    monkeypatch.setenv("GENGATE_PROVIDERS__UP__BASE_URL", "http://upstream.example")
    monkeypatch.setenv("GENGATE_PROVIDERS__UP__POLL_INITIAL_S", "0.5")
    monkeypatch.setenv("GENGATE_MODELS__FOX__PROVIDERS", '["up:fox-2"]')
    settings = _settings(tmp_path)
    chain = build_providers(settings)["up:fox-2"]
    assert isinstance(chain, FallbackProvider)
    [link] = chain.links
    assert link.provider.upstream.options.poll_initial_s == 0.5  # type: ignore[attr-defined]
