"""`verify_callback`: a receiver accepts gengate's signed callbacks and refuses every other body with
one error class, whatever is wrong with the headers."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from email.message import Message

import pytest
from standardwebhooks import Webhook

from gengate.client import CallbackVerificationError, GengateError, parse_callback, verify_callback
from gengate.domain.keys import ApiKey
from gengate.webhooks.secrets import webhook_secret

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef01234567").decode()
BODY = json.dumps(
    {
        "code": 200,
        "message": "success",
        "data": {
            "taskId": "task_1",
            "state": "success",
            "resultJson": json.dumps({"resultUrls": ["http://gw/files/task_1/0.png"]}),
            "costTime": 40,
            "createTime": 1704067200000,
            "completeTime": 1704067200040,
        },
    }
).encode()


def signed(body: bytes = BODY, *, secret: str = SECRET, at: datetime | None = None) -> dict[str, str]:
    """The headers gengate's sender puts on a callback (it signs with the same library)."""
    when = at or datetime.now(UTC)
    signature = Webhook(secret).sign("msg_1", when, body.decode())
    return {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": signature,
    }


def test_a_signed_callback_verifies_and_parses() -> None:
    payload = verify_callback(BODY, signed(), SECRET)
    assert payload["data"]["taskId"] == "task_1"
    status = parse_callback(payload)
    assert status.succeeded
    assert status.result_urls == ["http://gw/files/task_1/0.png"]


def test_header_names_in_any_case_and_an_email_message() -> None:
    upper = {name.title(): value for name, value in signed().items()}
    assert verify_callback(BODY.decode(), upper, SECRET)["code"] == 200
    message = Message()  # what http.server hands a handler as `self.headers`
    for name, value in signed().items():
        message[name] = value
    assert verify_callback(BODY, message, SECRET)["code"] == 200


def test_a_secret_the_gateway_derives_verifies() -> None:
    """The secret `GET /api/v1/account` shows is the one the sender signs with."""
    key = ApiKey(id="key_1", name="n", prefix="gg_x", key_hash="h", created_at=0)
    secret = webhook_secret(b"server-secret", key)
    assert verify_callback(BODY, signed(secret=secret), secret)["code"] == 200


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda h, b: (h, b.replace(b"success", b"failed!")), id="body changed"),
        pytest.param(lambda h, b: ({**h, "webhook-id": "msg_2"}, b), id="id changed"),
        pytest.param(
            lambda h, b: ({k: v for k, v in h.items() if k != "webhook-signature"}, b), id="unsigned"
        ),
        pytest.param(lambda h, b: ({**h, "webhook-signature": "v1"}, b), id="no comma"),
        pytest.param(lambda h, b: ({**h, "webhook-signature": "v1,@@@"}, b), id="not base64"),
        pytest.param(lambda h, b: ({**h, "webhook-timestamp": "soon"}, b), id="bad timestamp"),
        pytest.param(lambda h, b: (h, b"\xff\xfe"), id="not utf-8"),
        pytest.param(lambda h, b: (signed(b"[1, 2]"), b"[1, 2]"), id="not an object"),
    ],
)
def test_anything_else_is_one_error(tamper: object) -> None:
    headers, body = tamper(signed(), BODY)  # type: ignore[operator]
    with pytest.raises(CallbackVerificationError) as info:
        verify_callback(body, headers, SECRET)
    assert isinstance(info.value, GengateError)


def test_stale_and_future_timestamps_are_refused() -> None:
    for skew in (timedelta(minutes=-10), timedelta(minutes=10)):
        headers = signed(at=datetime.now(UTC) + skew)
        with pytest.raises(CallbackVerificationError, match="timestamp"):
            verify_callback(BODY, headers, SECRET)


def test_another_keys_secret_is_refused() -> None:
    other = "whsec_" + base64.b64encode(b"another-secret-24-bytes!").decode()
    with pytest.raises(CallbackVerificationError):
        verify_callback(BODY, signed(secret=other), SECRET)


def test_an_empty_secret_is_a_usage_error() -> None:
    with pytest.raises(ValueError, match="secret"):
        verify_callback(BODY, signed(), "")
