"""`@route` and `RouteGroup`: routes declared beside their handlers, in an order Starlette can use."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from gengate.api.routing import RouteGroup, route


class Items(RouteGroup):
    @route("/items/{item_id}", "GET")
    async def item(self, request: Request) -> Response:
        return PlainTextResponse("item " + request.path_params["item_id"])

    @route("/items", "GET")
    @route("/items/", "GET")
    async def listing(self, _request: Request) -> Response:
        return PlainTextResponse("listing")

    @route("/items/rows", "GET", "POST")
    async def rows(self, _request: Request) -> Response:
        return PlainTextResponse("rows")

    async def unmarked(self, _request: Request) -> Response:
        return PlainTextResponse("never routed")


class MoreItems(Items):
    @route("/items/{item_id}/more", "POST")
    async def more(self, _request: Request) -> Response:
        return PlainTextResponse("more")


def table(group: RouteGroup) -> list[tuple[str, list[str], str]]:
    built = group.routes()
    assert all(isinstance(r, Route) for r in built)
    return [(r.path, sorted(r.methods or ()), r.name) for r in built if isinstance(r, Route)]


def test_static_paths_come_first_else_definition_order_and_stacked_marks_read_top_down() -> None:
    assert table(Items()) == [
        ("/items", ["GET", "HEAD"], "listing"),
        ("/items/", ["GET", "HEAD"], "listing"),
        ("/items/rows", ["GET", "HEAD", "POST"], "rows"),
        ("/items/{item_id}", ["GET", "HEAD"], "item"),
    ]


def test_a_subclass_adds_its_routes_after_its_bases() -> None:
    assert [path for path, _, _ in table(MoreItems())][-2:] == ["/items/{item_id}", "/items/{item_id}/more"]


def test_the_static_path_wins_over_the_template_it_also_matches() -> None:
    with TestClient(Starlette(routes=Items().routes())) as client:
        assert client.get("/items/rows").text == "rows"
        assert client.get("/items/7").text == "item 7"
        assert client.get("/items/").text == "listing"


class Wrapped(RouteGroup):
    def endpoint(self, handler: Any, **options: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            response: Response = await handler(request)
            response.headers["x-tag"] = options["tag"]
            return response

        return endpoint

    @route("/tagged", "GET", tag="yes")
    async def tagged(self, _request: Request) -> Response:
        return PlainTextResponse("tagged")


def test_a_group_wraps_its_handlers_with_the_route_options() -> None:
    with TestClient(Starlette(routes=Wrapped().routes())) as client:
        assert client.get("/tagged").headers["x-tag"] == "yes"


def test_options_a_group_does_not_take_are_refused() -> None:
    class Typo(RouteGroup):
        @route("/x", "GET", admn=True)
        async def x(self, _request: Request) -> Response:
            return PlainTextResponse("x")

    with pytest.raises(TypeError, match="admn"):
        Typo().routes()
