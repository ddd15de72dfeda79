"""LocalFileStore: staging, atomic save, signed URLs, resolving and deleting files."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from local_urls import served, url_query

from gengate.domain.errors import Forbidden, TaskNotFound
from gengate.domain.files import OutputFile
from gengate.domain.task import ResultFile
from gengate.files.inline import INLINE_MAX_BYTES
from gengate.files.local import LocalFileStore, is_safe_name
from gengate.files.signing import UrlSigner

TASK = "task_abc123"
NOW = 1_700_000_000_000
LATER = NOW + 3_600_000
BASE_URL = "http://gw.test:8000/"


@pytest.fixture
def store(tmp_path: Path) -> LocalFileStore:
    return LocalFileStore(tmp_path / "files", BASE_URL, UrlSigner(b"secret"))


def _write(folder: Path, name: str, data: bytes) -> OutputFile:
    path = folder / name
    path.write_bytes(data)
    return OutputFile(path, "image/png" if name.endswith(".png") else "application/json")


def test_staging_dir_is_empty_and_under_root(store: LocalFileStore, tmp_path: Path) -> None:
    staging = store.staging_dir(TASK, 1)
    assert staging == tmp_path / "files" / ".staging" / f"{TASK}.1"
    assert staging.is_dir()
    (staging / "stale.png").write_bytes(b"x")
    assert store.staging_dir(TASK, 1) == staging
    assert list(staging.iterdir()) == []


async def test_save_moves_files_and_removes_staging(store: LocalFileStore, tmp_path: Path) -> None:
    staging = store.staging_dir(TASK, 2)
    outputs = [_write(staging, "0.png", b"png0"), _write(staging, "result.json", b"{}")]
    files = await store.save(TASK, outputs)
    assert files == (
        ResultFile("0.png", "image/png", 4),
        ResultFile("result.json", "application/json", 2),
    )
    assert store.path_of(TASK, "0.png").read_bytes() == b"png0"
    assert store.path_of(TASK, "result.json").read_bytes() == b"{}"
    assert not staging.exists()
    # One flat file per output in a shard folder: no folder per task.
    shard = store.path_of(TASK, "0.png").parent
    assert shard.parent == tmp_path / "files"
    assert sorted(p.name for p in shard.iterdir()) == [f"{TASK}~0.png", f"{TASK}~result.json"]


async def test_small_in_memory_outputs_are_rows_not_files(store: LocalFileStore, tmp_path: Path) -> None:
    """No inode per small result: it is a row of the folder's database, served like a file."""
    outputs = [OutputFile(Path("result.json"), "application/json", data=b'{"a":1}')]
    assert await store.save(TASK, outputs) == (ResultFile("result.json", "application/json", 7),)
    assert not store.path_of(TASK, "result.json").exists()
    assert not store.path_of(TASK, "result.json").parent.exists()
    assert not (tmp_path / "files" / ".staging").exists()
    url = store.url(TASK, ResultFile("result.json", "application/json", 7), LATER)
    assert store.resolve(*url_query(url), now_ms=NOW) == (b'{"a":1}', "application/json")


