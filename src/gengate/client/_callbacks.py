"""Checking a callback's Standard Webhooks signature on the receiving side.

gengate signs each callback with the key's `whsec_...` secret (`GET /api/v1/account`): the
`webhook-id`, `webhook-timestamp` and `webhook-signature` headers. The check is the
`standardwebhooks` library's; this wrapper makes every way a request can fail it one error, so a
receiver needs one `except` to answer 400 rather than crash on a malformed header.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook, WebhookVerificationError

from gengate.wire.errors import CallbackVerificationError, ProtocolError
from gengate.wire.parse import parse_status
from gengate.wire.status import TaskStatus


class HeaderItems(Protocol):
    """Anything with `items()`: a dict, Starlette's `Headers`, http.server's `self.headers`."""

    def items(self) -> Iterable[tuple[str, str]]: ...


def verify_callback(body: bytes | str, headers: HeaderItems, secret: str) -> dict[str, Any]:
    """The callback's JSON body once its signature is checked against `secret`.

    `body` must be the raw bytes received (not re-serialised JSON). Raises `CallbackVerificationError`
    when the signature is missing, forged, for another secret, or its timestamp is over 5 minutes off
    (a replay); `ValueError` when `secret` itself is empty or not a `whsec_` secret.
    """
    if not secret:
        raise ValueError("the webhook secret is empty: read it from GET /api/v1/account")
    try:
        verifier = Webhook(secret)
    except (ValueError, EmptyWebhookSecretError) as exc:  # not base64, or "whsec_" alone
        raise ValueError(f"not a webhook secret: {exc}") from exc
    lowered = {name.lower(): value for name, value in headers.items()}
    try:
        payload = verifier.verify(body, lowered)
    except WebhookVerificationError as exc:
        raise CallbackVerificationError(str(exc)) from exc
    except (ValueError, TypeError) as exc:  # a header without "v1,", bad base64, a body not UTF-8
        raise CallbackVerificationError(f"malformed callback: {exc}") from exc
    if not isinstance(payload, dict):
        raise CallbackVerificationError("the callback body is not a JSON object")
    return payload


def parse_callback(payload: dict[str, Any]) -> TaskStatus:
    """The task a verified callback reports, for tasks submitted with `generateTask` (as the SDK does):
    its body is the `statusTask` answer."""
    data = payload.get("data")
    if not isinstance(data, dict):
        raise ProtocolError("callback without a `data` object")
    return parse_status(data)
