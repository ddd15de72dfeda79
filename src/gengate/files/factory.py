"""The file store the settings ask for: the local folder, or an S3-compatible bucket."""

from __future__ import annotations

from urllib.parse import urlsplit

from gengate.files.base import FileStore
from gengate.files.local import LocalFileStore
from gengate.files.signing import UrlSigner
from gengate.settings import Settings


def build_file_store(settings: Settings, signer: UrlSigner) -> FileStore:
    """`files_url` unset: files under the data folder, served by the gateway with `signer`'s
    URLs; `s3://bucket/prefix`: files in the bucket, served by it through presigned URLs."""
    url = settings.files_url
    if not url:
        return LocalFileStore(settings.files_dir, settings.base_url, signer)
    scheme = urlsplit(url).scheme
    if scheme == "s3":
        # Imported here: boto3 takes about 0.4 s to import, wasted where files stay local.
        from gengate.files.s3 import S3FileStore, S3Location  # noqa: PLC0415

        return S3FileStore(
            S3Location.parse(url),
            staging_root=settings.data_dir / "staging",
            region=settings.s3_region,
            url_lifetime_s=settings.result_ttl,
            endpoint_url=settings.s3_endpoint_url,
        )
    raise ValueError(
        f"unsupported files URL {url!r}: use s3://bucket/prefix, or leave it unset for the data folder"
    )
