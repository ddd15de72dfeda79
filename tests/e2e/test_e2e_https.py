"""`gengate serve` over HTTPS, with a CA and a server certificate the test makes (trustme).

The flags and the `GENGATE_SSL_*` variables both serve HTTPS; result URLs then use https and
download over it; the connection limits still hold under TLS; a certificate that cannot be
used stops the start with one line naming it, not a traceback.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from PIL import Image

pytestmark = pytest.mark.e2e

Launcher = Any


@dataclass(frozen=True)
class Tls:
    """A CA file for clients, and the server's certificate chain and key as separate files and as one."""

    ca: str
    cert: Path
    key: Path
    combined: Path

    def flags(self) -> tuple[str, ...]:
        return ("--ssl-certfile", str(self.cert), "--ssl-keyfile", str(self.key))


def make_tls(folder: Path) -> Tls:
    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    tls = Tls(str(folder / "ca.pem"), folder / "cert.pem", folder / "key.pem", folder / "both.pem")
    ca.cert_pem.write_to_path(tls.ca)
    for blob in issued.cert_chain_pems:
        blob.write_to_path(str(tls.cert), append=True)
    issued.private_key_pem.write_to_path(str(tls.key))
    issued.private_key_and_cert_chain_pem.write_to_path(str(tls.combined))
    return tls


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    return make_tls(tmp_path_factory.mktemp("tls"))


def run_image_task(server: Any) -> tuple[str, bytes]:
    """An image task through APIXO: its one result URL, and the PNG downloaded from it."""
    key = server.create_key("https")["key"]
    task_id = server.submit_ok(key, "demo-image", {"prompt": "over tls", "width": 72, "height": 40})
    data = server.wait_task(key, "demo-image", task_id)
    assert data["state"] == "success", data
    [url] = json.loads(data["resultJson"])["resultUrls"]
    download = server.http.get(url)
    assert download.status_code == 200
    return url, download.content


def test_serve_with_flags_answers_https_and_result_urls_use_it(start_gengate: Launcher, tls: Tls) -> None:
    server = start_gengate("https-flags", extra_args=tls.flags(), https_ca=tls.ca)
    assert server.base_url.startswith("https://")
    assert "listening on https://127.0.0.1" in server.stderr()
    url, png = run_image_task(server)
    assert url.startswith(f"https://127.0.0.1:{server.port}/files/"), url
    assert Image.open(io.BytesIO(png)).size == (72, 40)
    # Plain HTTP to the same port gets no answer an HTTP client can read.
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=5)
    # A client that does not trust the CA refuses the server.
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"https://127.0.0.1:{server.port}/healthz", timeout=5)


def test_serve_with_variables_and_a_combined_file(start_gengate: Launcher, tls: Tls) -> None:
    server = start_gengate("https-env", env={"GENGATE_SSL_CERTFILE": str(tls.combined)}, https_ca=tls.ca)
    url, png = run_image_task(server)
    assert url.startswith("https://"), url
    assert png.startswith(b"\x89PNG")


def test_connection_limits_hold_under_tls(start_gengate: Launcher, tls: Tls) -> None:
    server = start_gengate(
        "https-limits", extra_args=tls.flags(), https_ca=tls.ca, env={"GENGATE_MAX_HEADER_BYTES": "4096"}
    )
    response = server.http.get("/healthz", headers={"X-Big": "x" * 8000})
    assert response.status_code == 431, response.text
    assert response.json()["error"]["code"] == "bad_request"
    assert server.http.get("/healthz").status_code == 200  # the next connection is served as ever


@pytest.mark.parametrize("problem", ["missing certificate", "missing key", "key of another certificate"])
def test_a_certificate_that_cannot_be_used_is_one_line(
    start_gengate: Launcher, tls: Tls, tmp_path: Path, problem: str
) -> None:
    cert, key = str(tls.cert), str(tls.key)
    if problem == "missing certificate":
        cert = str(tmp_path / "nope.pem")
    elif problem == "missing key":
        key = str(tmp_path / "nokey.pem")
    else:
        key = str(make_tls(tmp_path / "other").key)
    server = start_gengate(
        "https-bad", extra_args=("--ssl-certfile", cert, "--ssl-keyfile", key), wait_healthy=False
    )
    assert server.process.wait(30) == 1
    stderr = server.stderr()
    assert "Traceback" not in stderr, stderr
    [line] = [text for text in stderr.splitlines() if text.strip()]
    assert line.startswith("Error: "), line
    named = {"missing certificate": cert, "missing key": key, "key of another certificate": key}[problem]
    assert named in line, line
