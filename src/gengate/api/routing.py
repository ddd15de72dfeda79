"""Routes declared beside their handlers.

`@route(path, *methods, **options)` marks a handler method (stack it to serve more than one
path); `RouteGroup.routes()` builds the Starlette routes of every marked method of the class
and its bases, in definition order, static paths before templated ones, so `/x/rows` is never
taken for `/x/{id}`. A group turns a handler into an endpoint in `endpoint`, which sees the
route's options: the console's pages wrap it in their session guard there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from starlette.routing import BaseRoute, Route

from gengate.api.context import ApiContext

F = TypeVar("F", bound=Callable[..., Any])

_MARKS = "__gengate_routes__"


@dataclass(frozen=True, slots=True)
class RouteMark:
    path: str
    methods: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)


def route(path: str, *methods: str, **options: Any) -> Callable[[F], F]:
    """Mark a handler method as serving `path` for `methods` (GET when none is named)."""

    def mark(handler: F) -> F:
        # Decorators apply bottom-up: put this mark first so the marks read top-down.
        marks = [RouteMark(path, methods or ("GET",), options), *getattr(handler, _MARKS, ())]
        setattr(handler, _MARKS, marks)
        return handler

    return mark


class RouteGroup:
    """Routes of one concern; subclasses mark their handlers with :func:`route`."""

    def endpoint(self, handler: Callable[..., Any], **options: Any) -> Callable[..., Any]:
        """What the router calls for `handler`; the plain handler unless a group wraps it."""
        if options:
            raise TypeError(f"{type(self).__name__} takes no route options: {sorted(options)}")
        return handler

    def routes(self) -> list[BaseRoute]:
        marked: dict[str, list[RouteMark]] = {}
        for cls in reversed(type(self).__mro__):
            for name, value in vars(cls).items():
                if name in marked or hasattr(value, _MARKS):
                    marked[name] = list(getattr(value, _MARKS, ()))
        marks = [(name, mark) for name, group in marked.items() for mark in group]
        # Starlette takes the first route that matches: a static path goes before a templated one.
        marks.sort(key=lambda entry: "{" in entry[1].path)
        return [
            Route(mark.path, self.endpoint(getattr(self, name), **mark.options), methods=list(mark.methods))
            for name, mark in marks
        ]


class ApiRoutes(RouteGroup):
    """A group of API routes over the shared :class:`ApiContext`."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