async def test_big_in_memory_outputs_are_files(store: LocalFileStore) -> None:
    big = bytes(range(256)) * (INLINE_MAX_BYTES // 256 + 1)
    outputs = [
        OutputFile(Path("0.png"), "image/png", data=big),
        OutputFile(Path("edge.bin"), "application/octet-stream", data=big[:INLINE_MAX_BYTES]),
    ]
    await store.save(TASK, outputs)
    assert store.path_of(TASK, "0.png").read_bytes() == big
    assert not store.path_of(TASK, "edge.bin").exists()  # exactly the limit: still a row
    url = store.url(TASK, ResultFile("edge.bin", "application/octet-stream", INLINE_MAX_BYTES), LATER)
    assert store.resolve(*url_query(url), now_ms=NOW)[0] == big[:INLINE_MAX_BYTES]


async def test_saves_that_arrive_together_keep_their_rows_apart(store: LocalFileStore) -> None:
    ids = [f"task_{i}" for i in range(150)]  # over one batch's limit
    saved = await asyncio.gather(
        *(store.save(t, [OutputFile(Path("r.json"), "application/json", data=t.encode())]) for t in ids)
    )
    assert [files[0].size for files in saved] == [len(t) for t in ids]
    for task_id in ids:
        url = store.url(task_id, ResultFile("r.json", "application/json", 1), LATER)
        assert store.resolve(*url_query(url), now_ms=NOW)[0] == task_id.encode()


async def test_a_retry_replaces_the_earlier_attempts_result(store: LocalFileStore) -> None:
    """Whichever way each attempt kept `0.png`, the last save is what is served."""
    url = store.url(TASK, ResultFile("0.png", "image/png", 1), LATER)
    staging = store.staging_dir(TASK, 1)
    await store.save(TASK, [_write(staging, "0.png", b"attempt 1, a file")])
    await store.save(TASK, [OutputFile(Path("0.png"), "image/png", data=b"attempt 2, a row")])
    assert store.resolve(*url_query(url), now_ms=NOW)[0] == b"attempt 2, a row"
    await store.save(TASK, [OutputFile(Path("0.png"), "image/png", data=b"attempt 3, a row")])
    assert store.resolve(*url_query(url), now_ms=NOW)[0] == b"attempt 3, a row"
    staging = store.staging_dir(TASK, 4)
    await store.save(TASK, [_write(staging, "0.png", b"attempt 4, a file")])
    found = store.resolve(*url_query(url), now_ms=NOW)[0]
    assert isinstance(found, Path)
    assert found.read_bytes() == b"attempt 4, a file"


async def test_a_first_attempt_kept_as_a_row_looks_for_no_earlier_file(
    store: LocalFileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing of an earlier attempt can shadow a first attempt's row: no path is unlinked.
    A retry's row still removes an earlier attempt's file (the test above)."""
    unlinked: list[str] = []
    monkeypatch.setattr("gengate.files.local.os.unlink", lambda path: unlinked.append(str(path)))
    row = [OutputFile(Path("r.json"), "application/json", data=b"{}")]
    assert await store.save(TASK, row, first_attempt=True) == (ResultFile("r.json", "application/json", 2),)
    assert unlinked == []
    await store.save(TASK, row)
    assert unlinked == [str(store.path_of(TASK, "r.json"))]


async def test_a_failed_commit_fails_only_the_saves_with_rows(store: LocalFileStore, tmp_path: Path) -> None:
    await store.save("task_first", [OutputFile(Path("r.json"), "application/json", data=b"{}")])
    await store.close()
    database = tmp_path / "files" / ".results.sqlite3"
    for leftover in database.parent.glob(".results.sqlite3-*"):
        leftover.unlink()
    database.write_bytes(b"not a database" * 512)  # a file root may not write to would not stop root
    staging = store.staging_dir("task_file", 1)
    with_file = store.save("task_file", [_write(staging, "0.png", b"png")])
    with_row = store.save("task_row", [OutputFile(Path("r.json"), "application/json", data=b"{}")])
    results = await asyncio.gather(with_file, with_row, return_exceptions=True)
    assert results[0] == (ResultFile("0.png", "image/png", 3),)
    assert isinstance(results[1], sqlite3.Error)


async def test_rows_are_deleted_with_their_task(store: LocalFileStore) -> None:
    for task_id in (TASK, "task_other"):
        await store.save(task_id, [OutputFile(Path("r.json"), "application/json", data=task_id.encode())])
    await store.delete(TASK, ["r.json"])
    with pytest.raises(TaskNotFound):
        store.resolve(*url_query(store.url(TASK, ResultFile("r.json", "", 1), LATER)), now_ms=NOW)
    other = store.url("task_other", ResultFile("r.json", "", 1), LATER)
    assert store.resolve(*url_query(other), now_ms=NOW)[0] == b"task_other"
    await store.delete("task_other")  # without names too
    with pytest.raises(TaskNotFound):
        store.resolve(*url_query(other), now_ms=NOW)


async def test_stores_in_two_processes_share_the_rows(tmp_path: Path) -> None:
    """An API process serves what a worker process of the same folder saved."""
    worker = LocalFileStore(tmp_path / "files", BASE_URL, UrlSigner(b"secret"))
    api = LocalFileStore(tmp_path / "files", BASE_URL, UrlSigner(b"secret"))
    url = api.url(TASK, ResultFile("r.json", "application/json", 2), LATER)
    with pytest.raises(TaskNotFound):  # before the database exists
        api.resolve(*url_query(url), now_ms=NOW)
    await worker.save(TASK, [OutputFile(Path("r.json"), "application/json", data=b"{}")])
    assert api.resolve(*url_query(url), now_ms=NOW)[0] == b"{}"
    await api.delete(TASK)
    await worker.save("task_next", [OutputFile(Path("r.json"), "application/json", data=b"[]")])
    with pytest.raises(TaskNotFound):
        worker.resolve(*url_query(url), now_ms=NOW)
    await worker.close()
    await api.close()


async def test_a_store_without_small_results_makes_no_database(store: LocalFileStore, tmp_path: Path) -> None:
    staging = store.staging_dir(TASK, 1)
    await store.save(TASK, [_write(staging, "0.png", b"png")])
    await store.delete(TASK)
    assert not (tmp_path / "files" / ".results.sqlite3").exists()


async def test_shards_spread_tasks_and_stay_stable(store: LocalFileStore, tmp_path: Path) -> None:
    ids = [f"task_{i}" for i in range(200)]
    shards = {store.path_of(task_id, "x").parent.name for task_id in ids}
    assert len(shards) > 120
    assert all(len(shard) == 2 and int(shard, 16) < 256 for shard in shards)
    # The same in every process and version: a CRC, not Python's salted `hash`.
    assert store.path_of("task_abc123", "x").parent.name == "8f"


async def test_save_refuses_names_too_long_for_the_disk(store: LocalFileStore) -> None:
    outputs = [OutputFile(Path("a" * 240 + ".png"), "image/png", data=b"png")]
    with pytest.raises(ValueError, match="too long"):
        await store.save(TASK, outputs)


async def test_save_of_nothing(store: LocalFileStore) -> None:
    assert await store.save(TASK, []) == ()


@pytest.mark.parametrize("name", [".hidden", "a\\b", "nul\0.png"])
async def test_save_refuses_unsafe_names(store: LocalFileStore, name: str) -> None:
    staging = store.staging_dir(TASK, 1)
    with pytest.raises(ValueError, match="Unsafe file name"):
        await store.save(TASK, [OutputFile(staging / name, "image/png")])


async def test_save_refuses_files_outside_the_task_staging(store: LocalFileStore, tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_bytes(b"secret")
    other_task = store.staging_dir("task_other", 1)
    elsewhere = [
        OutputFile(outside, "text/plain"),
        OutputFile(store.staging_dir(TASK, 1) / ".." / ".." / "secret.txt", "text/plain"),
        _write(other_task, "0.png", b"theirs"),
    ]
    for output in elsewhere:
        with pytest.raises(ValueError, match="outside"):
            await store.save(TASK, [output])
    assert outside.read_bytes() == b"secret"
    assert (other_task / "0.png").exists()


async def test_save_refuses_symlinks_and_moves_nothing(store: LocalFileStore, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"secret")
    staging = store.staging_dir(TASK, 1)
    good = _write(staging, "0.png", b"png")
    (staging / "1.png").symlink_to(secret)
    with pytest.raises(ValueError, match="not a regular file"):
        await store.save(TASK, [good, OutputFile(staging / "1.png", "image/png")])
    assert (staging / "0.png").exists()
    assert not store.path_of(TASK, "0.png").exists()


async def test_save_refuses_duplicate_names(store: LocalFileStore) -> None:
    staging = store.staging_dir(TASK, 1)
    (staging / "sub").mkdir()
    outputs = [_write(staging, "0.png", b"a"), _write(staging / "sub", "0.png", b"b")]
    with pytest.raises(ValueError, match="duplicate"):
        await store.save(TASK, outputs)


async def test_url_resolves_to_the_file(store: LocalFileStore, tmp_path: Path) -> None:
    staging = store.staging_dir(TASK, 1)
    (file,) = await store.save(TASK, [_write(staging, "0.png", b"png")])
    url = store.url(TASK, file, LATER)
    assert url.startswith(f"http://gw.test:8000/files/{TASK}/0.png?expires={LATER}&signature=")
    assert store.url(TASK, file, LATER) == url
    path, content_type = store.resolve(*url_query(url), now_ms=NOW)
    assert path == store.path_of(TASK, "0.png")
    assert path.read_bytes() == b"png"
    assert content_type == "image/png"


async def test_url_quotes_odd_names(store: LocalFileStore) -> None:
    staging = store.staging_dir(TASK, 1)
    (file,) = await store.save(TASK, [_write(staging, "a b?#%.json", b"{}")])
    url = store.url(TASK, file, LATER)
    assert " " not in url
    assert "#" not in url
    path, content_type = store.resolve(*url_query(url), now_ms=NOW)
    assert path == store.path_of(TASK, "a b?#%.json")
    assert content_type == "application/json"


async def test_resolve_unknown_extension_is_octet_stream(store: LocalFileStore) -> None:
    await store.save(TASK, [OutputFile(Path("blob"), "application/x-custom", data=b"x")])
    url = store.url(TASK, ResultFile("blob", "application/x-custom", 1), LATER)
    assert store.resolve(*url_query(url), now_ms=NOW)[1] == "application/octet-stream"


async def test_files_of_the_old_layout_are_served_and_deleted(store: LocalFileStore, tmp_path: Path) -> None:
    """Results saved by earlier versions lie in a folder per task."""
    old = tmp_path / "files" / TASK
    old.mkdir(parents=True)
    (old / "0.png").write_bytes(b"old")
    url = store.url(TASK, ResultFile("0.png", "image/png", 3), LATER)
    assert store.resolve(*url_query(url), now_ms=NOW) == (old / "0.png", "image/png")
    await store.delete(TASK)
    assert not old.exists()
    with pytest.raises(TaskNotFound):
        store.resolve(*url_query(url), now_ms=NOW)


async def test_resolve_refuses_bad_signatures(store: LocalFileStore) -> None:
    staging = store.staging_dir(TASK, 1)
    (file,) = await store.save(TASK, [_write(staging, "0.png", b"png")])
    task_id, name, expires, signature = url_query(store.url(TASK, file, LATER))
    invalid = [
        (task_id, name, None, signature),
        (task_id, name, expires, None),
        (task_id, name, "soon", signature),
        (task_id, name, "+" + expires, signature),
        (task_id, name, " " + expires, signature),
        (task_id, name, "9" * 5000, signature),
        (task_id, name, str(int(expires) + 1), signature),
        (task_id, name, expires, signature[:-1]),
        (task_id, "1.png", expires, signature),
        ("task_other", name, expires, signature),
    ]
    for args in invalid:
        with pytest.raises(Forbidden, match=r"^The URL signature is invalid\.$"):
            store.resolve(*args, now_ms=NOW)
    with pytest.raises(Forbidden, match=r"^The URL has expired\.$"):
        store.resolve(task_id, name, expires, signature, now_ms=LATER)


@pytest.mark.parametrize(
    ("task_id", "name"),
    [(TASK, ".."), (TASK, "../../etc/passwd"), (TASK, ".staging"), ("..", TASK), (".staging", f"{TASK}.1")],
)
def test_resolve_refuses_traversal_even_when_signed(
    store: LocalFileStore, tmp_path: Path, task_id: str, name: str
) -> None:
    (tmp_path / "files" / ".staging" / f"{TASK}.1").mkdir(parents=True)
    url_path = f"/files/{task_id}/{name}"
    signature = UrlSigner(b"secret").sign(url_path, LATER)
    with pytest.raises(TaskNotFound, match=r"^No such file\.$"):
        store.resolve(task_id, name, str(LATER), signature, now_ms=NOW)


def test_resolve_missing_file(store: LocalFileStore) -> None:
    url = store.url(TASK, ResultFile("0.png", "image/png", 3), LATER)
    with pytest.raises(TaskNotFound, match="No such file"):
        store.resolve(*url_query(url), now_ms=NOW)


async def test_resolve_refuses_a_folder(store: LocalFileStore, tmp_path: Path) -> None:
    store.path_of(TASK, "sub").mkdir(parents=True)
    (tmp_path / "files" / TASK / "old").mkdir(parents=True)
    for name in ("sub", "old"):
        url = store.url(TASK, ResultFile(name, "image/png", 3), LATER)
        with pytest.raises(TaskNotFound):
            store.resolve(*url_query(url), now_ms=NOW)


async def test_delete_removes_files_and_staging_leftovers(store: LocalFileStore, tmp_path: Path) -> None:
    staging = store.staging_dir(TASK, 1)
    await store.save(TASK, [_write(staging, "0.png", b"png"), _write(staging, "1.png", b"png")])
    leftover = store.staging_dir(TASK, 2)
    other = store.staging_dir(f"{TASK}.x", 1)
    also_other = store.staging_dir(TASK + "z", 1)
    # Tasks whose ids start alike, in the same shard as TASK's files or not, keep theirs.
    neighbours = [TASK + "z", TASK[:-1], f"{TASK}.x"]
    for task_id in neighbours:
        await store.save(task_id, [OutputFile(Path("0.png"), "image/png", data=b"theirs")])
    await store.delete(TASK)  # no names: found by a scan of the shard
    assert not store.path_of(TASK, "0.png").exists()
    assert not store.path_of(TASK, "1.png").exists()
    assert not leftover.exists()
    assert other.exists()
    assert also_other.exists()
    for task_id in neighbours:
        assert served(store, task_id, "0.png", NOW) == b"theirs"
    await store.delete(TASK)  # missing is fine


@pytest.mark.parametrize("kept_as", ["files", "rows"])
async def test_delete_by_names_removes_just_those(store: LocalFileStore, kept_as: str) -> None:
    def outputs(task_id: str, names: tuple[str, ...]) -> list[OutputFile]:
        if kept_as == "rows":
            return [OutputFile(Path(name), "image/png", data=b"x") for name in names]
        staging = store.staging_dir(task_id, 1)
        return [_write(staging, name, b"x") for name in names]

    await store.save(TASK, outputs(TASK, ("0.png", "1.png", "2.png")))
    await store.save(TASK + "z", outputs(TASK + "z", ("0.png",)))
    await store.delete(TASK, ["0.png", "1.png", "../../escape", "9.png"])
    assert served(store, TASK, "0.png", NOW) is None
    assert served(store, TASK, "1.png", NOW) is None
    assert served(store, TASK, "2.png", NOW) == b"x"  # not named: stays
    assert served(store, TASK + "z", "0.png", NOW) == b"x"


async def test_delete_on_an_empty_root(store: LocalFileStore) -> None:
    await store.delete(TASK)


@pytest.mark.parametrize("task_id", ["", ".", "..", "a/b", ".staging", "a~b"])
async def test_unsafe_task_ids_are_refused(store: LocalFileStore, task_id: str) -> None:
    with pytest.raises(ValueError, match="Unsafe task id"):
        await store.delete(task_id)
    with pytest.raises(ValueError, match="Unsafe task id"):
        store.staging_dir(task_id, 1)
    with pytest.raises(ValueError, match="Unsafe task id"):
        await store.save(task_id, [])


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("0.png", True),
        ("a b.json", True),
        ("", False),
        (".", False),
        ("..", False),
        (".env", False),
        ("a/b", False),
        ("a\\b", False),
        ("a\0b", False),
        ("/etc", False),
    ],
)
def test_is_safe_name(name: str, safe: bool) -> None:
    assert is_safe_name(name) is safe
