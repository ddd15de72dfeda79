"""Per-key webhook secrets, derived rather than stored.

The secret is an HMAC of the key's id and secret version under the server secret: the
database holds no callback secret at all, and rotating is bumping the version.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from gengate.domain.keys import ApiKey

PREFIX = "whsec_"


def webhook_secret(server_secret: bytes, key: ApiKey) -> str:
    """`whsec_` and 24 bytes in base64, the form Standard Webhooks libraries take."""
    message = f"gengate-webhook-secret:{key.id}:{key.webhook_secret_version}".encode()
    digest = hmac.new(server_secret, message, hashlib.sha256).digest()[:24]
    return PREFIX + base64.b64encode(digest).decode("ascii")
