"""The client-only distribution: `clients/python` builds a `gengate-client` wheel from the SDK's
sources; installed into a fresh virtual environment it brings none of the server's dependencies,
and submits, waits and downloads against a running `gengate serve` from there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLIENT_PROJECT = ROOT / "clients" / "python"
#: Distributions only the server needs; none may reach a client-only install.
SERVER_DISTRIBUTIONS = (
    "boto3",
    "asyncpg",
    "psycopg",
    "starlette",
    "uvicorn",
    "pydantic-settings",
    "yoyo-migrations",
)
SERVER_MODULES = (
    "boto3",
    "asyncpg",
    "psycopg",
    "starlette",
    "uvicorn",
    "gengate.runtime",
    "gengate.settings",
)

#: Run inside the fresh environment, from a folder outside the repository, with GENGATE_* set.
PROBE = """
import importlib.util, json, sys
from importlib.metadata import distributions
from pathlib import Path

import gengate
import gengate.client
from gengate import Client

installed = sorted(d.metadata["Name"].lower() for d in distributions())
absent = {m: importlib.util.find_spec(m) is None for m in json.loads(sys.argv[2])}
with Client() as client:  # GENGATE_BASE_URL and GENGATE_API_KEY
    task_id = client.submit("demo-image", {"mode": "text-to-image", "prompt": "fresh venv", "width": 32})
    status = client.wait("demo-image", task_id, timeout=30)
    files = [str(client.download(url, Path(sys.argv[1]))) for url in status.result_urls]
print(json.dumps({"file": gengate.__file__, "installed": installed, "absent": absent,
                  "state": status.state, "files": files}))
"""


def run(*args: str | Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=180, check=False, **kwargs
    )
    assert result.returncode == 0, f"{args}:\n{result.stdout}\n{result.stderr}"
    return result


def test_client_version_and_license_follow_the_server() -> None:
    server = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    client = tomllib.loads((CLIENT_PROJECT / "pyproject.toml").read_text())["project"]
    assert client["version"] == server["version"]
    assert client["license"] == server["license"]
    assert (CLIENT_PROJECT / "LICENSE").read_text() == (ROOT / "LICENSE").read_text()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from e2e.conftest import Launcher  # the end-to-end harness (tests/ is on sys.path)

    launcher = Launcher(tmp_path_factory.mktemp("client-install"))
    yield launcher("client-install")
    launcher.close()


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_client_wheel_installs_alone_and_works(server: Any, tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", dist, CLIENT_PROJECT)
    (wheel,) = dist.glob("gengate_client-*.whl")

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", wheel)

    key = server.create_key("client-only")["key"]
    workdir = tmp_path / "elsewhere"  # not the repository: its src/ must not be importable
    workdir.mkdir()
    env = {name: value for name, value in os.environ.items() if not name.startswith(("GENGATE_", "PYTHON"))}
    env |= {"GENGATE_BASE_URL": server.base_url, "GENGATE_API_KEY": key}
    probe = run(python, "-c", PROBE, workdir / "out", json.dumps(SERVER_MODULES), cwd=workdir, env=env)
    report = json.loads(probe.stdout.strip().splitlines()[-1])

    assert Path(report["file"]).is_relative_to(venv), report["file"]
    assert "gengate-client" in report["installed"]
    assert not set(SERVER_DISTRIBUTIONS) & set(report["installed"]), report["installed"]
    assert all(report["absent"].values()), report["absent"]
    assert report["state"] == "success", server.log()
    (png,) = report["files"]
    assert Path(png).read_bytes().startswith(b"\x89PNG")
