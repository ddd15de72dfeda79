"""The ready-made operations files in deploy/: the Grafana dashboard and the Prometheus alert rules
name only metrics a running gateway exposes on `/metrics` (and the dashboard shows every one of
them); the rules pass `promtool check rules` and their own `promtool test rules`; the systemd
units pass `systemd-analyze verify` and their command lines are ones the `gengate` CLI accepts."""

from __future__ import annotations

import configparser
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from gengate.cli.main import cli
from gengate.runtime import Gateway
from gengate.settings import Settings
from metrics_scrape import SUFFIXES, names_in_promql

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "gengate-dashboard.json"
RULES = DEPLOY / "prometheus" / "gengate-alerts.yml"
RULES_TESTS = DEPLOY / "prometheus" / "gengate-alerts.test.yml"
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))
#: Where the units expect the package; the checks put this checkout's `gengate` there instead.
INSTALLED = "/opt/gengate/venv/bin/gengate"
#: What the issue asks the rules to watch, each by the metric that tells it.
ALERTS_ON = {
    "gengate_queue_depth": "queue growing",
    "gengate_webhook_attempts_total": "delivery failures",
    "gengate_provider_circuit_state": "breaker open",
    "gengate_tasks_requeued_total": "workers lost",
    "gengate_tasks_ended_total": "no completions",
}
_SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
}


def _under_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"true", "1", "yes"}


def _tool(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        why = f"{name} is not installed ({package})"
        if _under_ci():
            pytest.fail(f"CI=true and {why}", pytrace=False)
        pytest.skip(why)
    return found


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(RULES.read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


@pytest.fixture
async def exposed(settings: Settings, pg_url: str) -> set[str]:
    """Every name PromQL can use from a gateway on PostgreSQL (its pool metrics included) that
    ran a task: each family with the sample names of its type (`x_total`, `x_bucket`, ...)."""
    gateway = Gateway(settings.model_copy(update={"database_url": pg_url}))
    async with gateway.running():
        _key, secret = await gateway.keys.create("deploy")
        transport = httpx.ASGITransport(app=gateway.asgi())
        async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as http:
            body = {"request_type": "sync", "input": {"mode": "echo", "prompt": "hi"}}
            headers = {"Authorization": f"Bearer {secret}"}
            done = await http.post("/api/v1/generateTask/demo-echo", json=body, headers=headers)
            assert done.json()["data"]["state"] == "success"
            text = (await http.get("/metrics")).text
    names = set()
    for family in text_string_to_metric_families(text):
        if family.name.startswith("gengate_"):
            names |= {family.name + suffix for suffix in _SAMPLE_SUFFIXES[family.type]}
    return names


def _expressions(dashboard: dict[str, Any]) -> list[str]:
    targets = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    variables = [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    return targets + variables


def _family(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


async def test_the_dashboard_names_only_exposed_metrics_and_shows_them_all(
    dashboard: dict[str, Any], exposed: set[str]
) -> None:
    named = set().union(*(names_in_promql(expr) for expr in _expressions(dashboard)))
    assert named, "no gengate metric found in the dashboard"
    assert named <= exposed, f"not on /metrics: {sorted(named - exposed)}"
    shown = {_family(name) for name in named}
    assert {_family(name) for name in exposed} <= shown, "a metric no panel shows"


def test_every_panel_draws_from_the_chosen_data_source(dashboard: dict[str, Any]) -> None:
    panels = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    assert panels
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


async def test_the_alert_rules_name_only_exposed_metrics(
    rules: list[dict[str, Any]], exposed: set[str]
) -> None:
    named = set().union(*(names_in_promql(rule["expr"]) for rule in rules))
    assert named <= exposed, f"not on /metrics: {sorted(named - exposed)}"
    for metric, what in ALERTS_ON.items():
        assert metric in named, f"no alert on {what} ({metric})"
    for rule in rules:
        assert rule["alert"].startswith("Gengate")
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]


def test_promtool_checks_the_rules() -> None:
    promtool = _tool("promtool", "Debian's prometheus package: scripts/ensure-promtool.sh")
    checked = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


def test_the_alerts_fire_on_the_series_they_watch_and_not_otherwise() -> None:
    """`promtool test rules`: the rules' own unit tests (deploy/prometheus/*.test.yml), series
    that must raise each alert of the issue and series that must not."""
    promtool = _tool("promtool", "Debian's prometheus package: scripts/ensure-promtool.sh")
    tested = subprocess.run(
        [promtool, "test", "rules", RULES_TESTS.name],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=RULES_TESTS.parent,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    for metric, what in ALERTS_ON.items():
        assert metric in RULES_TESTS.read_text(), f"no test of the alert on {what}"


def _unit(path: Path) -> configparser.ConfigParser:
    # systemd allows a key more than once (Environment=); the last one is kept here, which is
    # enough to read ExecStart.
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text())
    return parser


def test_there_is_a_unit_for_the_api_and_one_for_workers() -> None:
    commands = {shlex.split(_unit(path)["Service"]["ExecStart"])[1] for path in UNITS}
    assert commands == {"serve", "worker"}


@pytest.mark.parametrize("path", UNITS, ids=lambda path: path.name)
def test_each_unit_runs_a_command_line_the_cli_accepts(path: Path) -> None:
    unit = _unit(path)
    assert {"Unit", "Service", "Install"} <= set(unit.sections())
    argv = shlex.split(unit["Service"]["ExecStart"].replace("%i", "9101"))
    assert argv[0] == INSTALLED
    command = cli.commands[argv[1]]
    with command.make_context(argv[1], argv[2:]) as context:  # raises on an unknown or bad flag
        assert context.params
    assert unit["Service"]["KillSignal"] == "SIGTERM"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


@pytest.mark.parametrize("path", UNITS, ids=lambda path: path.name)
def test_systemd_analyze_verifies_each_unit(path: Path, tmp_path: Path) -> None:
    analyze = _tool("systemd-analyze", "systemd")
    gengate = Path(sys.executable).parent / "gengate"
    copy = tmp_path / path.name.replace("@.service", "@9101.service")
    copy.write_text(path.read_text().replace(INSTALLED, str(gengate)))
    if "@" in path.name:  # an instance is verified with its template beside it
        (tmp_path / path.name).write_text(copy.read_text())
    verified = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path
    )
    assert verified.returncode == 0, verified.stderr
    assert verified.stderr.strip() == "", verified.stderr
