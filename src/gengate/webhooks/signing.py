"""Standard Webhooks signatures, one HMAC per body.

`standardwebhooks.Webhook(secret)` base64-decodes the secret each time it is built and signs a
`str`; the sender signs thousands of bodies a second with a handful of secrets, so the decoded
key is cached per secret and the bytes are signed as they are. The signature is byte-identical to
`Webhook(secret).sign(msg_id, timestamp, body.decode())` (the tests check it with that library).
"""

from __future__ import annotations

import base64
import functools
import hmac
import time

from gengate.net.bounded import ACCEPT_ENCODING
from gengate.net.guard import CheckedTarget

USER_AGENT = "gengate-webhooks/1"
_PREFIX = "whsec_"


@functools.lru_cache(maxsize=4096)
def signing_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_...` secret (Standard Webhooks: the base64 after the prefix)."""
    return base64.b64decode(secret.removeprefix(_PREFIX) + "==")


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """`v1,` and the base64 HMAC-SHA256 of `{id}.{timestamp}.{body}` under the secret's key."""
    signed = b"%s.%d.%s" % (message_id.encode(), timestamp, body)
    return "v1," + base64.b64encode(hmac.digest(signing_key(secret), signed, "sha256")).decode()


def signed_headers(
    target: CheckedTarget, message_id: str, body: bytes, secret: str, user_agent: str = USER_AGENT
) -> dict[str, str]:
    """The headers of one signed POST to a checked address: Standard Webhooks' id, timestamp
    and signature (one HMAC over the body), and the `Host` of the URL the address came from."""
    timestamp = int(time.time())
    return {
        "content-type": "application/json",
        "user-agent": user_agent,
        "accept-encoding": ACCEPT_ENCODING,
        "host": target.host_header(),
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, message_id, timestamp, body),
    }
