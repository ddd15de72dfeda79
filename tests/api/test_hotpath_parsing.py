from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gengate.api.hotpath import header_value, query_value
from gengate.domain.errors import BadRequest

names = st.sampled_from(["taskId", "wait", "x", "task Id", "t&d", "t=d"])
values = st.text(max_size=30)


@given(st.lists(st.tuples(names, values), max_size=6))
def test_query_value_matches_the_standard_parser(pairs: list[tuple[str, str]]) -> None:
    query = urlencode(pairs).encode()
    found = [v for k, v in parse_qsl(query.decode(), keep_blank_values=True) if k == "taskId"]
    if len(found) > 1:  # ambiguous: refused, as on every route
        with pytest.raises(BadRequest, match="more than once"):
            query_value(query, b"taskId")
    else:
        assert query_value(query, b"taskId") == (found[0] if found else None)


def test_query_value_plain_and_missing() -> None:
    assert query_value(b"taskId=task_abc&wait=3", b"taskId") == "task_abc"
    assert query_value(b"taskId=", b"taskId") == ""
    assert query_value(b"wait=3", b"taskId") is None
    assert query_value(b"", b"taskId") is None


def test_header_value_is_by_lower_case_name() -> None:
    scope = {"headers": [(b"host", b"x"), (b"authorization", b"Bearer k")]}
    assert header_value(scope, b"authorization") == "Bearer k"
    assert header_value(scope, b"cookie") is None
