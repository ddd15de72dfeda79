"""The pool of random bytes behind ids: never the same bytes twice, not even across a fork."""

from __future__ import annotations

import base64
import os
import secrets

from gengate.domain.ids import new_task_id, new_trace_id
from gengate.domain.randomness import RandomPool, token_urlsafe


def test_bytes_are_handed_out_once_and_the_pool_refills() -> None:
    pool = RandomPool(draw=64)
    taken = [pool.take(16) for _ in range(40)]  # ten draws
    assert all(len(chunk) == 16 for chunk in taken)
    assert len(set(taken)) == len(taken)


def test_a_request_larger_than_a_draw_is_served_whole() -> None:
    pool = RandomPool(draw=8)
    assert len(pool.take(100)) == 100
    assert len(pool.take(3)) == 3


def test_token_urlsafe_has_the_form_of_the_secrets_module() -> None:
    token = token_urlsafe(16)
    assert len(token) == len(secrets.token_urlsafe(16)) == 22
    assert len(base64.urlsafe_b64decode(token + "==")) == 16


def test_ids_stay_unique_and_well_formed() -> None:
    ids = {new_task_id() for _ in range(5000)}
    assert len(ids) == 5000
    trace = new_trace_id()
    assert len(trace) == 36
    assert trace[14] == "4"
    assert trace[19] in "89ab"


def test_a_forked_child_never_reuses_the_parents_bytes() -> None:
    pool = RandomPool()
    pool.take(16)  # the parent now holds bytes not yet handed out
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send what it takes next, then leave at once
        os.write(write_end, pool.take(16))
        os._exit(0)
    os.close(write_end)
    child = os.read(read_end, 16)
    os.close(read_end)
    os.waitpid(pid, 0)
    assert child != pool.take(16)
