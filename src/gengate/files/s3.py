"""Results in an S3-compatible bucket, served by the bucket itself through presigned URLs.

Providers still write to a local folder (`<staging_root>/<task_id>.<attempt>/`); `save`
uploads each file to `<prefix>/<task_id>/<name>` and then removes that folder. Result URLs
point at the bucket, so the gateway serves no `/files/` route in this setup.

Why boto3 (not aiobotocore): it is AWS's own SDK, released with every service change, while
aiobotocore pins narrow botocore ranges and lags behind it. Above all boto3 brings the
transfer manager (s3transfer): files streamed from disk, multipart with parallel parts for
big ones, retries. Its uploads run on the manager's own threads and report back to the
event loop when done, so a slow upload holds no event-loop time and none of the loop's
default executor; only the short list and delete calls of `delete` run in `to_thread`.
Result URLs are signed by :mod:`gengate.files.presign` without the SDK (fast, no I/O).

URL expiry follows the local store's rule: a URL dies `result_ttl` after completion,
rounded down to the second. A URL is signed at completion time with a lifetime of
`result_ttl`, so every read gives the same URL. SigV4 caps a presigned URL at 7 days: with
a longer `result_ttl`, a URL is signed when it is handed out and lives 7 days, or until the
result expires if that is sooner; a later read gives a fresh one.

Credentials come from boto3's standard chain (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
`AWS_SESSION_TOKEN`, profiles, ...), resolved once at start. URLs signed with temporary
credentials also die when those credentials do, and refreshing ones (an assumed role,
instance metadata) refresh inside `url` when due: a rare blocking call on the status path
that long-lived keys never make.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import re
import shutil
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import boto3
from boto3.s3.transfer import TransferConfig, create_transfer_manager
from botocore.config import Config
from s3transfer.subscribers import BaseSubscriber

from gengate.domain.files import OutputFile
from gengate.domain.task import ResultFile

# The local store's checks, shared: the same names are safe, and staging works alike.
from gengate.files.local import _check_name, _is_staging_of, check_outputs, empty_dir, is_safe_name
from gengate.files.presign import MAX_EXPIRES_S, Presigner

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef
    from s3transfer.futures import TransferFuture

#: Bucket names as S3-compatible servers accept them (AWS is stricter; its server says so).
_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")


@dataclass(frozen=True, slots=True)
class S3Location:
    """Where results go, from `s3://bucket/prefix`: `bucket`, and `prefix` ("" for none)."""

    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> S3Location:
        parts = urlsplit(url)
        if parts.scheme != "s3" or parts.query or parts.fragment or not _BUCKET.fullmatch(parts.netloc):
            raise ValueError(f"Not an S3 location: {url!r}; expected s3://bucket or s3://bucket/prefix.")
        prefix = parts.path.strip("/")
        if prefix and not all(is_safe_name(part) for part in prefix.split("/")):
            raise ValueError(f"Unsafe prefix in S3 location {url!r}.")
        return cls(parts.netloc, prefix)

    def key(self, task_id: str, name: str) -> str:
        """The object key of one result file; with `name=""`, the prefix of a task's files."""
        return f"{self.prefix}/{task_id}/{name}" if self.prefix else f"{task_id}/{name}"


