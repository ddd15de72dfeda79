"""What every relay provider holds, whatever its service speaks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from gengate.providers.relay.upstream import Upstream


class UpstreamModel:
    """One upstream model as a provider: `upstream`, whose modes are its `inputs` and whose
    client closes with it, and `model`, the upstream's model id (None: the gateway's own)."""

    def __init__(self, upstream: Upstream, model: str | None) -> None:
        self.upstream = upstream
        self.model = model
        self.inputs: Mapping[str, type[msgspec.Struct]] = upstream.inputs

    async def aclose(self) -> None:
        await self.upstream.aclose()
