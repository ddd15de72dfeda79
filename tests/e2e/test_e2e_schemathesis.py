"""Schemathesis against `/openapi.json` of a running server, with every check it has.

No input a client can send is a 5xx; every answer has a documented status, content type,
headers and body; valid data is accepted and invalid data refused; no operation of a key's
answers without its key (`ignored_auth`). The server is its own (fuzzing fills its database)
and must shut down without a single logged traceback.

Schemathesis's pytest plugin does not run under pytest 9 yet, so each operation is driven
through Hypothesis here, positive and negative data alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import hypothesis.errors
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import FailureGroup
from schemathesis.generation.modes import GenerationMode

pytestmark = pytest.mark.e2e

EXAMPLES = {GenerationMode.POSITIVE: 25, GenerationMode.NEGATIVE: 15}

#: Operations whose valid-looking requests the server may rightly refuse with 400 for reasons
#: a schema cannot say: a mode the path's model lacks, a callback host that does not resolve,
#: a cursor that is not one the server gave, a `Prefer: wait=N` out of range.
SEMANTIC_400 = (
    r"^(/api/v1/(generateTask/\{model\}|jobs/createTask|tasks)"
    r"|/v1/(predictions|models/\{owner\}/\{name\}/predictions))$"
)
ACCEPTED = ["2xx", "400", "401", "403", "404", "409", "429", "503"]

CONFIG = {
    # Our key goes on every request; negative data then concerns what the schema describes, and
    # unknown query parameters are ignored, as clients adding cache busters expect.
    "generation": {"allow-extra-parameters": False, "with-security-parameters": False},
    "operations": [
        {
            "include-path-regex": SEMANTIC_400,
            "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED}},
        },
        # OpenAI Images: a model may refuse a valid-looking size, count or format (400, naming
        # the field), and past the sync wait the answer is the documented 504 naming the task.
        {
            "include-path-regex": r"^/v1/images/",
            "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "504"]}},
        },
        # fal: an app is `{owner}/{alias}` and a request is named under its own app, which a
        # schema cannot tie together (404); a `fal_webhook` host may not resolve (400).
        {
            "include-path-regex": r"^/fal/",
            "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED}},
        },
        # A synchronous run also answers its documented 504 `timeout` when the task takes long.
        {
            "include-path": "/api/v1/run/{model}",
            "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "504"]}},
        },
    ],
}


@pytest.fixture(scope="module")
def fuzzed_server(start_gengate_module: Any) -> Iterator[Any]:
    server = start_gengate_module(
        "schemathesis",
        # Bounded waits: generated inputs ask for long demo work and long-polls.
        env={"GENGATE_SYNC_WAIT": "0.5", "GENGATE_WORKERS": "4"},
    )
    yield server
    server.stop()
    log = server.log()
    assert "Traceback" not in log, f"the fuzzed server logged an unexpected error:\n{log}"


def test_every_check_on_every_operation(fuzzed_server: Any) -> None:
    """Every operation of the document, positive and negative data, every Schemathesis check,
    with a valid key (the admin key on admin routes)."""
    schema = schemathesis.openapi.from_url(
        f"{fuzzed_server.base_url}/openapi.json", config=SchemathesisConfig.from_dict(CONFIG)
    )
    load_all_checks()
    checks = list(CHECKS.get_all())
    names = {getattr(check, "__name__", "") for check in checks}
    assert {"ignored_auth", "not_a_server_error", "negative_data_rejection"} <= names
    key = fuzzed_server.create_key("fuzz")["key"]
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        bearer = fuzzed_server.admin_key if operation.path.startswith("/admin/") else key
        headers = {"Authorization": f"Bearer {bearer}"}
        for mode, examples in EXAMPLES.items():
            try:
                _fuzz(operation, mode, examples, headers, checks)()
            except hypothesis.errors.Unsatisfiable:
                continue  # nothing to make invalid: an operation without parameters or body
            except (Exception, FailureGroup) as exc:  # collect every failure, report them all
                failures.append(f"{operation.method.upper()} {operation.path} ({mode.value}): {exc}")
    assert operations >= 20
    assert not failures, "\n\n".join(failures)


def _fuzz(
    operation: Any, mode: GenerationMode, examples: int, headers: dict[str, str], checks: list[Any]
) -> Any:
    not_a_server_error = CHECKS.get_one("not_a_server_error")
    others = [check for check in checks if check is not not_a_server_error]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case: Any) -> None:
        if mode is GenerationMode.POSITIVE:  # negative data is refused before any failing
            _drop_simulated_failures(case.body)
        response = case.call(headers=headers, timeout=30)
        assert response.status_code < 500 or _documented_timeout(case, response), (
            f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:500]}"
        )
        case.validate_response(response, checks=others, headers=headers)

    return check


def _drop_simulated_failures(body: Any) -> None:
    """`fail_code` asks a demo model to fail on purpose; a synchronous XHuo run then reports that
    failure with the status its code maps to (500 for a provider-side code), which is the
    requested outcome, not a server error."""
    if isinstance(body, dict):
        body.pop("fail_code", None)
        for value in body.values():
            _drop_simulated_failures(value)


def _documented_timeout(case: Any, response: Any) -> bool:
    """A synchronous XHuo run or OpenAI Images request past the wait limit answers 504 `timeout`
    with the task id: the contract of those routes (generated inputs ask for long demo work),
    not a server error."""
    if response.status_code != 504 or not case.path.startswith(("/api/v1/run/", "/v1/images/")):
        return False
    body = response.json()
    return bool(body["error"]["code"] == "timeout" and body["task_id"].startswith("task_"))
