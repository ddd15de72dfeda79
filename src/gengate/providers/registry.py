"""From configuration to the catalogue: which providers exist and which models they serve."""

from __future__ import annotations

from collections.abc import Mapping

from gengate.domain.catalogue import Catalogue, ModelSpec
from gengate.providers.base import Provider
from gengate.providers.demo import demo_providers
from gengate.settings import ModelConfig, Settings

DEMO_MODELS: dict[str, ModelConfig] = {
    "demo-image": ModelConfig(provider="demo-image", timeout_s=120.0),
    "demo-echo": ModelConfig(provider="demo-echo", timeout_s=30.0, concurrency=64),
}


class ConfigError(ValueError):
    """The configuration names something that does not exist."""


def build_providers(_settings: Settings) -> dict[str, Provider]:
    return dict(demo_providers())


def build_catalogue(settings: Settings, providers: Mapping[str, Provider]) -> Catalogue:
    configs = {**(DEMO_MODELS if settings.demo_models else {}), **settings.models}
    specs: dict[str, ModelSpec] = {}
    for model_id, config in configs.items():
        provider = providers.get(config.provider)
        if provider is None:
            raise ConfigError(
                f"model {model_id!r}: unknown provider {config.provider!r}; "
                f"known: {', '.join(sorted(providers))}"
            )
        modes = config.modes or list(provider.inputs)
        unknown = [mode for mode in modes if mode not in provider.inputs]
        if unknown:
            raise ConfigError(
                f"model {model_id!r}: provider {config.provider!r} has no mode {', '.join(unknown)}"
            )
        specs[model_id] = ModelSpec(
            id=model_id,
            inputs={mode: provider.inputs[mode] for mode in modes},
            provider=config.provider,
            price=config.price,
            timeout_s=config.timeout_s,
            concurrency=config.concurrency,
            max_attempts=config.max_attempts,
            max_running=config.max_running,
            retry_backoff_s=config.retry_backoff_s,
            max_queue=config.max_queue,
            options=config.options,
        )
    return Catalogue(specs)
