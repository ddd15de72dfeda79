"""A model's providers tried in order, as one provider, so the worker knows nothing of it.

A failure that is not the client's fault (transient: an upstream 5xx, timeout, outage, refused
credentials; or an unexpected error) moves on to the next provider; a failure that is the
client's fault (bad input, content violation) ends the task at once, since no other provider
would do better. A provider whose circuit is open is skipped without a try. When every provider
has failed, the last failure is the task's, and being transient it lets the worker try the
whole chain again later (the model's `max_attempts`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from gengate.domain.catalogue import ModelSpec
from gengate.domain.files import OutputFile
from gengate.domain.states import FailCode
from gengate.providers.base import Closable, Provider, ProviderFailure, RunContext
from gengate.providers.breaker import Breakers, CircuitOpen, CircuitState

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class Link:
    """One provider of a chain. Fields: `name` (the provider's name, which its breaker bears),
    `ref` (as the model writes it: `apixo:flux-2`), `provider`."""

    name: str
    ref: str
    provider: Provider


def _subfolder(parent: Path, index: int) -> Path:
    path = parent / f"p{index}"
    path.mkdir(exist_ok=True)
    return path


class FallbackProvider:
    """The links of one model's chain; each link's breaker (if it has one) is in `breakers`."""

    def __init__(self, links: Sequence[Link], breakers: Breakers) -> None:
        if not links:
            raise ValueError("a provider chain needs at least one provider")
        self.links = tuple(links)
        self.breakers = breakers
        first = links[0].provider.inputs
        common = [mode for mode in first if all(mode in link.provider.inputs for link in links)]
        if not common:
            raise ValueError(f"providers {', '.join(link.ref for link in links)} share no mode")
        #: Input is checked against the first provider's schema; later ones get the same input.
        self.inputs: Mapping[str, type[msgspec.Struct]] = {mode: first[mode] for mode in common}

    def _guard(self, link: Link) -> contextlib.AbstractAsyncContextManager[None]:
        return self.breakers.guard(link.name) if link.name in self.breakers else contextlib.nullcontext()

    async def run(self, input: dict[str, Any], ctx: RunContext) -> Sequence[OutputFile]:
        last: Exception | None = None
        for index, link in enumerate(self.links):
            if ctx.cancel.is_set():
                raise ProviderFailure(FailCode.CANCELED, "Task canceled.")
            # Each provider writes into its own folder, so a half-done one leaves nothing in the way.
            output_dir = await asyncio.to_thread(_subfolder, ctx.output_dir, index)
            try:
                async with self._guard(link):
                    return await link.provider.run(input, dataclasses.replace(ctx, output_dir=output_dir))
            except CircuitOpen:
                log.info("task %s: provider %s skipped, its circuit is open", ctx.task_id, link.name)
                last = last or ProviderFailure(
                    FailCode.PROVIDER_ERROR,
                    "No provider of this model is available right now; try again later.",
                    transient=True,
                )
            except ProviderFailure as failure:
                if not failure.transient or ctx.cancel.is_set():
                    raise
                log.warning(
                    "task %s: provider %s failed (%s: %s)",
                    ctx.task_id,
                    link.ref,
                    failure.fail_code,
                    failure.message,
                )
                last = failure
            except Exception as exc:
                log.exception("task %s: provider %s failed unexpectedly", ctx.task_id, link.ref)
                last = exc
        assert last is not None
        raise last

    async def aclose(self) -> None:
        for link in self.links:
            if isinstance(link.provider, Closable):
                await link.provider.aclose()

    def circuits(self) -> dict[str, CircuitState]:
        """Each provider of the chain and its circuit (a provider without a breaker is closed)."""
        return {
            link.name: self.breakers.state(link.name) if link.name in self.breakers else "closed"
            for link in self.links
        }


def circuit_states(providers: Mapping[str, Provider]) -> dict[str, CircuitState]:
    """The circuit of every guarded provider any chain uses, by provider name."""
    states: dict[str, CircuitState] = {}
    for provider in providers.values():
        if isinstance(provider, FallbackProvider):
            states |= provider.breakers.states()
    return states


def model_circuits(
    specs: Iterable[ModelSpec], providers: Mapping[str, Provider]
) -> dict[str, dict[str, str]]:
    """Per model that runs through a chain: its providers and their circuits."""
    found: dict[str, dict[str, str]] = {}
    for spec in specs:
        provider = providers.get(spec.provider)
        if isinstance(provider, FallbackProvider):
            found[spec.id] = dict(provider.circuits())
    return found
