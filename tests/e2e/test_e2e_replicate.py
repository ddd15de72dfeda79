"""The official `replicate` client, unmodified, against a real `gengate serve`: only its base URL
points at gengate. Every result it names is downloaded and checked to be the right file."""

from __future__ import annotations

import io
import itertools
import json
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from PIL import Image
from replicate.client import Client
from replicate.exceptions import ModelError, ReplicateError
from replicate.webhook import InvalidSignatureError

pytestmark = pytest.mark.e2e

#: The e2e conftest's `GengateServer` (conftest modules are not imported by name).
GengateServer = Any


@pytest.fixture
def client(gengate_server: GengateServer, api_key: str) -> Client:
    return Client(api_token=api_key, base_url=gengate_server.base_url)


def download(url: object) -> bytes:
    response = httpx.get(str(url), timeout=30)
    assert response.status_code == 200, response.text
    return response.content


def test_run_an_image_model(client: Client) -> None:
    output = client.run(
        "gengate/demo-image", input={"prompt": "a red fox", "width": 96, "height": 64, "n": 2}
    )
    assert isinstance(output, list)
    assert len(output) == 2
    for url in output:
        image = Image.open(io.BytesIO(download(url)))
        assert (image.format, image.size) == ("PNG", (96, 64))


def test_run_falls_back_to_polling_when_the_hold_runs_out(client: Client) -> None:
    """Held 1 s, the prediction answers `starting`, and `run` polls it to the end."""
    output = client.run("gengate/demo-echo", input={"prompt": "slow", "duration_ms": 2500}, wait=1)
    assert json.loads(download(output)) == {
        "mode": "echo",
        "prompt": "slow",
        "data": None,
        "duration_ms": 2500,
        "fail_code": None,
        "fail_attempts": 0,
    }


def test_create_wait_get_and_list(client: Client, gengate_server: GengateServer, api_key: str) -> None:
    by_version = client.predictions.create(version="gengate/demo-echo", input={"prompt": "v", "data": [1, 2]})
    by_model = client.models.predictions.create(model="gengate/demo-echo", input={"prompt": "m"})
    assert by_version.status in {"starting", "processing"}
    by_version.wait()
    by_model.wait()
    assert (by_version.status, by_model.status) == ("succeeded", "succeeded")
    assert json.loads(download(by_version.output))["data"] == [1, 2]
    assert by_version.logs == ""  # demo-echo without pretend work logs nothing
    got = client.predictions.get(by_model.id)
    assert (got.id, got.model, got.status, got.output) == (
        by_model.id,
        "gengate/demo-echo",
        "succeeded",
        by_model.output,
    )
    assert got.completed_at is not None
    assert got.metrics is not None
    assert got.metrics["predict_time"] >= 0
    listed = [p.id for p in client.predictions.list()]
    assert listed.index(by_model.id) < listed.index(by_version.id)  # newest first
    # The same task through the APIXO door.
    data = gengate_server.status_data(api_key, "demo-echo", by_model.id)
    assert json.loads(data["resultJson"])["resultUrls"] == [by_model.output]


def test_an_apixo_task_reads_as_a_prediction(
    client: Client, gengate_server: GengateServer, api_key: str
) -> None:
    task_id = gengate_server.submit_ok(api_key, "demo-echo", {"prompt": "apixo"})
    gengate_server.wait_task(api_key, "demo-echo", task_id)
    prediction = client.predictions.get(task_id)
    assert prediction.status == "succeeded"
    assert json.loads(download(prediction.output))["prompt"] == "apixo"


def test_logs_and_cancel(client: Client) -> None:
    prediction = client.predictions.create(version="gengate/demo-echo", input={"duration_ms": 20_000})
    while not prediction.logs:
        prediction.reload()
    assert prediction.status == "processing"
    assert prediction.logs.splitlines()[0] == "step 1/10"
    prediction.cancel()
    assert (prediction.status, prediction.error) == ("canceled", None)
    assert client.predictions.get(prediction.id).status == "canceled"


def test_stream(client: Client) -> None:
    prediction = client.predictions.create(
        version="gengate/demo-echo", input={"prompt": "s", "duration_ms": 500}
    )
    events = list(prediction.stream())
    names = [event.event.value for event in events]
    assert names == ["logs"] * 10 + ["output", "done"]
    assert json.loads(download(events[-2].data))["prompt"] == "s"


def test_a_failing_model_raises_model_error(client: Client) -> None:
    with pytest.raises(ModelError) as raised:
        client.run("gengate/demo-echo", input={"fail_code": "PROVIDER_ERROR"})
    assert raised.value.prediction.status == "failed"
    assert "PROVIDER_ERROR" in str(raised.value.prediction.error)


def test_an_unknown_model_raises_replicate_error(client: Client) -> None:
    with pytest.raises(ReplicateError) as raised:
        client.run("gengate/no-such-model", input={})
    assert (raised.value.status, raised.value.title) == (404, "Not Found")
    assert "gengate/no-such-model" in str(raised.value.detail)


