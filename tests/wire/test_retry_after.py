"""The one `Retry-After` reader (`gengate.wire.parse_retry_after`) that the SDK, the relays and the
callback sender share: delta-seconds or an HTTP date, anything else ignored, never an exception."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gengate.wire import parse_retry_after


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(None, None), ("3", 3.0), (" 0 ", 0.0), ("soon", None), ("Thu, 01 Jan 2024 00:00:10 GMT", 10.0)],
)
def test_retry_after_at_a_given_time(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=1704067200.0) == seconds


@given(
    seconds=st.integers(0, 10**12), left=st.sampled_from(["", " ", "\t"]), right=st.sampled_from(["", " "])
)
def test_delta_seconds(seconds: int, left: str, right: str) -> None:
    assert parse_retry_after(f"{left}{seconds}{right}") == float(seconds)


@pytest.mark.parametrize("value", [None, "", "   "])
def test_absent(value: str | None) -> None:
    assert parse_retry_after(value) is None


@pytest.mark.parametrize("value", ["soon", "-1", "1.5", "2 s", "0x10", "Thu, 99 Foo 2020 00:00:00 GMT"])
def test_unreadable_is_ignored(value: str) -> None:
    assert parse_retry_after(value) is None


@given(ahead=st.integers(2, 10**7))
def test_http_date_in_the_future(ahead: int) -> None:
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=ahead)
    seconds = parse_retry_after(format_datetime(when, usegmt=True))
    assert seconds is not None
    assert ahead - 2 <= seconds <= ahead


@given(ago=st.integers(0, 10**8))
def test_http_date_in_the_past_is_now(ago: int) -> None:
    when = datetime.now(UTC) - timedelta(seconds=ago)
    assert parse_retry_after(format_datetime(when, usegmt=True)) == 0.0


def test_http_date_without_zone_is_utc() -> None:
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=60)
    seconds = parse_retry_after(when.strftime("%a, %d %b %Y %H:%M:%S -0000"))
    assert seconds is not None
    assert 58 <= seconds <= 60


@given(value=st.text(max_size=40))
def test_any_header_value_gives_seconds_or_none(value: str) -> None:
    seconds = parse_retry_after(value)
    assert seconds is None or seconds >= 0


@given(value=st.text(alphabet=st.characters(categories=["Nd", "No", "Zs"]), max_size=8))
def test_any_digits_give_seconds_or_none(value: str) -> None:
    seconds = parse_retry_after(value)
    assert seconds is None or seconds >= 0


@pytest.mark.parametrize("value", ["²", "¹⁰", "①", "٣", "１２"])
def test_digit_like_characters_are_ignored(value: str) -> None:
    """str.isdigit() admits these and float() refuses some; httpx reads a Retry-After byte 0xB2 as
    "²" (latin-1). They used to raise ValueError, crashing the attempt (fixed in 05ed1a8)."""
    assert parse_retry_after(value) is None


def test_refused_literal_addresses_fail_at_once_names_are_retried() -> None:
    from gengate.domain.deliveries import DeliveryState
    from gengate.webhooks.retry import Outcome, next_step, refused_for_good

    assert refused_for_good("http://127.0.0.1/hook")
    assert refused_for_good("ftp://example.com/")
    assert not refused_for_good("https://hooks.example.com/x")
    permanent = Outcome(None, "refused", permanent=True)
    assert next_step(permanent, 1, [0, 5, 300], now=0) == (DeliveryState.FAILED, None)
    assert next_step(Outcome(None, "refused"), 1, [0, 5, 300], now=0) == (DeliveryState.PENDING, 5000)
