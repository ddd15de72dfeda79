"""From configuration to the catalogue: which providers exist and which models they serve.

`[providers.<name>]` entries are built by kind: the relays (one module per dialect, or a
module of one's own named by its import path), local diffusers pipelines (an optional extra,
imported only when configured) and named demo providers. A model's `providers` list becomes
one :class:`FallbackProvider`, kept under the chain's key (`ModelConfig.provider`, e.g.
`apixo:flux-2,kie:flux-2-pro`), so the worker runs it like any provider. A model naming one
built-in demo provider runs it directly.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping

import msgspec

from gengate.domain.catalogue import Catalogue, InputCheck, ModelSpec
from gengate.providers.base import Provider
from gengate.providers.breaker import Breakers
from gengate.providers.cog.provider import CogOptions, build_cog
from gengate.providers.comfyui.provider import ComfyOptions, ComfyPool, build_comfyui
from gengate.providers.demo import demo_providers
from gengate.providers.fallback import FallbackProvider, Link
from gengate.providers.relay import apixo, kie, openai, xhuo
from gengate.providers.relay.hooks import UpstreamHooks
from gengate.providers.relay.upstream import RelayOptions, Upstream, parse_options
from gengate.settings import ModelConfig, ProviderConfig, Settings
from gengate.startup import StartupError, did_you_mean

#: Makes a configured provider's link for one upstream model id (None: the model's own id).
LinkFactory = Callable[[str | None], Provider]

#: Relay kinds: how to link a model, and the options the kind takes.
RELAYS: dict[str, tuple[Callable[[Upstream, str | None], Provider], type[RelayOptions]]] = {
    "apixo": (apixo.link, RelayOptions),
    "kie": (kie.link, RelayOptions),
    "xhuo": (xhuo.link, xhuo.XhuoOptions),
    "openai": (openai.link, openai.OpenAIOptions),
}

DEMO_MODELS: dict[str, ModelConfig] = {
    "demo-image": ModelConfig(provider="demo-image", timeout_s=120.0),
    "demo-echo": ModelConfig(provider="demo-echo", timeout_s=30.0, concurrency=64),
}


class ConfigError(StartupError, ValueError):
    """The configuration names something that does not exist."""


def model_configs(settings: Settings) -> dict[str, ModelConfig]:
    """Every model: the demo models (unless turned off), then the configured ones."""
    return {**(DEMO_MODELS if settings.demo_models else {}), **settings.models}


def build_providers(settings: Settings, hooks: UpstreamHooks | None = None) -> dict[str, Provider]:
    """The built-in demo providers, and one chain per distinct provider list of the models.

    `hooks` lets relays ask upstreams for callbacks; without it they poll only.
    """
    builtins = demo_providers()
    #: A ComfyPool makes its links per model, from the model's own `workflow` and `bind`.
    factories: dict[str, LinkFactory | ComfyPool] = {}
    breakers = Breakers()
    for name, config in settings.providers.items():
        if ":" in name or "," in name:
            raise ConfigError(f"provider {name!r}: a provider name has no ':' or ','")
        if name in builtins:
            raise ConfigError(f"provider {name!r}: the name of a built-in provider; choose another")
        try:
            factories[name] = _factory(name, config, builtins, hooks)
        except ConfigError:
            raise
        except ValueError as exc:
            raise ConfigError(f"provider {name!r}: {exc}") from None
        breakers.add(name, config.breaker_failures, config.breaker_reset_s)
    providers: dict[str, Provider] = dict(builtins)
    for model_id, model in model_configs(settings).items():
        comfy = any(isinstance(factories.get(ref.partition(":")[0]), ComfyPool) for ref in model.providers)
        if (model.workflow or model.bind) and not comfy:
            raise ConfigError(f"model {model_id!r}: `workflow` and `bind` are for comfyui providers")
        key = chain_key(model_id, model)
        if key in providers:  # a built-in demo provider, or a chain already built
            continue
        links = [_link(model_id, model, ref, factories, builtins) for ref in model.providers]
        try:
            providers[key] = FallbackProvider(links, breakers)
        except ValueError as exc:
            raise ConfigError(f"model {model_id!r}: {exc}") from None
    return providers


def chain_key(model_id: str, model: ModelConfig) -> str:
    """The key of a model's provider: its chain (`apixo:flux-2,kie:flux-2-pro`), shared by the
    models that have the same; a model with a workflow of its own has its own (`comfy#sdxl`)."""
    return f"{model.provider}#{model_id}" if model.workflow is not None else model.provider


async def close_providers(providers: Mapping[str, Provider]) -> None:
    """Release what the chains hold (the relays' connection pools)."""
    for provider in providers.values():
        if isinstance(provider, FallbackProvider):
            await provider.aclose()


def _link(
    model_id: str,
    model: ModelConfig,
    ref: str,
    factories: Mapping[str, LinkFactory | ComfyPool],
    builtins: Mapping[str, Provider],
) -> Link:
    name, colon, upstream_model = ref.partition(":")
    factory = factories.get(name)
    if factory is not None:
        try:
            if isinstance(factory, ComfyPool):
                if upstream_model:
                    raise ValueError("this kind takes no upstream model id; the model's `workflow` runs")
                return Link(name, ref, factory.link(model.workflow, model.bind, model.modes))
            return Link(name, ref, factory(upstream_model or None))
        except ValueError as exc:
            raise ConfigError(f"model {model_id!r}: provider {ref!r}: {exc}") from None
    if name in builtins and not colon:
        return Link(name, ref, builtins[name])
    known = sorted({*factories, *builtins})
    raise ConfigError(f"model {model_id!r}: unknown provider {name!r}; known: {', '.join(known)}")


def _factory(
    name: str, config: ProviderConfig, builtins: Mapping[str, Provider], hooks: UpstreamHooks | None
) -> LinkFactory | ComfyPool:
    if config.kind == "diffusers":
        return _fixed(_diffusers(name, config))
    if config.kind == "comfyui":
        return _comfyui(name, config)
    if config.kind == "cog":
        return _fixed(_cog(name, config, hooks))
    if config.kind != "demo":
        link, options_type = RELAYS.get(config.kind) or _relay_module(config.kind)
        _check_options(name, config, options_type)
        upstream = _upstream(name, config, options_type, hooks)
        return lambda model: link(upstream, model)
    _check_options(name, config, None)
    return lambda model: _demo(builtins, model)


def _check_options(name: str, config: ProviderConfig, options_type: type[msgspec.Struct] | None) -> None:
    """Every key of `[providers.<name>]` is a common setting or an option of its kind."""
    known = options_type.__struct_fields__ if options_type is not None else ()
    for key in config.options:
        if key not in known:
            near = did_you_mean(key, [*ProviderConfig.model_fields, *known])
            of_kind = "" if known else f" (kind {config.kind} takes no options)"
            raise ConfigError(f'[providers.{name}] has no setting "{key}"{near}{of_kind}')


def _relay_module(path: str) -> tuple[Callable[[Upstream, str | None], Provider], type[RelayOptions]]:
    """A relay of one's own: a module with `link(upstream, model)` and, optionally, `Options`
    (a :class:`RelayOptions` subclass for options of its own)."""
    try:
        module = importlib.import_module(path)
    except ImportError as exc:
        raise ValueError(f"cannot import provider module {path!r}: {exc}") from None
    link = getattr(module, "link", None)
    options_type = getattr(module, "Options", RelayOptions)
    if not callable(link):
        raise ValueError(f"module {path!r} has no `link(upstream, model)` function")
    if not (isinstance(options_type, type) and issubclass(options_type, RelayOptions)):
        raise ValueError(f"`{path}.Options` is not a RelayOptions subclass")
    return link, options_type


def _upstream(
    name: str, config: ProviderConfig, options_type: type[RelayOptions], hooks: UpstreamHooks | None
) -> Upstream:
    if not config.base_url:
        raise ValueError(f"kind {config.kind} needs `base_url`")
    api_key = _api_key(config) if config.api_key_env else None
    return Upstream(
        name,
        base_url=config.base_url,
        api_key=api_key,
        timeout_s=config.timeout_s,
        options=parse_options(config.options, options_type),
        hooks=hooks,
    )


def _api_key(config: ProviderConfig) -> str:
    api_key = os.environ.get(config.api_key_env or "")
    if not api_key:
        raise ValueError(f"the environment variable {config.api_key_env} (its `api_key_env`) is not set")
    return api_key


def _diffusers(name: str, config: ProviderConfig) -> Provider:
    """The local pipeline provider; its module (and the extra behind it) loads only when configured."""
    try:
        from gengate.providers.diffusers_local import (  # noqa: PLC0415 - optional extra
            DiffusersOptions,
            build_diffusers,
        )
    except ImportError as exc:
        raise ConfigError(
            f"provider {name!r} (kind diffusers) needs the diffusers extra: "
            f"pip install 'gengate[diffusers]' ({exc})"
        ) from exc
    _check_options(name, config, DiffusersOptions)
    return build_diffusers(name, config.options)


def _comfyui(name: str, config: ProviderConfig) -> ComfyPool:
    """A pool of ComfyUI servers; each model's link is its workflow on them (`ComfyPool.link`)."""
    _check_options(name, config, ComfyOptions)
    api_key = _api_key(config) if config.api_key_env else None
    return build_comfyui(
        name,
        config.options,
        timeout_s=config.timeout_s,
        breaker_failures=config.breaker_failures,
        breaker_reset_s=config.breaker_reset_s,
        api_key=api_key,
    )


def _cog(name: str, config: ProviderConfig, hooks: UpstreamHooks | None) -> Provider:
    """A pool of cog servers running one model; `hooks` brings their logs while a run goes on."""
    _check_options(name, config, CogOptions)
    return build_cog(
        name,
        config.options,
        timeout_s=config.timeout_s,
        breaker_failures=config.breaker_failures,
        breaker_reset_s=config.breaker_reset_s,
        hooks=hooks,
    )


def _fixed(provider: Provider) -> LinkFactory:
    def link(model: str | None) -> Provider:
        if model is not None:
            raise ValueError("this kind takes no upstream model id")
        return provider

    return link


def _demo(builtins: Mapping[str, Provider], model: str | None) -> Provider:
    """A named demo provider: `<name>:demo-echo` picks the built-in, `demo-image` by default."""
    builtin = model or "demo-image"
    if builtin not in builtins:
        raise ValueError(f"no demo provider {builtin!r}; known: {', '.join(sorted(builtins))}")
    return builtins[builtin]


def _input_checks(provider: Provider) -> Mapping[str, InputCheck]:
    """The run-time input checks of a provider (a chain's are its first link's): a cog model's."""
    first = provider.links[0].provider if isinstance(provider, FallbackProvider) else provider
    checks: Mapping[str, InputCheck] = getattr(first, "input_checks", {})
    return checks


def build_catalogue(settings: Settings, providers: Mapping[str, Provider]) -> Catalogue:
    specs: dict[str, ModelSpec] = {}
    for model_id, config in model_configs(settings).items():
        key = chain_key(model_id, config)
        provider = providers.get(key)
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
        checks = _input_checks(provider)
        specs[model_id] = ModelSpec(
            id=model_id,
            inputs={mode: provider.inputs[mode] for mode in modes},
            input_checks={mode: checks[mode] for mode in modes if mode in checks},
            provider=key,
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
