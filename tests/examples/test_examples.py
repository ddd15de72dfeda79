"""Every file in examples/ does what its header says: the scripts run against a real `gengate serve`,
the config files load into a gateway that serves their models, the `.env` file loads into settings."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from dotenv import dotenv_values
from standardwebhooks import Webhook

from gengate.client import Client
from gengate.settings import Settings, load_settings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
GENGATE = Path(sys.executable).parent / "gengate"
RUN_TIMEOUT_S = 90


def clean_env(**extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("GENGATE_")}
    return env | extra


def run(*args: str | Path, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )


def example(name: str, *args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return run(sys.executable, EXAMPLES / name, *args, env=env, cwd=cwd)


@pytest.fixture(scope="module")
def launcher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from e2e.conftest import Launcher  # the end-to-end harness (tests/ is on sys.path)

    launcher = Launcher(tmp_path_factory.mktemp("examples"))
    yield launcher
    launcher.close()


@pytest.fixture(scope="module")
def server(launcher: Any) -> Any:
    """A gateway that admits callbacks to loopback, as the receiver's header asks."""
    return launcher("examples", env={"GENGATE_WEBHOOK_ALLOW": "127.0.0.0/8"})


@pytest.fixture(scope="module")
def sdk_env(server: Any) -> dict[str, str]:
    key = server.create_key("examples")["key"]
    return clean_env(GENGATE_BASE_URL=server.base_url, GENGATE_API_KEY=key)


# -- submit_and_wait.py ----------------------------------------------------------------------------
@pytest.mark.e2e
def test_submit_and_wait_saves_the_results(sdk_env: dict[str, str], tmp_path: Path) -> None:
    done = example(
        "submit_and_wait.py", "--prompt", "a lighthouse", "--param", "seed=7", "--param", "n=2",
        "--param", "width=64", "--out", "results", env=sdk_env, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("submitted task_")
    assert any(line.strip().startswith("success") for line in lines), done.stdout
    saved = [Path(tmp_path, line.removeprefix("saved ")) for line in lines if line.startswith("saved ")]
    assert len(saved) == 2, done.stdout
    task_id = lines[0].removeprefix("submitted ")
    for path in saved:
        assert path.parent == tmp_path / "results" / task_id
        assert path.read_bytes().startswith(b"\x89PNG")


@pytest.mark.e2e
def test_submit_and_wait_reports_failures_and_refusals(sdk_env: dict[str, str], tmp_path: Path) -> None:
    failed = example(
        "submit_and_wait.py", "--param", "fail_code=CONTENT_VIOLATION", env=sdk_env, cwd=tmp_path
    )
    assert failed.returncode == 1, failed.stderr
    assert "CONTENT_VIOLATION" in failed.stderr

    bad_key = sdk_env | {"GENGATE_API_KEY": "gg_not_a_key"}
    refused = example("submit_and_wait.py", env=bad_key, cwd=tmp_path)
    assert refused.returncode == 2
    assert "invalid_token" in refused.stderr
    assert "trace_id" in refused.stderr

    no_key = {name: value for name, value in sdk_env.items() if name != "GENGATE_API_KEY"}
    unset = example("submit_and_wait.py", env=no_key, cwd=tmp_path)
    assert unset.returncode == 2
    assert "GENGATE_API_KEY" in unset.stderr
    assert "Traceback" not in unset.stderr
    assert not (tmp_path / "out").exists()


# -- webhook_receiver.py ---------------------------------------------------------------------------
@pytest.mark.e2e
def test_webhook_receiver_verifies_a_real_callback(sdk_env: dict[str, str], tmp_path: Path) -> None:
    done = example(
        "webhook_receiver.py", "--submit", "demo-echo", "--port", "0", "--timeout", "30",
        env=sdk_env, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    submitted = next(line for line in done.stdout.splitlines() if line.startswith("submitted "))
    task_id = submitted.split()[1].rstrip(";")
    callback = json.loads(done.stdout.strip().splitlines()[-1])
    assert callback["taskId"] == task_id
    assert callback["state"] == "success"
    assert callback["resultUrls"], callback
    assert "refused" not in done.stderr


@pytest.fixture
def listening_receiver(
    sdk_env: dict[str, str], tmp_path: Path
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """The receiver in its listening mode, its secret read from the gateway with the key."""
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "webhook_receiver.py"), "--port", "0"],
        env=sdk_env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("listening on http://127.0.0.1:"), first + process.stderr.read()  # type: ignore[union-attr]
        yield first.split()[-1], process
    finally:
        process.terminate()
        process.wait(10)


@pytest.mark.e2e
def test_webhook_receiver_refuses_what_is_not_signed_with_the_keys_secret(
    listening_receiver: tuple[str, subprocess.Popen[str]], sdk_env: dict[str, str]
) -> None:
    hook, process = listening_receiver
    with Client(sdk_env["GENGATE_BASE_URL"], sdk_env["GENGATE_API_KEY"]) as client:
        secret = client.account()["webhook_secret"]
    body = json.dumps({"code": 200, "message": "success", "data": {"taskId": "task_x", "state": "success"}})
    now = datetime.now(UTC)

    def headers(signing_secret: str, msg_id: str = "msg_1") -> dict[str, str]:
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(signing_secret).sign(msg_id, now, body),
            "content-type": "application/json",
        }

    other = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVld4"
    assert httpx.post(hook, content=body, headers=headers(other)).status_code == 400
    assert httpx.post(hook, content=body).status_code == 400  # no signature at all
    assert (
        httpx.post(hook, content=body, headers={**headers(secret), "webhook-signature": "v1"}).status_code
        == 400
    )
    assert httpx.post(hook, content=body + " ", headers=headers(secret)).status_code == 400
    assert httpx.post(hook, content=body, headers=headers(secret)).status_code == 204

    process.terminate()
    out, err = process.communicate(timeout=10)
    assert [json.loads(line)["taskId"] for line in out.splitlines()] == ["task_x"]
    assert err.count("refused a callback") == 4, err
    assert "Traceback" not in err


