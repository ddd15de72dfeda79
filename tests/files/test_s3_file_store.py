"""S3FileStore against a real S3-compatible server on loopback: upload, presigned URLs, delete."""

from __future__ import annotations

import hashlib
import os
import time
import tracemalloc
from calendar import timegm
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from boto3.s3.transfer import TransferConfig

from gengate.domain.files import OutputFile
from gengate.domain.task import ResultFile
from gengate.files.factory import build_file_store
from gengate.files.local import LocalFileStore
from gengate.files.presign import MAX_EXPIRES_S
from gengate.files.s3 import S3FileStore, S3Location
from gengate.files.signing import UrlSigner
from gengate.settings import Settings, load_settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

REGION = "us-east-1"
MIB = 1 << 20
HOUR_MS = 3_600_000


def make_store(bucket: str, endpoint: str, root: Path, lifetime_s: int = 3600) -> S3FileStore:
    return S3FileStore(
        S3Location(bucket, "results"),
        staging_root=root / "staging",
        region=REGION,
        url_lifetime_s=lifetime_s,
        endpoint_url=endpoint,
        # S3's smallest part is 5 MiB: anything over that goes up in parts. One part at a time,
        # so that memory held during an upload is one part's worth, whatever the timing.
        transfer_config=TransferConfig(
            multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB, max_concurrency=1
        ),
    )


@pytest.fixture
def store(bucket: str, s3_endpoint: str, tmp_path: Path) -> S3FileStore:
    return make_store(bucket, s3_endpoint, tmp_path)


def stage(store: S3FileStore, task_id: str, files: dict[str, bytes], attempt: int = 1) -> list[OutputFile]:
    folder = store.staging_dir(task_id, attempt)
    outputs = []
    for name, data in files.items():
        (folder / name).write_bytes(data)
        outputs.append(OutputFile(folder / name, "image/png"))
    return outputs


def keys(s3: S3Client, bucket: str) -> set[str]:
    return {item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}


def now_ms() -> int:
    return int(time.time() * 1000)


