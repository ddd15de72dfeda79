"""`gengate keys create --credits` and `gengate keys topup` on the data folder of a running
server: the server charges against the balance the command line wrote, and both are on the
key's ledger."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e

GENGATE = Path(sys.executable).parent / "gengate"


def gengate(*args: str, data_dir: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {name: value for name, value in os.environ.items() if not name.startswith("GENGATE_")}
    return subprocess.run(
        [str(GENGATE), *args],
        env={**clean, "GENGATE_DATA_DIR": str(data_dir)},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_create_with_credits_then_top_up(start_gengate: Any, tmp_path: Path) -> None:
    server = start_gengate("topup", workers=0)
    created = gengate(
        "keys",
        "create",
        "--name",
        "paid",
        "--credits",
        "1",
        "--max-concurrent",
        "5",
        data_dir=server.data_dir,
        cwd=tmp_path,
    )
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    key_id = created.stderr.split()[1]
    assert key_id.startswith("key_")

    assert server.submit(key, "demo-echo", {"prompt": "x"}).status_code == 200
    assert server.submit(key, "demo-echo", {"prompt": "x"}).json()["error"]["code"] == "used_up"

    topped = gengate("keys", "topup", key_id, "5", data_dir=server.data_dir, cwd=tmp_path)
    assert topped.returncode == 0, topped.stderr
    assert topped.stdout.strip() == f"{key_id}: balance 5"
    assert server.submit(key, "demo-echo", {"prompt": "x"}).status_code == 200

    usage = server.http.get("/api/v1/account/usage", headers=server.auth(key)).json()["data"]
    assert usage["credits"] == 4
    assert [(e["kind"], e["amount"]) for e in reversed(usage["entries"])] == [
        ("topup", 1),
        ("charge", -1),
        ("topup", 5),
        ("charge", -1),
    ]


def test_refusals_are_command_errors(start_gengate: Any, tmp_path: Path) -> None:
    server = start_gengate("topup-refusals", workers=0)
    missing = gengate("keys", "topup", "key_missing", "5", data_dir=server.data_dir, cwd=tmp_path)
    assert missing.returncode == 1
    assert "does not exist" in missing.stderr
    unlimited = server.create_key("unlimited")
    refused = gengate("keys", "topup", unlimited["id"], "5", data_dir=server.data_dir, cwd=tmp_path)
    assert refused.returncode == 1
    assert "unlimited" in refused.stderr
    bad = gengate(
        "keys", "create", "--name", "x", "--rate-limit", "lots", data_dir=server.data_dir, cwd=tmp_path
    )
    assert bad.returncode == 1
    assert "invalid rate limit" in bad.stderr