# -- the config files ------------------------------------------------------------------------------
def test_relay_config_loads_and_names_its_keys(tmp_path: Path) -> None:
    config = EXAMPLES / "gengate.relay.toml"
    env = clean_env(GENGATE_DATA_DIR=str(tmp_path / "data"))
    missing = run(GENGATE, "models", "--config", config, env=env, cwd=tmp_path)
    assert missing.returncode != 0
    assert "APIXO_API_KEY" in missing.stderr

    listed = run(
        GENGATE, "models", "--config", config,
        env=env | {"APIXO_API_KEY": "dummy", "KIE_API_KEY": "dummy"}, cwd=tmp_path,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    (line,) = listed.stdout.splitlines()  # demo_models = false: only the relayed model
    assert line.split()[0] == "flux-2"
    assert "provider=apixo:flux-2,kie:flux-2-pro" in line


UPSTREAM_CONFIG = """\
demo_models = false

[models.flux-2]
provider = "demo-image"

[models.flux-2-pro]
provider = "demo-image"
"""


@pytest.mark.e2e
def test_relay_config_serves_its_model_through_an_upstream(launcher: Any, tmp_path: Path) -> None:
    """The example file as it is, its providers' `base_url` pointed by the environment at a local
    gengate (which speaks both APIXO and KIE): a task on `flux-2` runs upstream and succeeds here."""
    upstream = launcher("upstream", config=UPSTREAM_CONFIG)
    upstream_key = upstream.create_key("relay")["key"]
    fast = {"POLL_INITIAL_S": "0.05", "POLL_MAX_S": "0.2", "BASE_URL": upstream.base_url}
    env = {"APIXO_API_KEY": upstream_key, "KIE_API_KEY": upstream_key}
    for provider in ("APIXO", "KIE"):
        env |= {f"GENGATE_PROVIDERS__{provider}__{name}": value for name, value in fast.items()}
    gateway = launcher("relaying", env=env, extra_args=("--config", str(EXAMPLES / "gengate.relay.toml")))

    key = gateway.create_key("examples-relay")["key"]
    with Client(gateway.base_url, key) as client:
        status = client.generate(
            "flux-2", {"mode": "text-to-image", "prompt": "a red fox", "width": 32}, timeout=60
        )
        assert status.result_urls[0].startswith(gateway.base_url), status
        assert (
            client.download(status.result_urls[0], tmp_path / "fox.png").read_bytes().startswith(b"\x89PNG")
        )
    upstream_tasks = upstream.http.get("/api/v1/tasks", headers=upstream.auth(upstream_key)).json()["data"]
    assert [task["model"] for task in upstream_tasks["tasks"]] == ["flux-2"], upstream_tasks


def test_diffusers_config_loads(tmp_path: Path) -> None:
    listed = run(
        GENGATE, "models", "--config", EXAMPLES / "gengate.diffusers.toml",
        env=clean_env(GENGATE_DATA_DIR=str(tmp_path / "data")), cwd=tmp_path,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if line.startswith("sd-turbo "))
    assert "modes=text-to-image,image-to-image" in line
    assert "provider=local-sd" in line
    settings = load_settings(EXAMPLES / "gengate.diffusers.toml")
    assert settings.providers["local-sd"].options["path"] == "stabilityai/sd-turbo"


# -- scale-out.env ---------------------------------------------------------------------------------
def test_scale_out_env_is_valid_settings_for_postgres_and_s3(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = EXAMPLES / "scale-out.env"
    values = {name: value for name, value in dotenv_values(path).items() if value is not None}

    # The shell reads it the same way (the header says `set -a; . scale-out.env`).
    shell = run(
        "bash", "-c", 'set -a; . "$1"; set +a; env -0', "bash", path,
        env={"PATH": os.environ["PATH"]}, cwd=tmp_path,
    )  # fmt: skip
    assert shell.returncode == 0, shell.stderr
    from_shell = dict(item.split("=", 1) for item in shell.stdout.split("\0") if "=" in item)
    assert {name: from_shell.get(name) for name in values} == values

    fields = set(Settings.model_fields)
    unknown = [
        n for n in values if n.startswith("GENGATE_") and n.removeprefix("GENGATE_").lower() not in fields
    ]
    assert not unknown, f"not settings: {unknown}"
    assert {n for n in values if not n.startswith("GENGATE_")} == {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    }

    for name in list(os.environ):
        if name.startswith("GENGATE_"):
            monkeypatch.delenv(name)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)  # no ./gengate.toml here
    settings = load_settings()
    assert settings.database_url is not None
    assert settings.database_url.startswith("postgresql://")
    assert settings.files_url == "s3://gengate-results/prod"
    assert settings.s3_endpoint_url == "http://minio.internal:9000"
    assert settings.rate_limit_storage.startswith("redis://")
    assert settings.admin_key is not None
    assert settings.secret is not None
    assert settings.host == "0.0.0.0"


@pytest.mark.parametrize("path", ["out/0.png", "examples/out/task_1/0.png", ".gengate/gengate.db"])
def test_generated_folders_are_ignored(path: str) -> None:
    root = EXAMPLES.parent
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    ignored = run("git", "check-ignore", "--no-index", "-q", path, env=clean_env(), cwd=root)
    assert ignored.returncode == 0, f"{path} is not ignored by .gitignore"


# -- the documents a newcomer reads ----------------------------------------------------------------
DOCUMENTS = [
    EXAMPLES.parent / "README.md",
    *sorted((EXAMPLES.parent / "docs").glob("*.md")),
    EXAMPLES / "README.md",
]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_documents_use_plain_names_and_working_links(document: Path) -> None:
    text = document.read_text()
    assert not re.findall(r"seeds? \d{3}", text), "internal document numbers: name the service instead"
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" not in target:
            assert (document.parent / target).exists(), f"{document.name} links to missing {target}"
