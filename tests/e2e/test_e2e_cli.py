"""The `gengate` command line against a running server and its data folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

pytestmark = pytest.mark.e2e

GENGATE = Path(sys.executable).parent / "gengate"
PROMPT = "a lighthouse at dusk"


@pytest.fixture(scope="module")
def cli_server(start_gengate_module: Any) -> Any:
    """Its own server: `gengate keys` writes into the data folder it is pointed at."""
    return start_gengate_module("cli")


def gengate(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {name: value for name, value in os.environ.items() if not name.startswith("GENGATE_")}
    return subprocess.run(
        [str(GENGATE), *args],
        env={**clean, "COLUMNS": "200", **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def client_env(server: Any, key: str) -> dict[str, str]:
    return {"GENGATE_URL": server.base_url, "GENGATE_API_KEY": key}


def test_keys_create_and_list(cli_server: Any, tmp_path: Path) -> None:
    env = {"GENGATE_DATA_DIR": str(cli_server.data_dir)}
    created = gengate("keys", "create", "--name", "x", env=env, cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert secret
    assert "\n" not in secret
    assert secret.startswith("gg_")
    assert "shown once" in created.stderr

    listed = gengate("keys", "list", "--json", env=env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert secret not in listed.stdout
    rows = json.loads(listed.stdout)
    mine = [row for row in rows if row["name"] == "x"]
    assert len(mine) == 1, rows
    assert secret.startswith(mine[0]["prefix"])
    assert mine[0]["disabled"] is False
    assert mine[0]["models"] is None
    assert "key_hash" not in mine[0]
    assert mine[0]["id"] in created.stderr

    # The running server accepts the key the CLI wrote into its database.
    task_id = cli_server.submit_ok(secret, "demo-echo", {"mode": "echo"})
    assert cli_server.wait_task(secret, "demo-echo", task_id)["state"] == "success"
    # And the admin API lists it too.
    admin_listing = cli_server.admin("GET", "/admin/v1/keys").json()["data"]["keys"]
    assert mine[0]["id"] in {row["id"] for row in admin_listing}


def test_keys_create_with_models_restricts_the_key(cli_server: Any, tmp_path: Path) -> None:
    env = {"GENGATE_DATA_DIR": str(cli_server.data_dir)}
    created = gengate("keys", "create", "--name", "echo-cli", "--models", "demo-echo", env=env, cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    response = cli_server.submit(secret, "demo-image", {"mode": "text-to-image", "prompt": "p"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_mismatched"
    unknown = gengate("keys", "create", "--name", "bad", "--models", "nope", env=env, cwd=tmp_path)
    assert unknown.returncode != 0
    assert "nope" in unknown.stderr


def test_generate_saves_the_png_and_status_reads_it(cli_server: Any, tmp_path: Path) -> None:
    key = cli_server.create_key("cli-generate")["key"]
    out = tmp_path / "out"
    args = ["--param", "seed=3", "--param", "width=64", "--param", "height=48"]
    done = gengate(
        "generate", "demo-image", "--prompt", PROMPT, "--out", str(out), *args,
        env=client_env(cli_server, key), cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    saved = sorted(out.iterdir())
    assert len(saved) == 1, saved
    png = saved[0]
    assert png.suffix == ".png"
    assert str(png) in done.stdout
    with Image.open(png) as image:
        assert image.format == "PNG"
        assert image.size == (64, 48)
    task_id = png.name.removesuffix("_0.png")
    assert task_id.startswith("task_")

    # The CLI sent the seed: the same input through the API gives the same bytes.
    same = cli_server.submit_ok(
        key, "demo-image", {"mode": "text-to-image", "prompt": PROMPT, "seed": 3, "width": 64, "height": 48}
    )
    url = json.loads(cli_server.wait_task(key, "demo-image", same)["resultJson"])["resultUrls"][0]
    assert cli_server.http.get(url).content == png.read_bytes()

    status = gengate("status", "demo-image", task_id, "--json", env=client_env(cli_server, key), cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data == cli_server.status_data(key, "demo-image", task_id)
    assert data["state"] == "success"
    assert data["taskId"] == task_id

    human = gengate("status", "demo-image", task_id, env=client_env(cli_server, key), cwd=tmp_path)
    assert human.returncode == 0, human.stderr
    assert task_id in human.stdout
    assert "success" in human.stdout


def test_generate_failure_exits_1(cli_server: Any, tmp_path: Path) -> None:
    key = cli_server.create_key("cli-fail")["key"]
    out = tmp_path / "out"
    failed = gengate(
        "generate", "demo-image", "--prompt", PROMPT, "--out", str(out),
        "--param", "fail_code=CONTENT_VIOLATION", "--param", "width=16", "--param", "height=16",
        env=client_env(cli_server, key), cwd=tmp_path,
    )  # fmt: skip
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "CONTENT_VIOLATION" in failed.stderr
    assert not out.exists() or not any(out.iterdir())


def test_cli_refusals_exit_2(cli_server: Any, tmp_path: Path) -> None:
    bad_key = client_env(cli_server, "gg_not-a-key")
    refused = gengate("status", "demo-image", "task_" + "A" * 22, env=bad_key, cwd=tmp_path)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "invalid_token" in refused.stderr

    key = cli_server.create_key("cli-missing")["key"]
    missing = gengate(
        "status", "demo-image", "task_" + "A" * 22, env=client_env(cli_server, key), cwd=tmp_path
    )
    assert missing.returncode == 2, missing.stdout + missing.stderr
    assert "task_not_found" in missing.stderr


def test_serve_refuses_a_config_naming_an_unknown_provider(tmp_path: Path) -> None:
    config = tmp_path / "gengate.toml"
    config.write_text('[models.broken]\nprovider = "no-such-provider"\n')
    args = ["serve", "--port", "1", "--data-dir", str(tmp_path / "data"), "--config", str(config)]
    refused = gengate(*args, env={"GENGATE_ADMIN_KEY": "adm"}, cwd=tmp_path)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "no-such-provider" in refused.stderr
    missing = gengate("serve", "--config", str(tmp_path / "absent.toml"), env={}, cwd=tmp_path)
    assert missing.returncode == 1, missing.stdout + missing.stderr
    assert "absent.toml" in missing.stderr
