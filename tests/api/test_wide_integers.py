"""Integers in request bodies: any that does not fit in 64 bits is a `bad_request` naming the
field, wherever in the body it is; every one that fits is kept exactly (KIE echoes it in `param`).

JSON has no integer size; orjson reads one past 64 bits as a float, which silently stored
`1.8446744073709552e+19` for `2**64`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gengate.runtime import Gateway
from gengate.settings import Settings
from gengate.store.base import TaskQuery

CREATE = "/api/v1/jobs/createTask"
RECORD = "/api/v1/jobs/recordInfo"
ADMIN_KEY = "gga_test_admin_key"
LOWEST, HIGHEST = -(2**63), 2**64 - 1

Client = tuple[httpx.AsyncClient, str, Gateway]


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Client]:
    """A gateway without workers: what a submit stores stays as it was stored."""
    gateway = Gateway(settings.model_copy(update={"workers": 0}))
    async with gateway.running():
        _key, secret = await gateway.keys.create("wide")
        transport = httpx.ASGITransport(app=gateway.asgi())
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as http:
            yield http, secret, gateway


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}


async def task_count(gateway: Gateway, key: str) -> int:
    api_key = await gateway.keys.authenticate(f"Bearer {key}")
    return len(await gateway.store.list_tasks(api_key.id, TaskQuery(limit=1000)))


def assert_wide_refused(response: httpx.Response, path: str) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"]["code"] == "bad_request", body
    message = body["error"]["message"]
    assert message.startswith(f"{path}: "), message
    assert "64 bits" in message, message
    assert body["trace_id"] == response.headers["x-trace-id"]


# -- the reported cases, on every route that reads a body ----------------------------------------------
WIDE = [str(2**64), str(-(2**63) - 1), "1" + "0" * 30, "-1" + "0" * 30, "9" * 400, "1" + "0" * 5000]
#: Where each route's body holds the integer (`@`), and the field path the message must name.
BODIES = [
    (CREATE, '{"model": "demo-echo", "input": {"data": {"a": [1, @]}}}', "input.data.a[1]"),
    (CREATE, '{"model": "demo-echo", "input": {"data": 1}, "meta": @}', "meta"),
    (CREATE, '{"model": "demo-echo", "input": {"data": {"we ird": @}}}', 'input.data["we ird"]'),
    ("/api/v1/generateTask/demo-echo", '{"input": {"data": {"seed": @}}}', "input.data.seed"),
    ("/api/v1/generateTask/demo-image", '{"input": {"prompt": "x", "seed": @}}', "input.seed"),
    ("/api/v1/run/demo-echo", '{"data": [[@]]}', "data[0][0]"),
]


@pytest.mark.parametrize("text", WIDE, ids=lambda text: f"{text[:6]}..{len(text)}")
async def test_a_wide_integer_anywhere_is_refused_naming_the_field(client: Client, text: str) -> None:
    http, key, gateway = client
    for path, body, field in BODIES:
        response = await http.post(path, content=body.replace("@", text).encode(), headers=bearer(key))
        assert_wide_refused(response, field)
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    credits = '{"name": "k", "credits": @}'.replace("@", text).encode()
    assert_wide_refused(await http.post("/admin/v1/keys", content=credits, headers=admin), "credits")
    assert await task_count(gateway, key) == 0


async def test_integers_at_the_edges_of_64_bits_are_kept_exactly(client: Client) -> None:
    http, key, _gateway = client
    data = [LOWEST, HIGHEST, 2**63, 2**63 - 1, 2**53 + 1, -(2**53) - 1, 0]
    body = {"model": "demo-echo", "input": {"data": data}}
    response = await http.post(CREATE, content=json.dumps(body).encode(), headers=bearer(key))
    assert response.status_code == 200, response.text
    task_id = response.json()["data"]["taskId"]
    record = await http.get(RECORD, params={"taskId": task_id}, headers=bearer(key))
    assert json.loads(record.json()["data"]["param"]) == body


async def test_floats_past_64_bits_stay_floats(client: Client) -> None:
    """`1e19` and `1.5e30` are floats as written: only integers have a size limit."""
    http, key, _gateway = client
    raw = b'{"model": "demo-echo", "input": {"data": [1e19, 1.5e30, -9.3e18, 18446744073709551616.0]}}'
    response = await http.post(CREATE, content=raw, headers=bearer(key))
    assert response.status_code == 200, response.text
    task_id = response.json()["data"]["taskId"]
    record = await http.get(RECORD, params={"taskId": task_id}, headers=bearer(key))
    assert json.loads(record.json()["data"]["param"])["input"]["data"] == [1e19, 1.5e30, -9.3e18, 2.0**64]


# -- the property: anywhere, any wide integer ------------------------------------------------------------
NAMES = st.text(alphabet="abcdefgh", min_size=1, max_size=6)
IN_RANGE = st.integers(min_value=LOWEST, max_value=HIGHEST)
SCALARS = st.one_of(
    st.none(), st.booleans(), IN_RANGE, st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(NAMES, inner, max_size=4),
    max_leaves=12,
)
WIDE_INTEGERS = st.one_of(
    st.integers(min_value=HIGHEST + 1, max_value=10**40),
    st.integers(min_value=-(10**40), max_value=LOWEST - 1),
)


@st.composite
def with_one_wide(draw: st.DrawFn, depth: int = 0) -> tuple[Any, str]:
    """A JSON value holding exactly one wide integer, and the path to it (`.a[2].b`); the
    integer is at most 8 containers down, well within the body's nesting limit."""
    value: Any = draw(VALUES)
    wide = draw(WIDE_INTEGERS)
    deeper = depth < 8 and draw(st.booleans())
    if deeper and isinstance(value, dict) and value:
        name = draw(st.sampled_from(sorted(value)))
        inner, path = draw(with_one_wide(depth + 1))
        return {**value, name: inner}, f".{name}{path}"
    if deeper and isinstance(value, list) and value:
        index = draw(st.integers(0, len(value) - 1))
        inner, path = draw(with_one_wide(depth + 1))
        return [*value[:index], inner, *value[index + 1 :]], f"[{index}]{path}"
    return wide, ""


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=with_one_wide())
async def test_any_wide_integer_is_refused_and_nothing_stored(client: Client, case: tuple[Any, str]) -> None:
    http, key, gateway = client
    value, path = case
    before = await task_count(gateway, key)
    body = {"model": "demo-echo", "input": {"data": value}}
    response = await http.post(CREATE, content=json.dumps(body).encode(), headers=bearer(key))
    assert_wide_refused(response, f"input.data{path}")
    assert await task_count(gateway, key) == before


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=VALUES)
async def test_integers_that_fit_round_trip_exactly_into_param(client: Client, value: Any) -> None:
    http, key, _gateway = client
    body = {"model": "demo-echo", "input": {"data": value}}
    response = await http.post(CREATE, content=json.dumps(body).encode(), headers=bearer(key))
    assert response.status_code == 200, response.text
    task_id = response.json()["data"]["taskId"]
    record = await http.get(RECORD, params={"taskId": task_id}, headers=bearer(key))
    assert json.loads(record.json()["data"]["param"]) == body