def test_bad_input_and_a_wrong_key_raise_replicate_error(gengate_server: GengateServer, api_key: str) -> None:
    with pytest.raises(ReplicateError) as bad:
        Client(api_token=api_key, base_url=gengate_server.base_url).run(
            "gengate/demo-image", input={"prompt": "x", "width": 1}
        )
    assert bad.value.status == 400
    assert "width" in str(bad.value.detail)
    wrong = Client(api_token="nope", base_url=gengate_server.base_url)
    with pytest.raises(ReplicateError) as refused:
        wrong.predictions.list()
    assert refused.value.status == 401


def test_another_keys_predictions_stay_hidden(client: Client, gengate_server: GengateServer) -> None:
    mine = client.predictions.create(version="gengate/demo-echo", input={"prompt": "mine"})
    other = Client(api_token=gengate_server.create_key("other")["key"], base_url=gengate_server.base_url)
    assert mine.id not in [p.id for p in other.predictions.list()]
    with pytest.raises(ReplicateError) as hidden:
        other.predictions.get(mine.id)
    assert hidden.value.status == 404


# -- webhooks -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Arrival:
    at: float  # time.monotonic() of the test process
    headers: dict[str, str]
    body: bytes


class Receiver(BaseHTTPRequestHandler):
    arrivals: queue.Queue[Arrival]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.arrivals.put(Arrival(time.monotonic(), {k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, queue.Queue[Arrival]]]:
    arrivals: queue.Queue[Arrival] = queue.Queue()
    handler = type("Handler", (Receiver,), {"arrivals": arrivals})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", arrivals
    server.shutdown()
    server.server_close()


@pytest.fixture
def hook_server(start_gengate: Any) -> GengateServer:
    return start_gengate("replicate-hooks", env={"GENGATE_WEBHOOK_ALLOW": "127.0.0.0/8"})


def signed(client: Client, arrival: Arrival) -> dict[str, Any]:
    """The body of a webhook whose signature the client's own check accepts (and a tampered
    body's it refuses)."""
    secret = client.webhooks.default.secret()
    text = arrival.body.decode()
    client.webhooks.validate(headers=arrival.headers, body=text, secret=secret)  # raises if not signed
    with pytest.raises(InvalidSignatureError):
        client.webhooks.validate(headers=arrival.headers, body=text.replace("hook", "hack"), secret=secret)
    body: dict[str, Any] = json.loads(text)
    return body


def test_webhooks_get_the_signed_prediction_at_start_and_completion(
    hook_server: GengateServer, receiver: tuple[str, queue.Queue[Arrival]]
) -> None:
    client = Client(api_token=hook_server.create_key("hooks")["key"], base_url=hook_server.base_url)
    url, arrivals = receiver
    prediction = client.predictions.create(
        version="gengate/demo-echo",
        input={"prompt": "hook", "duration_ms": 1500},
        webhook=url,
        webhook_events_filter=["start", "completed"],
    )
    first, second = arrivals.get(timeout=20), arrivals.get(timeout=20)
    start, end = signed(client, first), signed(client, second)
    assert first.headers["webhook-id"] != second.headers["webhook-id"]  # two events, two messages
    assert (start["id"], start["status"], start["output"]) == (prediction.id, "processing", None)
    assert (end["id"], end["status"]) == (prediction.id, "succeeded")
    assert json.loads(download(end["output"]))["prompt"] == "hook"
    assert end["logs"].splitlines() == [f"step {n}/10" for n in range(1, 11)]  # as a GET reads them
    assert end["logs"] == client.predictions.get(prediction.id).logs
    assert end["urls"]["get"] == f"{hook_server.base_url}/v1/predictions/{prediction.id}"
    assert arrivals.empty()


def test_logs_webhooks_come_at_most_twice_a_second(
    hook_server: GengateServer, receiver: tuple[str, queue.Queue[Arrival]]
) -> None:
    key = hook_server.create_key("logs")["key"]
    client = Client(api_token=key, base_url=hook_server.base_url)
    url, arrivals = receiver
    prediction = client.predictions.create(
        version="gengate/demo-echo",
        input={"prompt": "hook", "duration_ms": 2000},
        webhook=url,
        webhook_events_filter=["logs", "completed"],
    )
    prediction.wait()
    final = client.predictions.get(prediction.id).logs
    assert final is not None
    path = f"/api/v1/tasks/{prediction.id}/deliveries"
    deadline = time.monotonic() + 20
    while True:  # every delivery owed, through the APIXO door
        deliveries = hook_server.http.get(path, headers=hook_server.auth(key)).json()["data"]["deliveries"]
        if all(d["state"] == "delivered" for d in deliveries):
            break
        assert time.monotonic() < deadline, deliveries
        time.sleep(0.05)
    received = [arrivals.get(timeout=5) for _ in deliveries]
    bodies = [signed(client, arrival) for arrival in received]
    assert len({arrival.headers["webhook-id"] for arrival in received}) == len(received) >= 2
    running = [(a.at, b) for a, b in zip(received, bodies, strict=True) if b["status"] == "processing"]
    assert running, bodies  # at least one `logs` event came while it ran
    for _at, body in running:
        assert body["logs"]
        assert final.startswith(body["logs"])  # the lines so far
    gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(running)]
    assert all(gap >= 0.49 for gap in gaps), gaps  # the store spaces them 500 ms apart
    assert [b["status"] for b in bodies].count("succeeded") >= 1
