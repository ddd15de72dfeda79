"""The Webhooks page's test event reads a receiver's answer as callbacks do: its start only."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gengate.console.test_event import EXCERPT, send_test_event
from gengate.net.guard import AddressPolicy
from hostile_http import FILL, MIB, HostileServer, Reply, bomb_reply, endless_reply, traced_peak

PEAK_LIMIT = 16 * MIB
LOOPBACK = AddressPolicy.from_env_value("127.0.0.0/8")
REPLIES: dict[str, Callable[[], Reply]] = {
    "gzip-bomb-200": lambda: bomb_reply(200, "text/plain"),
    "plain-1.5GiB-500": lambda: endless_reply(500, content_type="text/plain"),
}


@pytest.mark.parametrize("name", list(REPLIES))
async def test_a_huge_answer_to_a_test_event_is_neither_read_nor_inflated(name: str) -> None:
    reply = REPLIES[name]()
    async with HostileServer(lambda method, path: reply) as receiver:
        with traced_peak() as peak:
            result = await send_test_event(
                receiver.base_url + "/hook", "whsec_" + "A" * 32, "key_1", LOOPBACK
            )
    assert result.status == reply.status, result
    assert result.detail == FILL.decode() * EXCERPT
    assert peak.bytes < PEAK_LIMIT, f"the test event held {peak.bytes / MIB:.0f} MiB at once"
    if reply.chunked:
        assert receiver.sent[0] < reply.size // 2, "the whole plain body was read"
