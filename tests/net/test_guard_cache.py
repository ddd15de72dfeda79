"""Callback URLs parsed once and kept: the same answer, and errors still raised every time."""

from __future__ import annotations

from typing import Any

import pytest

from gengate.net.guard import UnsafeUrl, parse_callback_url


def test_a_url_parsed_again_is_the_kept_answer() -> None:
    first = parse_callback_url("https://hooks.example.com/in?x=1")
    again = parse_callback_url("https://hooks.example.com/in?x=1")
    assert again is first
    assert again.host == "hooks.example.com"


@pytest.mark.parametrize("bad", ["ftp://example.com/", "http://exa mple.com/", "http://user@example.com/"])
def test_a_refused_url_is_refused_each_time(bad: str) -> None:
    for _ in range(2):
        with pytest.raises(UnsafeUrl):
            parse_callback_url(bad)


@pytest.mark.parametrize("value", [["http://example.com/"], {"url": 1}, 7, None, ""])
def test_values_that_are_not_urls_are_refused_not_hashed(value: Any) -> None:
    with pytest.raises(UnsafeUrl):
        parse_callback_url(value)


def test_the_length_limit_holds_for_a_url_kept_under_the_default() -> None:
    url = "https://example.com/" + "a" * 100
    parse_callback_url(url)
    with pytest.raises(UnsafeUrl, match="longer than 50"):
        parse_callback_url(url, max_length=50)
