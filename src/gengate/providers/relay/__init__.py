"""Relays: providers that hand a task to a hosted service and copy its results back.

One module per concern (`upstream`: the configured service, its HTTP client and retries;
`follow`: following a task to its end; `mirror`: copying results; `errors`: upstream errors as
failCodes; `hooks`: upstream callbacks; `inputs`: what a relayed model accepts; `model`: what
every relay provider holds) and one per service (`apixo`, `kie`, `xhuo`, `openai`). A relay
module of one's own (docs/providers.md) imports what it needs from here.
"""

from gengate.providers.relay.errors import failure_for_request, failure_for_task, provider_fault
from gengate.providers.relay.follow import Submitted, TaskDialect, TaskRelay, until_canceled
from gengate.providers.relay.inputs import upstream_input
from gengate.providers.relay.model import UpstreamModel
from gengate.providers.relay.upstream import RelayOptions, Upstream

__all__ = [
    "RelayOptions",
    "Submitted",
    "TaskDialect",
    "TaskRelay",
    "Upstream",
    "UpstreamModel",
    "failure_for_request",
    "failure_for_task",
    "provider_fault",
    "until_canceled",
    "upstream_input",
]