class S3FileStore:
    """A :class:`~gengate.files.base.FileStore` on one bucket (AWS S3, MinIO, Ceph, R2, ...).

    With `endpoint_url` (a non-AWS server) objects are addressed path-style,
    `<endpoint_url>/<bucket>/<key>`; without it, AWS's virtual-hosted style.
    `url_lifetime_s` is `result_ttl`.
    """

    def __init__(
        self,
        location: S3Location,
        *,
        staging_root: Path,
        region: str,
        url_lifetime_s: int,
        endpoint_url: str | None = None,
        transfer_config: TransferConfig | None = None,
    ) -> None:
        self._location = location
        self._staging = staging_root
        self._lifetime_s = min(url_lifetime_s, MAX_EXPIRES_S)
        session = boto3.session.Session()
        credentials = session.get_credentials()
        if credentials is None:
            raise ValueError(
                "No credentials for the S3 file store: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY."
            )
        self._client: S3Client = session.client(
            "s3", region_name=region, endpoint_url=endpoint_url, config=_client_config(region, endpoint_url)
        )
        self._transfers = create_transfer_manager(self._client, transfer_config or TransferConfig())
        self._presigner = Presigner(
            _objects_url(location.bucket, region, endpoint_url), region, credentials.get_frozen_credentials
        )

    def staging_path(self, task_id: str, attempt: int) -> Path:
        _check_name(task_id, "task id")
        return self._staging / f"{task_id}.{int(attempt)}"

    def staging_dir(self, task_id: str, attempt: int) -> Path:
        """An empty `<staging_root>/<task_id>.<attempt>`; a leftover of a crashed run is emptied."""
        return empty_dir(self.staging_path(task_id, attempt))

    async def save(
        self, task_id: str, outputs: Sequence[OutputFile], *, first_attempt: bool = False
    ) -> tuple[ResultFile, ...]:
        """Upload the outputs (all at once, each streamed from disk), then drop their staging folder."""
        _check_name(task_id, "task id")
        outputs = tuple(outputs)
        sizes, stagings = await asyncio.to_thread(check_outputs, self._staging, task_id, outputs)
        try:
            uploads = [
                self._upload(
                    output.path if output.data is None else io.BytesIO(output.data),
                    self._location.key(task_id, output.path.name),
                    output.content_type,
                )
                for output in outputs
            ]
            await _all_or_cancel(uploads)
        finally:
            await asyncio.to_thread(_remove_trees, stagings)
        return tuple(
            ResultFile(output.path.name, output.content_type, size)
            for output, size in zip(outputs, sizes, strict=True)
        )

    async def _upload(self, source: Path | io.BytesIO, key: str, content_type: str) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        transfer = self._transfers.upload(
            source if isinstance(source, io.BytesIO) else str(source),
            self._location.bucket,
            key,
            extra_args={"ContentType": content_type},
            subscribers=[_OnDone(loop, done)],
        )
        try:
            await done
        except asyncio.CancelledError:
            transfer.cancel()
            raise

    def url(self, task_id: str, file: ResultFile, expires_ms: int) -> str:
        """The presigned GET URL; signing is hashing only, since every status read asks for one."""
        expires_s = expires_ms // 1000
        signed_s = expires_s - self._lifetime_s
        # Not in the future: with result_ttl over 7 days, or with this clock behind the worker's.
        signed_s = min(signed_s, int(time.time()))
        lifetime_s = min(expires_s - signed_s, MAX_EXPIRES_S)
        return self._presigner.url(self._location.key(task_id, file.name), signed_s, lifetime_s)

    async def delete(self, task_id: str, names: Sequence[str] = ()) -> None:
        """Remove the task's objects and any staging leftovers of crashed attempts. Objects are
        listed by the task's prefix whatever `names` says: one request per thousand objects,
        and it also finds the parts of an upload that crashed before the task recorded them."""
        del names
        _check_name(task_id, "task id")
        await asyncio.to_thread(self._delete, task_id)

    async def close(self) -> None:
        """Stop the transfer threads and close the client's connections."""
        await asyncio.to_thread(self._transfers.shutdown)
        self._client.close()

    def _delete(self, task_id: str) -> None:
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self._location.bucket, Prefix=self._location.key(task_id, "")
        )
        for page in pages:
            keys: list[ObjectIdentifierTypeDef] = [
                {"Key": item["Key"]} for item in page.get("Contents", []) if "Key" in item
            ]
            if not keys:
                continue
            # A page holds at most 1,000 keys: exactly what one DeleteObjects takes.
            answer = self._client.delete_objects(
                Bucket=self._location.bucket, Delete={"Objects": keys, "Quiet": True}
            )
            if errors := answer.get("Errors"):
                raise OSError(f"S3 refused to delete {len(errors)} objects of {task_id}: {errors[0]}.")
        leftovers: list[Path] = []
        with contextlib.suppress(FileNotFoundError), os.scandir(self._staging) as entries:
            leftovers = [Path(entry.path) for entry in entries if _is_staging_of(task_id, entry.name)]
        _remove_trees(leftovers)


class _OnDone(BaseSubscriber):
    """Hands a finished upload's outcome to the event loop; s3transfer calls it on its own thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, done: asyncio.Future[None]) -> None:
        self._loop = loop
        self._done = done

    def on_done(self, future: TransferFuture, **kwargs: Any) -> None:
        error: BaseException | None = None
        try:
            future.result()
        except BaseException as exc:  # handed on, raised in the awaiting task
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            self._loop.call_soon_threadsafe(_settle, self._done, error)


def _settle(done: asyncio.Future[None], error: BaseException | None) -> None:
    if done.done():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)


async def _all_or_cancel(uploads: list[Coroutine[Any, Any, None]]) -> None:
    """Await every upload; on the first failure cancel the others, then raise it."""
    tasks = [asyncio.ensure_future(upload) for upload in uploads]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _client_config(region: str, endpoint_url: str | None) -> Config:
    if endpoint_url is None:
        return Config(region_name=region, signature_version="s3v4", retries={"mode": "standard"})
    # Other servers: path-style addressing (no per-bucket DNS names), and checksums only where
    # S3 requires them, since several servers refuse the newer default ones.
    return Config(
        region_name=region,
        signature_version="s3v4",
        retries={"mode": "standard"},
        s3={"addressing_style": "path"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )


def _objects_url(bucket: str, region: str, endpoint_url: str | None) -> str:
    """The URL object keys are appended to."""
    if endpoint_url is not None:
        return f"{endpoint_url.rstrip('/')}/{bucket}"
    if "." in bucket:  # a dotted bucket name breaks TLS as a host name
        return f"https://s3.{region}.amazonaws.com/{bucket}"
    return f"https://{bucket}.s3.{region}.amazonaws.com"


def _remove_trees(paths: list[Path] | set[Path]) -> None:
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)