def auth_params(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


def test_staging_dir_is_empty_and_under_the_data_dir(store: S3FileStore, tmp_path: Path) -> None:
    folder = store.staging_dir("task_a", 1)
    assert folder == tmp_path / "staging" / "task_a.1"
    (folder / "leftover.png").write_bytes(b"old")
    assert list(store.staging_dir("task_a", 1).iterdir()) == []


async def test_save_uploads_under_prefix_and_drops_staging(
    store: S3FileStore, bucket: str, s3_client: S3Client
) -> None:
    outputs = stage(store, "task_a", {"0.png": b"zero", "1.png": b"one!"})
    saved = await store.save("task_a", outputs)
    assert saved == (ResultFile("0.png", "image/png", 4), ResultFile("1.png", "image/png", 4))
    assert keys(s3_client, bucket) == {"results/task_a/0.png", "results/task_a/1.png"}
    head = s3_client.head_object(Bucket=bucket, Key="results/task_a/1.png")
    assert head["ContentType"] == "image/png"
    assert not outputs[0].path.parent.exists()


async def test_presigned_url_serves_the_bytes_until_expiry(store: S3FileStore) -> None:
    saved = await store.save("task_a", stage(store, "task_a", {"0.png": b"\x89PNG bytes"}))
    expires_ms = now_ms() + HOUR_MS + 123
    url = store.url("task_a", saved[0], expires_ms)
    assert url == store.url("task_a", saved[0], expires_ms), "the same URL on every read"
    params = auth_params(url)
    signed_s = timegm(time.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ"))
    assert signed_s + int(params["X-Amz-Expires"]) == expires_ms // 1000
    async with httpx.AsyncClient() as http:
        response = await http.get(url)
    assert response.status_code == 200
    assert response.content == b"\x89PNG bytes"
    assert response.headers["content-type"] == "image/png"


async def test_expired_url_is_refused(store: S3FileStore) -> None:
    saved = await store.save("task_a", stage(store, "task_a", {"0.png": b"x"}))
    async with httpx.AsyncClient() as http:
        response = await http.get(store.url("task_a", saved[0], now_ms() - 2000))
    assert response.status_code == 403
    assert "expired" in response.text


async def test_tampered_urls_are_refused(store: S3FileStore) -> None:
    saved = await store.save("task_a", stage(store, "task_a", {"0.png": b"a", "1.png": b"b"}))
    url = store.url("task_a", saved[0], now_ms() + HOUR_MS)
    params = auth_params(url)
    forged = [
        url.replace("/task_a/0.png", "/task_a/1.png"),
        url.replace(f"X-Amz-Expires={params['X-Amz-Expires']}", f"X-Amz-Expires={MAX_EXPIRES_S}"),
        url[:-1] + ("0" if url[-1] != "0" else "1"),
    ]
    async with httpx.AsyncClient() as http:
        assert (await http.get(url)).status_code == 200
        for bad in forged:
            response = await http.get(bad)
            assert response.status_code == 403, bad
            assert "SignatureDoesNotMatch" in response.text


async def test_names_that_need_escaping_sign_and_download(store: S3FileStore) -> None:
    name = "résumé 1+2=3 (final)~.png"
    saved = await store.save("task_a", stage(store, "task_a", {name: b"escaped"}))
    async with httpx.AsyncClient() as http:
        response = await http.get(store.url("task_a", saved[0], now_ms() + HOUR_MS))
    assert response.status_code == 200
    assert response.content == b"escaped"


async def test_temporary_credentials_sign_with_their_token(
    bucket: str, s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SESSION_TOKEN", "FwoGZX+token/with=signs")
    store = make_store(bucket, s3_endpoint, tmp_path)
    saved = await store.save("task_a", stage(store, "task_a", {"0.png": b"temp"}))
    url = store.url("task_a", saved[0], now_ms() + HOUR_MS)
    assert auth_params(url)["X-Amz-Security-Token"] == "FwoGZX+token/with=signs"
    async with httpx.AsyncClient() as http:
        assert (await http.get(url)).content == b"temp"
        response = await http.get(url.replace("with%3Dsigns", "with%3Dsign"))
    assert response.status_code == 403


async def test_ttl_over_seven_days_is_clamped(bucket: str, s3_endpoint: str, tmp_path: Path) -> None:
    store = make_store(bucket, s3_endpoint, tmp_path, lifetime_s=30 * 86_400)
    saved = await store.save("task_a", stage(store, "task_a", {"0.png": b"long"}))
    fresh = store.url("task_a", saved[0], now_ms() + 29 * 86_400_000)  # completed a day ago
    assert auth_params(fresh)["X-Amz-Expires"] == str(MAX_EXPIRES_S)
    late_expiry_ms = now_ms() + 86_400_000  # completed 29 days ago: the last week is exact
    late = store.url("task_a", saved[0], late_expiry_ms)
    assert late == store.url("task_a", saved[0], late_expiry_ms)
    async with httpx.AsyncClient() as http:
        assert (await http.get(fresh)).content == b"long"
        assert (await http.get(late)).content == b"long"


async def test_big_file_goes_up_in_parts_streamed_from_disk(
    store: S3FileStore, bucket: str, s3_client: S3Client
) -> None:
    folder = store.staging_dir("task_big", 1)
    path = folder / "big.bin"
    size = 12 * MIB + 7
    with path.open("wb") as out:
        for _ in range(size // MIB):
            out.write(os.urandom(MIB))
        out.write(os.urandom(size % MIB))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    tracemalloc.start()
    try:
        saved = await store.save("task_big", [OutputFile(path, "application/octet-stream")])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert saved == (ResultFile("big.bin", "application/octet-stream", size),)
    # One 5 MiB part and the client's buffers (6.2-6.5 MiB seen), never the 12 MiB file.
    assert peak < size * 3 // 4, f"upload held {peak} bytes of a {size}-byte file in memory"
    head = s3_client.head_object(Bucket=bucket, Key="results/task_big/big.bin")
    assert head["ContentLength"] == size
    assert head["ETag"].strip('"').endswith("-3"), "uploaded as 3 parts"
    fetched = hashlib.sha256()
    async with (
        httpx.AsyncClient() as http,
        http.stream("GET", store.url("task_big", saved[0], now_ms() + HOUR_MS)) as response,
    ):
        assert response.status_code == 200
        async for chunk in response.aiter_bytes():
            fetched.update(chunk)
    assert fetched.hexdigest() == digest


@pytest.mark.parametrize("task_id", ["", "../x", ".staging", "a/b", "a\\b", "a\0b"])
def test_unsafe_task_ids_are_refused(store: S3FileStore, task_id: str) -> None:
    with pytest.raises(ValueError, match="Unsafe task id"):
        store.staging_dir(task_id, 1)


async def test_unsafe_outputs_are_refused_and_nothing_is_uploaded(
    store: S3FileStore, bucket: str, s3_client: S3Client, tmp_path: Path
) -> None:
    folder = store.staging_dir("task_a", 1)
    (folder / "ok.png").write_bytes(b"ok")
    (folder / ".hidden").write_bytes(b"h")
    outside = tmp_path / "secret.txt"
    outside.write_bytes(b"secret")
    (folder / "link.png").symlink_to(outside)
    other = store.staging_dir("task_b", 1)
    (other / "b.png").write_bytes(b"b")
    cases = {
        "Unsafe file name": [OutputFile(folder / ".hidden", "text/plain")],
        "outside the staging folder": [OutputFile(outside, "text/plain")],
        "outside this task's staging folder": [OutputFile(other / "b.png", "image/png")],
        "not a regular file": [OutputFile(folder / "link.png", "image/png")],
        "duplicate file names": [OutputFile(folder / "ok.png", "image/png")] * 2,
    }
    for message, outputs in cases.items():
        with pytest.raises(ValueError, match=message):
            await store.save("task_a", [OutputFile(folder / "ok.png", "image/png"), *outputs])
    assert keys(s3_client, bucket) == set()


async def test_delete_removes_only_that_task_and_is_idempotent(
    store: S3FileStore, bucket: str, s3_client: S3Client, tmp_path: Path
) -> None:
    saved = await store.save("task_1", stage(store, "task_1", {"0.png": b"1", "1.png": b"2"}))
    await store.save("task_10", stage(store, "task_10", {"0.png": b"10"}))
    leftover = store.staging_dir("task_1", 2)  # a crashed attempt's folder
    url = store.url("task_1", saved[0], now_ms() + HOUR_MS)
    await store.delete("task_1")
    assert keys(s3_client, bucket) == {"results/task_10/0.png"}
    assert not leftover.exists()
    async with httpx.AsyncClient() as http:
        assert (await http.get(url)).status_code == 404
    await store.delete("task_1")
    await store.delete("task_never_saved")
    assert keys(s3_client, bucket) == {"results/task_10/0.png"}


async def test_failed_upload_raises_and_drops_staging(
    s3_endpoint: str, aws_env: None, tmp_path: Path
) -> None:
    store = make_store("gengate-no-such-bucket", s3_endpoint, tmp_path)
    outputs = stage(store, "task_a", {"0.png": b"x"})
    with pytest.raises(Exception, match="NoSuchBucket"):
        await store.save("task_a", outputs)
    assert not outputs[0].path.parent.exists()


@pytest.mark.parametrize(
    ("url", "location"),
    [
        ("s3://bucket", S3Location("bucket", "")),
        ("s3://bucket/", S3Location("bucket", "")),
        ("s3://my-bucket.v2/a/b/", S3Location("my-bucket.v2", "a/b")),
    ],
)
def test_s3_location_parses(url: str, location: S3Location) -> None:
    assert S3Location.parse(url) == location


@pytest.mark.parametrize(
    "url", ["s3://", "s3:///prefix", "s3://user@bucket/p", "s3://b/../x", "s3://b/p?x=1", "gs://b/p"]
)
def test_bad_s3_locations_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="S3 location"):
        S3Location.parse(url)


def test_factory_picks_the_store_from_settings(
    settings: Settings, s3_endpoint: str, aws_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    signer = UrlSigner(b"secret")
    assert isinstance(build_file_store(load_settings(data_dir=tmp_path), signer), LocalFileStore)
    monkeypatch.setenv("GENGATE_FILES_URL", "s3://bucket/results")
    monkeypatch.setenv("GENGATE_S3_ENDPOINT_URL", s3_endpoint)
    store = build_file_store(load_settings(data_dir=tmp_path), signer)
    assert isinstance(store, S3FileStore)
    assert store.staging_dir("task_a", 3) == tmp_path / "staging" / "task_a.3"
    url = store.url("task_a", ResultFile("0.png", "image/png", 1), now_ms() + HOUR_MS)
    assert url.startswith(f"{s3_endpoint}/bucket/results/task_a/0.png?X-Amz-Algorithm=AWS4-HMAC-SHA256&")
    with pytest.raises(ValueError, match="unsupported files URL 'ftp://x/y'"):
        build_file_store(load_settings(data_dir=tmp_path, files_url="ftp://x/y"), signer)


def test_aws_urls_are_virtual_hosted(aws_env: None, tmp_path: Path) -> None:
    store = S3FileStore(
        S3Location("results-bucket", "p"), staging_root=tmp_path, region="eu-west-3", url_lifetime_s=60
    )
    url = store.url("task_a", ResultFile("0.png", "image/png", 1), now_ms() + 60_000)
    assert url.startswith("https://results-bucket.s3.eu-west-3.amazonaws.com/p/task_a/0.png?")
    assert "%2Feu-west-3%2Fs3%2Faws4_request" in url


def test_missing_credentials_are_a_clear_error(
    aws_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(ValueError, match="AWS_ACCESS_KEY_ID"):
        S3FileStore(S3Location("b", ""), staging_root=tmp_path, region=REGION, url_lifetime_s=60)
