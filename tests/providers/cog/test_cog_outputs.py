"""A cog output as gengate results: which leaves are files, what is left as plain output, bounds."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from gengate.domain.files import OutputFile
from gengate.providers.base import ProviderFailure
from gengate.providers.cog.outputs import collect

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 24
PNG_URI = "data:image/png;base64," + base64.b64encode(PNG).decode()


async def no_download(url: str, folder: Path, index: int) -> OutputFile:
    path = folder / f"{index}.bin"
    path.write_text(url)
    return OutputFile(path, "application/x-test")


async def test_files_anywhere_in_the_structure_and_the_plain_rest(tmp_path: Path) -> None:
    output = {
        "images": [PNG_URI, "https://cdn.example/a.webp"],
        "caption": "two",
        "meta": {"seed": 7, "mask": "data:text/plain,hello%20there"},
        "empty": [],
    }
    found = await collect(output, tmp_path, no_download, 1 << 20)
    assert [file.content_type for file in found.files] == ["image/png", "application/x-test", "text/plain"]
    assert found.files[0].path.read_bytes() == PNG
    assert found.files[1].path.read_text() == "https://cdn.example/a.webp"
    assert found.files[2].path.read_bytes() == b"hello there"
    assert found.has_plain
    assert found.plain == {"caption": "two", "meta": {"seed": 7}, "empty": []}


@pytest.mark.parametrize(
    ("output", "plain"),
    [("just text", "just text"), (3.5, 3.5), (["a", 1], ["a", 1]), ("ftp://not-a-file", "ftp://not-a-file")],
)
async def test_plain_values_only(tmp_path: Path, output: object, plain: object) -> None:
    found = await collect(output, tmp_path, no_download, 1 << 20)
    assert found.files == []
    assert (found.has_plain, found.plain) == (True, plain)


@pytest.mark.parametrize("output", [None, PNG_URI, [PNG_URI], {"image": PNG_URI}])
async def test_nothing_plain_when_only_files_or_none(tmp_path: Path, output: object) -> None:
    found = await collect(output, tmp_path, no_download, 1 << 20)
    assert not found.has_plain


async def test_a_data_uri_over_the_bound_is_a_provider_error(tmp_path: Path) -> None:
    with pytest.raises(ProviderFailure, match="larger than 16 bytes") as failure:
        await collect(PNG_URI, tmp_path, no_download, 16)
    assert failure.value.transient


async def test_broken_base64_is_a_provider_error(tmp_path: Path) -> None:
    with pytest.raises(ProviderFailure, match="not valid base64"):
        await collect("data:image/png;base64,@@@@", tmp_path, no_download, 1 << 20)
