"""Named queries: `-- name:` blocks of `.sql` files, read once at import, compiled per driver.

The SQL both backends share is in `queries.sql` beside this module; each driver's own
statements are in its package's `queries.sql`, and win over a shared one of the same name. A
query is written with `:name` parameters; they become numbered in order of first use, `$1..$n`
for asyncpg and `?1..?n` for sqlite3 (:attr:`Query.names` says which is which), and both bind a
list made from the parameters by name. sqlite3 binding by name makes a string and a lookup per
parameter: the 27 of an insert_task took 13 us to bind by name, 4 us by position.
Braces name column lists and state moves; a move the transition table of
:mod:`gengate.domain.states` forbids fails here, at import, not in production.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from importlib import resources
from typing import Any, Literal

import msgspec

from gengate.domain.states import TaskState, can_transition

Driver = Literal["sqlite", "postgres"]

TASK_COLUMNS = (
    "id", "key_id", "model", "mode", "state", "input", "request", "request_type", "callback_url", "priority",
    "create_time", "start_time", "complete_time", "cost_time", "progress", "files", "fail_code", "fail_msg",
    "attempts", "lease_owner", "lease_expires", "trace_id", "dialect", "upstream", "charge", "output",
)  # fmt: skip
KEY_COLUMNS = (
    "id", "name", "key_hash", "prefix", "disabled", "expires_at", "models", "created_at",
    "webhook_secret_version", "credits", "rate_limit", "max_concurrent",
)  # fmt: skip
DELIVERY_COLUMNS = (
    "id", "task_id", "key_id", "url", "dialect", "state", "attempts", "round_start", "next_attempt_at",
    "created_at", "completed_at",
)  # fmt: skip
LEDGER_COLUMNS = ("id", "key_id", "kind", "amount", "balance", "task_id", "created_at")

_BRACES = {
    "task_columns": ", ".join(TASK_COLUMNS),
    "t.task_columns": ", ".join(f"t.{column}" for column in TASK_COLUMNS),
    "task_params": ", ".join(f":{column}" for column in TASK_COLUMNS),
    "key_columns": ", ".join(KEY_COLUMNS),
    "key_params": ", ".join(f":{column}" for column in KEY_COLUMNS),
    "delivery_columns": ", ".join(DELIVERY_COLUMNS),
    "ledger_columns": ", ".join(LEDGER_COLUMNS),
}
_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)
_BRACE = re.compile(r"\{(\{?)([^{}]+)\}(\}?)")
_MOVE = re.compile(r"from ([\w,]+) to (\w+)")
#: `:name`, not the `::type` of a cast nor a colon inside a word.
_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


class InvalidQueryError(ValueError):
    """A `.sql` file names an unknown brace, or a state move the transition table forbids."""


class Query(msgspec.Struct, frozen=True):
    """One compiled statement. Fields: `name`, `sql` (in the driver's placeholders), `names`
    (the parameter of each `$n` or `?n`, in order), `moves` (the (from, to) state moves it
    makes, from its `{from A to B}` braces)."""

    name: str
    sql: str
    driver: Driver
    source: str
    names: tuple[str, ...] = ()
    moves: tuple[tuple[TaskState, TaskState], ...] = ()

    def filled(self, **parts: str) -> Query:
        """The query with its run-time `{part}`s (written with `:name` parameters) filled in."""
        return _compile(self.name, self.source.format(**parts), self.driver, self.moves)

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        """The positional arguments, from parameters by name."""
        return [params[name] for name in self.names]


def _render_move(spec: str, moves: list[tuple[TaskState, TaskState]]) -> str:
    match = _MOVE.fullmatch(spec)
    if match is None:
        raise InvalidQueryError(f"unknown brace {{{spec}}}")
    sources = [TaskState(state) for state in match.group(1).split(",")]
    target = TaskState(match.group(2))
    for source in sources:
        if not can_transition(source, target):
            raise InvalidQueryError(f"the transition table forbids {source} -> {target}")
        moves.append((source, target))
    if len(sources) == 1:
        return f"state = '{sources[0]}'"
    return "state IN (" + ", ".join(f"'{source}'" for source in sources) + ")"


def _render(text: str) -> tuple[str, tuple[tuple[TaskState, TaskState], ...]]:
    moves: list[tuple[TaskState, TaskState]] = []

    def brace(match: re.Match[str]) -> str:
        if match.group(1) and match.group(3):  # {{x}}: a brace kept for str.format at run time
            return "{" + match.group(2) + "}"
        inner = match.group(2)
        column_list = _BRACES.get(inner)
        return column_list if column_list is not None else _render_move(inner, moves)

    return _BRACE.sub(brace, text), tuple(moves)


def _compile(name: str, sql: str, driver: Driver, moves: tuple[tuple[TaskState, TaskState], ...]) -> Query:
    names: list[str] = []
    mark = "?" if driver == "sqlite" else "$"

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"{mark}{names.index(match.group(1)) + 1}"

    return Query(name, _PARAM.sub(number, sql), driver, sql, tuple(names), moves)


def parse(text: str) -> Iterator[tuple[str, str]]:
    """The (name, SQL) of each `-- name:` block; comment lines are left out of the SQL."""
    parts = _NAME.split(text)
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        lines = [line for line in body.splitlines() if not line.lstrip().startswith("--")]
        yield name, "\n".join(lines).strip()


def load(driver: Driver) -> dict[str, Query]:
    """The shared queries and the driver's own, compiled for `driver`."""
    shared = (resources.files("gengate.store") / "queries.sql").read_text(encoding="utf-8")
    own = (resources.files(f"gengate.store.{driver}") / "queries.sql").read_text(encoding="utf-8")
    queries = {}
    for name, text in (*parse(shared), *parse(own)):
        sql, moves = _render(text)
        queries[name] = _compile(name, sql, driver, moves)
    return queries
