"""Every statement that moves a task's state agrees with the transition table of
:mod:`gengate.domain.states`, on both drivers, and every allowed move has a statement."""

from __future__ import annotations

import re

import pytest

from gengate.domain.states import _ALLOWED, TaskState, can_transition
from gengate.store.queries import Driver, InvalidQueryError, load, parse

_SETS_STATE = re.compile(r"\bSET\b(.*?)(?:\bWHERE\b|\bFROM\b|\bRETURNING\b)", re.DOTALL)
_TARGET = re.compile(r"(?<![\w.])state\s*=\s*'(\w+)'")
_SOURCE = re.compile(r"\b(?:\w+\.)?state\s*(?:=\s*'(\w+)'|IN\s*\(([^)]*)\))")


def _moves(sql: str) -> set[tuple[TaskState, TaskState]]:
    """The (from, to) state moves an UPDATE of tasks makes, read from its text alone."""
    if not re.search(r"UPDATE tasks\b", sql):
        return set()
    update = sql[sql.index("UPDATE tasks") :]
    sets = _SETS_STATE.search(update)
    target = _TARGET.search(sets.group(1)) if sets else None
    if target is None:
        return set()
    where = sql.replace(sets.group(0), " WHERE ") if sets else sql
    sources: set[str] = set()
    for single, several in _SOURCE.findall(where):
        sources |= {single} if single else {s.strip(" '") for s in several.split(",")}
    assert sources, f"a state change without a from-state: {sql}"
    return {(TaskState(source), TaskState(target.group(1))) for source in sources}


def _statements(driver: Driver) -> list[tuple[str, str, set[tuple[TaskState, TaskState]]]]:
    """Each compiled query as it runs: SQLite's claim with its per-model heads filled in."""
    queries = load(driver)
    statements = []
    for query in queries.values():
        sql, moves = query.sql, set(query.moves)
        if driver == "sqlite" and query.name == "claim":
            sql = sql.format(heads=queries["claim_head"].sql.format(i=0))
            moves |= set(queries["claim_head"].moves)
        statements.append((query.name, sql, moves))
    return statements


@pytest.mark.parametrize("driver", ["sqlite", "postgres"])
def test_every_state_change_is_allowed_by_the_table(driver: Driver) -> None:
    for name, sql, declared in _statements(driver):
        for source, target in _moves(sql):
            assert can_transition(source, target), f"{name}: {source} -> {target}"
            assert (source, target) in declared, f"{name} moves state without a {{from}} brace"


@pytest.mark.parametrize("driver", ["sqlite", "postgres"])
def test_every_allowed_transition_has_a_statement(driver: Driver) -> None:
    made = {move for _name, sql, _declared in _statements(driver) for move in _moves(sql)}
    allowed = {(source, target) for source, targets in _ALLOWED.items() for target in targets}
    assert made == allowed


def test_a_move_the_table_forbids_does_not_load() -> None:
    from gengate.store.queries import _render

    with pytest.raises(InvalidQueryError, match="forbids success -> pending"):
        _render("UPDATE tasks SET state = 'pending' WHERE {from success to pending}")


def test_blocks_are_named_and_comments_left_out() -> None:
    blocks = dict(parse("-- name: a\n-- why\nSELECT 1\n\n-- name: b\nSELECT :x"))
    assert blocks == {"a": "SELECT 1", "b": "SELECT :x"}


def test_postgres_numbers_parameters_in_order_of_first_use() -> None:
    finish = load("postgres")["finish_success"]
    assert finish.names[:2] == ("now", "files")
    assert "complete_time = $1" in finish.sql
    assert ":now" not in finish.sql
    charged = load("postgres")["insert_task_charged"]
    assert ":key_id::text" not in charged.sql  # a cast stays a cast
    assert "$1::text" in charged.sql
