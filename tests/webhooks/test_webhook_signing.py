"""Signatures are Standard Webhooks' to the byte, with the secret decoded once per secret, not
once per callback (the sender signs thousands of bodies a second with a handful of secrets)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks import Webhook

from gengate.net.guard import CheckedTarget
from gengate.webhooks.signing import signature, signed_headers, signing_key

secrets_ = st.binary(min_size=1, max_size=64).map(lambda raw: "whsec_" + base64.b64encode(raw).decode())
bodies = st.text(max_size=300).map(str.encode)
message_ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=40)
timestamps = st.integers(min_value=0, max_value=4_000_000_000)


@given(secret=secrets_, message_id=message_ids, timestamp=timestamps, body=bodies)
def test_the_signature_is_standard_webhooks_byte_for_byte(
    secret: str, message_id: str, timestamp: int, body: bytes
) -> None:
    expected = Webhook(secret).sign(message_id, datetime.fromtimestamp(timestamp, UTC), body.decode())
    assert signature(secret, message_id, timestamp, body) == expected


def test_signed_headers_verify_with_the_library() -> None:
    secret = "whsec_" + base64.b64encode(b"k" * 24).decode()
    target = CheckedTarget("https://hooks.example/x", "https", "hooks.example", 443, "93.184.216.34", "/x")
    body = '{"data":{"taskId":"task_1","note":"é"}}'.encode()
    headers = signed_headers(target, "msg_1", body, secret)
    assert headers["host"] == "hooks.example"
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(secret).verify(body, headers) == {"data": {"taskId": "task_1", "note": "é"}}


def test_a_secret_is_decoded_once_however_many_bodies_it_signs() -> None:
    secret = "whsec_" + base64.b64encode(b"cache-me-once-please-24b").decode()
    signing_key.cache_clear()
    for i in range(50):
        signature(secret, f"msg_{i}", 1_800_000_000, b"{}")
    info = signing_key.cache_info()
    assert (info.misses, info.hits) == (1, 49)
    assert signing_key(secret) == base64.b64decode(secret.removeprefix("whsec_"))
