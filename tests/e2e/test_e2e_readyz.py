"""`/readyz` of a real `gengate serve` reflects its disk: below `GENGATE_MIN_FREE_BYTES` of free
space, and while store writes fail on a full disk, it is 503 and says why.

The full disk is a real one: a small tmpfs mounted for the test and filled up (where mounting is
not permitted, that test is skipped; the free-space test runs everywhere)."""

from __future__ import annotations

import errno
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

TINY_DISK = "8m"
DEADLINE_S = 20.0
#: The e2e conftest's types; not imported, since `conftest` names another module in a whole run.
GengateServer = Any
Launcher = Any


def readyz(server: GengateServer) -> tuple[int, dict[str, Any]]:
    response = server.http.get("/readyz")
    body: dict[str, Any] = response.json()
    return response.status_code, body


def test_default_server_is_ready_and_names_every_check(gengate_server: GengateServer) -> None:
    status, body = readyz(gengate_server)
    assert status == 200, body
    assert (body["status"], body["store"], body["writes"], body["disk"]) == ("ready", "ok", "ok", "ok")
    assert set(body["freeBytes"]) == {"data", "files"}


def test_not_ready_when_the_disk_has_less_than_the_minimum_free(
    start_gengate: Launcher, assert_error: Callable[..., dict[str, Any]]
) -> None:
    """No disk has 4 EiB free: the server's real free space is below this minimum."""
    server = start_gengate("min-free", env={"GENGATE_MIN_FREE_BYTES": str(2**62)}, workers=0)
    response = server.http.get("/readyz")
    body = assert_error(response, 503, "unavailable", mentions="GENGATE_MIN_FREE_BYTES")
    assert (body["disk"], body["store"], body["writes"]) == ("low", "ok", "ok"), body
    assert "the data folder has" in body["error"]["message"], body
    assert response.headers["retry-after"] == "5"


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of 8 MiB, unmounted after the test; skipped where mounting is not permitted."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={TINY_DISK}", "tmpfs", str(mount_point)],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        pytest.skip("no mount command here")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(disk: Path) -> Path:
    """Write one file until the disk has no byte left: halve each write that finds no room."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        size = 1 << 16
        while size:
            try:
                os.write(fd, b"\0" * size)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                size //= 2
    finally:
        os.close(fd)
    return filler


def wait_for(server: GengateServer, check: Callable[[int, dict[str, Any]], bool]) -> dict[str, Any]:
    """`/readyz` until `check` holds: the free space it reports is at most a second old."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        status, body = readyz(server)
        if check(status, body):
            return body
        assert time.monotonic() < deadline, (status, body)
        time.sleep(0.1)


def test_a_full_disk_makes_the_server_not_ready_until_it_has_room_again(
    tiny_disk: Path, start_gengate: Launcher
) -> None:
    server = start_gengate(
        "full-disk", data_dir=tiny_disk / "data", workers=0, env={"GENGATE_MIN_FREE_BYTES": str(1 << 20)}
    )
    try:
        key = server.create_key("full")["key"]
        status, body = readyz(server)
        assert (status, body["disk"], body["writes"]) == (200, "ok", "ok"), body

        filler = fill(tiny_disk)
        body = wait_for(server, lambda status, body: status == 503 and body["disk"] == "low")
        assert "the data folder has 0 bytes free" in body["error"]["message"], body

        failed = None
        for _attempt in range(200):  # the database's free pages fill first
            response = server.submit(key, "demo-echo", {"mode": "echo", "prompt": "p" * 3000})
            if response.status_code != 200:
                failed = response
                break
        assert failed is not None, "every submit succeeded on a full disk"
        assert failed.status_code == 503, failed.text
        status, body = readyz(server)
        assert (status, body["writes"]) == (503, "failing"), body
        assert "a store write failed" in body["error"]["message"], body

        filler.unlink()
        server.submit_ok(key, "demo-echo", {"mode": "echo"})
        wait_for(server, lambda status, body: status == 200)
        status, body = readyz(server)
        assert (status, body["disk"], body["writes"]) == (200, "ok", "ok"), body
    finally:
        server.stop()  # before the disk goes
