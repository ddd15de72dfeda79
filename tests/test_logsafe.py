"""Log lines never carry a secret-looking URL parameter, and at INFO never a URL's query at all.

Records go through the real logging machinery with the scrubbing record factory installed,
including httpx's own `HTTP Request: ...` lines for a real request to a loopback server.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from gengate import logsafe

SECRET = "s3cr3tVALUE0123456789"
#: The parameter names the issue saw logged in clear.
REPORTED = ("client_secret", "X-Amz-Signature", "access_key", "code", "session", "hmac", "pwd")
#: Other spellings and look-alikes of the same kind.
LOOK_ALIKES = (
    "CLIENT_SECRET",
    "x-amz-signature",
    "Access_Key",
    "CODE",
    "Session",
    "HMAC",
    "PWD",
    "X-Amz-Credential",
    "X-Amz-Security-Token",
    "sessionid",
    "auth_code",
    "hmac_sha256",
    "db_password",
    "passwd",
    "apiKey",
    "refresh_token",
    "client%5Fsecret",  # an underscore written as %5F
    "%73ecret",  # "secret" with its first letter percent-encoded
)


@pytest.fixture(autouse=True)
def scrubbing() -> Iterator[None]:
    previous = logging.getLogRecordFactory()
    logsafe.install()
    yield
    logging.setLogRecordFactory(previous)


def logged(level: int, message: str, *args: Any) -> str:
    """The formatted text of one record logged at `level`."""
    record = logging.getLogger("gengate.test").makeRecord(
        "gengate.test", level, __file__, 1, message, args, None
    )
    return logging.Formatter("%(levelname)s %(message)s").format(record)


@pytest.mark.parametrize("name", REPORTED + LOOK_ALIKES)
def test_a_secret_looking_parameter_is_redacted_at_debug(name: str) -> None:
    url = f"https://hooks.example.com/cb?{name}={SECRET}&page=2"
    text = logged(logging.DEBUG, "sending to %s", url)
    assert SECRET not in text
    assert "[redacted]" in text
    assert "https://hooks.example.com/cb?" in text
    assert "page=2" in text, "a harmless parameter is kept at debug level"


@pytest.mark.parametrize("level", [logging.INFO, logging.WARNING, logging.ERROR])
@pytest.mark.parametrize("name", REPORTED + LOOK_ALIKES)
def test_at_info_and_above_a_url_keeps_no_query(name: str, level: int) -> None:
    url = f"https://hooks.example.com/cb/in?{name}={SECRET}&page=2"
    text = logged(level, "sending to %s now", url)
    assert SECRET not in text
    assert "page=2" not in text
    assert "https://hooks.example.com/cb/in?[2 params] now" in text


@pytest.mark.parametrize(
    "value",
    [
        "AKIAIOSFODNN7EXAMPLE",  # an AWS access key id
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",  # a JWT
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",  # a hex digest
        "Zm9vYmFyYmF6cXV4UVVVWHF1dXgxMjM0NTY3ODkw",  # long random-looking base64
    ],
)
def test_a_value_that_looks_like_a_credential_is_redacted_whatever_its_name(value: str) -> None:
    text = logged(logging.DEBUG, "GET https://example.com/a?state=%s&page=2", value)
    assert value not in text
    assert "page=2" in text


def test_a_credential_value_followed_by_punctuation_is_redacted() -> None:
    token = "2~abcDEF123ghiJKL456mnoPQR789stuVWX"
    text = logged(logging.DEBUG, "request: url=https://b.example/k?uploadId=%s, headers={}", token)
    assert token not in text


@pytest.mark.parametrize(
    "value", ["task_Xy3kP0qLmN8vR2sT6wZa1b", "4f1c2d3e-5a6b-4c7d-8e9f-0a1b2c3d4e5f", "png", "1024"]
)
def test_ids_and_plain_values_stay_readable_at_debug(value: str) -> None:
    text = logged(logging.DEBUG, "GET https://example.com/a?taskId=%s", value)
    assert f"taskId={value}" in text


def test_free_text_assignments_of_secret_names_are_redacted() -> None:
    text = logged(
        logging.DEBUG,
        "headers {'Authorization': b'AWS4-HMAC-SHA256 Credential=AKIAXX/20250101/us-east-1/s3/aws4_request, "
        "SignedHeaders=host, Signature=%s'} client_secret=%s",
        SECRET,
        SECRET + "2",
    )
    assert SECRET not in text
    assert "AKIAXX/" not in text


class _Quiet(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_httpx_request_lines_carry_no_query(receiver: str, caplog: pytest.LogCaptureFixture) -> None:
    """httpx logs each request at INFO with its full URL: the line keeps only the count."""
    query = "&".join(f"{name}={SECRET}{i}" for i, name in enumerate(REPORTED + LOOK_ALIKES))
    caplog.set_level(logging.DEBUG)
    with httpx.Client() as client:
        assert client.post(f"{receiver}/hook?{query}", content=b"{}").status_code == 204
    lines = [line for line in caplog.text.splitlines() if "HTTP Request: POST" in line]
    assert len(lines) == 1, "httpx logged no request line"
    assert SECRET not in lines[0]
    assert f"{receiver}/hook?[{len(REPORTED + LOOK_ALIKES)} params] " in lines[0]
