""" "Copy as": the playground's request as curl, the Python SDK, and each dialect's own call.

Every snippet reads the key from the environment (`GENGATE_API_KEY`): the console never shows
a key, not even the one signed in.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

import orjson

AUTH = 'auth = {"Authorization": f"Bearer {os.environ[\'GENGATE_API_KEY\']}"}'


@dataclass(frozen=True, slots=True)
class Snippet:
    id: str
    title: str
    code: str


def _py(value: Any) -> str:
    """A JSON value as Python source (true, false and null spelled as Python)."""
    return repr(orjson.loads(orjson.dumps(value)))


def snippets(
    base_url: str, model: str, task_input: dict[str, Any], callback_url: str | None
) -> list[Snippet]:
    base = base_url.rstrip("/")
    apixo: dict[str, Any] = {"request_type": "callback" if callback_url else "async", "input": task_input}
    kie: dict[str, Any] = {"model": model, "input": task_input}
    if callback_url:
        apixo["callback_url"] = callback_url
        kie["callBackUrl"] = callback_url
    curl = [
        f"curl -X POST {shlex.quote(f'{base}/api/v1/generateTask/{model}')} \\",
        '  -H "Authorization: Bearer $GENGATE_API_KEY" \\',
        '  -H "Content-Type: application/json" \\',
        f"  -d {shlex.quote(orjson.dumps(apixo).decode())}",
    ]
    sdk = [
        "from gengate import Client",
        "",
        f"with Client({base!r}) as client:  # the key from $GENGATE_API_KEY",
        f"    status = client.generate({model!r}, {_py(task_input)})",
        "    print(status.result_urls)",
    ]
    apixo_code = [
        "import os",
        "import httpx",
        "",
        AUTH,
        f"with httpx.Client(base_url={base!r}, headers=auth) as http:",
        f"    body = {_py(apixo)}",
        f"    created = http.post({f'/api/v1/generateTask/{model}'!r}, json=body).json()",
        '    query = {"taskId": created["data"]["taskId"], "wait": 30}',
        "    while True:  # long-poll: each answer comes as soon as the state changes",
        f'        data = http.get({f"/api/v1/statusTask/{model}"!r}, params=query).json()["data"]',
        '        if data["state"] in ("success", "failed"):',
        "            break",
        "    print(data)",
    ]
    kie_code = [
        "import os",
        "import httpx",
        "",
        AUTH,
        f"with httpx.Client(base_url={base!r}, headers=auth) as http:",
        f"    body = {_py(kie)}",
        '    created = http.post("/api/v1/jobs/createTask", json=body).json()',
        '    query = {"taskId": created["data"]["taskId"], "wait": 30}',
        '    print(http.get("/api/v1/jobs/recordInfo", params=query).json()["data"])',
    ]
    return [
        Snippet("curl", "curl", "\n".join(curl)),
        Snippet("sdk", "Python SDK", "\n".join(sdk)),
        Snippet("apixo", "APIXO (httpx)", "\n".join(apixo_code)),
        Snippet("kie", "KIE jobs (httpx)", "\n".join(kie_code)),
    ]
