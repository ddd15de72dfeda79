"""An S3-compatible server on loopback (tests/files/s3_server.py), one per test session.

Each test gets a fresh bucket, and AWS credentials that only this server knows, set the
way an operator sets them: in the standard environment variables.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

ACCESS_KEY = "gengate-test-access-key"
SECRET_KEY = "gengate-test-secret-key"
REGION = "us-east-1"
SERVER = Path(__file__).with_name("s3_server.py")


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = (tmp_path_factory.mktemp("s3") / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, str(SERVER), ACCESS_KEY, SECRET_KEY],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = process.stdout.readline().strip()
        assert port.isdigit(), f"the S3 server did not start; see {log.name}"
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The test server's credentials, and nothing from this machine's AWS set-up."""
    for name in ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def s3_client(s3_endpoint: str) -> S3Client:
    """A plain boto3 client, for what the tests set up and look at behind the store's back."""
    return boto3.session.Session().client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(s3={"addressing_style": "path"}),
    )


@pytest.fixture
def bucket(s3_client: S3Client, aws_env: None) -> str:
    name = f"gengate-{uuid.uuid4().hex[:16]}"
    s3_client.create_bucket(Bucket=name)
    return name
