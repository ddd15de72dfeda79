"""HTTPS: the certificate and key `gengate serve` is given, checked before anything starts.

uvicorn loads them itself (in each API process, wrapping the same httptools protocol, so the
header limits hold over TLS too); checked here first, a missing file or a key that does not
match the certificate is one line naming the file, not a traceback from inside uvicorn.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from gengate.settings import Settings
from gengate.startup import StartupError, reason


def check_tls(settings: Settings) -> None:
    """Load the certificate and key once, as uvicorn will; a StartupError says what is wrong."""
    certfile, keyfile = settings.ssl_certfile, settings.ssl_keyfile
    if certfile is None:
        return
    for what, path, setting in (
        ("certificate", certfile, "--ssl-certfile or GENGATE_SSL_CERTFILE"),
        ("key", keyfile, "--ssl-keyfile or GENGATE_SSL_KEYFILE"),
    ):
        if path is not None and not Path(path).is_file():
            raise StartupError(f"TLS {what} file {path} does not exist or is not a file: check {setting}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(certfile, keyfile)
    except (ssl.SSLError, OSError) as exc:
        files = f"{certfile} and {keyfile}" if keyfile is not None else str(certfile)
        raise StartupError(
            f"cannot serve HTTPS with {files}: {reason(exc)}; give a PEM certificate chain and its "
            "private key (--ssl-certfile, --ssl-keyfile)"
        ) from None


def tls_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's TLS options for the settings (none without a certificate)."""
    if settings.ssl_certfile is None:
        return {}
    options: dict[str, Any] = {"ssl_certfile": str(settings.ssl_certfile)}
    if settings.ssl_keyfile is not None:
        options["ssl_keyfile"] = str(settings.ssl_keyfile)
    return options
