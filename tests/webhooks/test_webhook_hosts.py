"""Per-host windows of callbacks in flight (AIMD): grown by quick answers, halved by slow ones
or none, bounded, and a full host's deliveries wait at most one window beside it."""

from __future__ import annotations

from gengate.webhooks.hosts import FIRST_WINDOW, HostLimits

HOST = "https://a.example:443"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_new_host_starts_small_and_quick_answers_open_its_window_up_to_the_bound() -> None:
    limits: HostLimits[str] = HostLimits(most=16, slow_s=1.0, clock=Clock())
    assert limits.window(HOST) == FIRST_WINDOW
    for _ in range(100):
        assert limits.admit(HOST, "d") is True
        limits.done(HOST, 0.01, overloaded=False)
    assert limits.window(HOST) == 16


def test_slow_answers_or_none_halve_the_window_once_per_answer_time() -> None:
    clock = Clock()
    limits: HostLimits[str] = HostLimits(most=16, slow_s=1.0, clock=clock)
    for _ in range(100):
        limits.admit(HOST, "d")
        limits.done(HOST, 0.01, overloaded=False)
    assert limits.window(HOST) == 16
    for _ in range(4):  # a burst answered slowly together: one signal, one cut
        limits.admit(HOST, "d")
    for _ in range(4):
        limits.done(HOST, 3.0, overloaded=False)
    assert limits.window(HOST) == 8
    clock.now += 10
    limits.admit(HOST, "d")
    limits.done(HOST, None, overloaded=True)  # no answer at all (a timeout, a refused connection)
    assert limits.window(HOST) == 4
    clock.now += 10
    limits.admit(HOST, "d")
    limits.done(HOST, 0.2, overloaded=True)  # 429 or 503, however quick
    assert limits.window(HOST) == 2


def test_nothing_sent_teaches_nothing() -> None:
    limits: HostLimits[str] = HostLimits(most=16, slow_s=1.0, clock=Clock())
    limits.admit(HOST, "d")
    limits.done(HOST, None, overloaded=False)  # refused by the guard, say: nothing was sent
    assert limits.window(HOST) == FIRST_WINDOW


def test_a_full_host_queues_one_window_then_refuses_and_its_answers_release_the_queue() -> None:
    limits: HostLimits[str] = HostLimits(most=2, slow_s=1.0, clock=Clock())
    assert limits.admit(HOST, "d1") is True
    assert limits.admit(HOST, "d2") is True
    assert limits.admit(HOST, "w1") is False
    assert limits.admit(HOST, "w2") is False
    assert limits.admit(HOST, "w3") is None  # give it back to the outbox
    assert limits.waiting == 2
    # Another host is not held up by this one.
    assert limits.admit("http://b.example:80", "b1") is True
    assert limits.done(HOST, 0.01, overloaded=False) == ["w1"]
    assert limits.done(HOST, 0.01, overloaded=False) == ["w2"]
    assert limits.done(HOST, 0.01, overloaded=False) == []
    assert limits.waiting == 0
