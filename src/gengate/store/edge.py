"""The edge of a store: its driver's "cannot answer now" errors become `unavailable` (503)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from gengate.domain.errors import Unavailable

P = ParamSpec("P")
R = TypeVar("R")


def unavailable_on(
    *errors: type[BaseException],
) -> Callable[[Callable[P, Coroutine[Any, Any, R]]], Callable[P, Coroutine[Any, Any, R]]]:
    """A decorator mapping `errors` raised by a store method to `unavailable`, once, here."""

    def decorate(fn: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
        @wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return await fn(*args, **kwargs)
            except errors as exc:
                raise Unavailable("The task store is unavailable.", retry_after_s=1) from exc

        return wrapper

    return decorate
