"""Results on the local disk, served by the gateway itself under `/files/<task_id>/<name>`.

Layout under `root`: a task's file `<name>` is `<shard>/<task_id>~<name>`, where `<shard>` is
two hex digits of a CRC of the task id (256 folders, each made once). One file per output and no
folder per task: a folder costs a second inode and a block, and on ext4 without a journal (this
machine's) each new inode is searched for past every recently deleted one, which made a task
folder cost up to 1.5 ms of kernel time in the drain bench. Retention removes a task's files by
the names the task recorded, so a shard's size never costs a scan. Results saved by earlier
versions under `<task_id>/<name>` are still served and deleted.

Small outputs a provider made in memory (up to `INLINE_MAX_BYTES`) take no inode at all: they are
rows of `.results.sqlite3` in the same folder (see `gengate.files.inline`), one transaction per
batch of saves, and `/files/` serves them like files.

`.staging/<task_id>.<attempt>/` holds one attempt's outputs while a provider writes them;
`save` renames them into place, so a result name only ever holds a complete file. Staging lives
under the same root so the rename is atomic.
"""

from __future__ import annotations

import asyncio
import contextlib
import mimetypes
import os
import shutil
import stat
import zlib
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

from gengate.batcher import Batcher
from gengate.domain.errors import Forbidden, TaskNotFound
from gengate.domain.files import OutputFile
from gengate.domain.task import ResultFile
from gengate.files.inline import INLINE_MAX_BYTES, InlineResults
from gengate.files.signing import INVALID_SIGNATURE, UrlSigner

STAGING = ".staging"
#: The database of small results, beside the shard folders.
INLINE_DATABASE = ".results.sqlite3"
#: Joins a task id and a file name in the flat layout; task ids may not contain it.
SEPARATOR = "~"
NO_SUCH_FILE = "No such file."
#: Longest `expires` query value accepted; Unix ms fit in 13 digits for millennia.
_MAX_EXPIRES_DIGITS = 18
#: The longest file name most file systems take (ext4, XFS, APFS, NTFS).
_MAX_FILE_NAME_BYTES = 255


#: One save waiting for the thread: the task id, its outputs, and whether it is the first attempt.
_Save = tuple[str, tuple[OutputFile, ...], bool]
#: What it comes back with: the saved files, or what went wrong with this save alone.
_Saved = tuple[ResultFile, ...] | BaseException


def is_safe_name(name: str) -> bool:
    """Whether `name` is one plain path component, so joining it cannot leave its folder.

    Names starting with `.` are refused too: they cover `.`/`..` and keep task folders from
    colliding with `.staging`.
    """
    # Three `in` tests, not a generator over the characters: 0.1 us against 0.4, twice a task.
    plain = "/" not in name and "\\" not in name and "\0" not in name
    return plain and bool(name) and not name.startswith(".")


def _check_name(name: str, what: str) -> None:
    if not is_safe_name(name):
        raise ValueError(f"Unsafe {what}: {name!r}.")


def _check_task_id(task_id: str) -> None:
    if not is_safe_name(task_id) or SEPARATOR in task_id:
        raise ValueError(f"Unsafe task id: {task_id!r}.")


def shard_of(task_id: str) -> str:
    """The folder of a task's files: stable across processes and versions (unlike `hash`)."""
    return f"{zlib.crc32(task_id.encode('utf-8', 'surrogatepass')) & 0xFF:02x}"


class LocalFileStore:
    """A :class:`~gengate.files.base.FileStore` on one local folder."""

    def __init__(self, root: Path, base_url: str, signer: UrlSigner) -> None:
        self._root = root
        self._staging = root / STAGING
        self._base_url = base_url.rstrip("/")
        self._signer = signer
        self._inline = InlineResults(root / INLINE_DATABASE)
        self._saves: Batcher[_Save, _Saved] = Batcher(self._save_many, limit=64)

    def staging_path(self, task_id: str, attempt: int) -> Path:
        _check_task_id(task_id)
        return self._staging / f"{task_id}.{int(attempt)}"

    def staging_dir(self, task_id: str, attempt: int) -> Path:
        """An empty `.staging/<task_id>.<attempt>`; a leftover of a crashed run is emptied."""
        return empty_dir(self.staging_path(task_id, attempt))

    def path_of(self, task_id: str, name: str) -> Path:
        """Where the task's file `name` is kept (both already checked safe)."""
        return self._root / shard_of(task_id) / f"{task_id}{SEPARATOR}{name}"

    async def save(
        self, task_id: str, outputs: Sequence[OutputFile], *, first_attempt: bool = False
    ) -> tuple[ResultFile, ...]:
        """Move the outputs into place, in a thread (renames and stats are disk I/O); saves
        that arrive together share one trip to the thread."""
        _check_task_id(task_id)
        saved = await self._saves.submit((task_id, tuple(outputs), first_attempt))
        if isinstance(saved, BaseException):
            raise saved
        return saved

    async def _save_many(self, batch: Sequence[_Save]) -> list[_Saved]:
        def save_all() -> list[_Saved]:
            results: list[_Saved] = []
            rows: list[tuple[str, str, bytes]] = []
            with_rows: list[int] = []  # the saves that wait on the rows' commit
            for task_id, outputs, first_attempt in batch:
                try:
                    saved, inline = self._save(task_id, outputs, first_attempt)
                except Exception as exc:  # each save fails alone
                    results.append(exc)
                    continue
                if inline:
                    rows += inline
                    with_rows.append(len(results))
                results.append(saved)
            try:
                self._inline.put_many(rows)
            except Exception as exc:  # the batch's rows share one transaction
                for index in with_rows:
                    results[index] = exc
            return results

        return await asyncio.to_thread(save_all)

    def _save(
        self, task_id: str, outputs: tuple[OutputFile, ...], first_attempt: bool
    ) -> tuple[tuple[ResultFile, ...], list[tuple[str, str, bytes]]]:
        """Place the task's files; returns its results and the rows still to be kept."""
        sizes, stagings = check_outputs(self._staging, task_id, outputs)
        names = [output.path.name for output in outputs]
        for name in names:
            if len(os.fsencode(flat := f"{task_id}{SEPARATOR}{name}")) > _MAX_FILE_NAME_BYTES:
                raise ValueError(f"File name too long for the local store: {flat!r}.")
        rows: list[tuple[str, str, bytes]] = []
        for output, name in zip(outputs, names, strict=True):
            if output.data is not None and len(output.data) <= INLINE_MAX_BYTES:
                rows.append((task_id, name, output.data))
                # A file of an earlier attempt would shadow the row (`resolve` looks for files
                # first). A first attempt has none, and skips the (failing) syscall and the path:
                # together a third of a small save's time.
                if not first_attempt:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.path_of(task_id, name))
                continue
            target = self.path_of(task_id, name)
            try:
                _place(output, target)
            except FileNotFoundError:  # the shard's first file, or a fresh root
                target.parent.mkdir(parents=True, exist_ok=True)
                _place(output, target)
        for staging in stagings:
            shutil.rmtree(staging, ignore_errors=True)
        saved = tuple(
            ResultFile(output.path.name, output.content_type, size)
            for output, size in zip(outputs, sizes, strict=True)
        )
        return saved, rows

    def url(self, task_id: str, file: ResultFile, expires_ms: int) -> str:
        """The signed URL; pure string work since every status read builds one per file."""
        path = f"/files/{task_id}/{file.name}"
        quoted = f"/files/{quote(task_id, safe='')}/{quote(file.name, safe='')}"
        return self._base_url + quoted + self._signer.query(path, expires_ms)

    def resolve(
        self, task_id: str, name: str, expires_ms: str | None, signature: str | None, now_ms: int
    ) -> tuple[Path | bytes, str]:
        """The file (a path, or the bytes of a small result kept as a row) and its MIME type
        for a `/files/` request, given its raw query values. Disk I/O: call it off the loop.

        Raises :class:`Forbidden` for a missing, malformed, wrong or expired signature, and
        :class:`TaskNotFound` for an unsafe name or a file that is not there (or no longer).
        """
        if (
            expires_ms is None
            or signature is None
            or not (expires_ms.isascii() and expires_ms.isdigit())
            or len(expires_ms) > _MAX_EXPIRES_DIGITS
        ):
            raise Forbidden(INVALID_SIGNATURE)
        self._signer.verify(f"/files/{task_id}/{name}", int(expires_ms), signature, now_ms)
        if not (is_safe_name(task_id) and is_safe_name(name)) or SEPARATOR in task_id:
            raise TaskNotFound(NO_SUCH_FILE)
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if _is_regular_file(path := self.path_of(task_id, name)):
            return path, content_type
        if (data := self._inline.get(task_id, name)) is not None:
            return data, content_type
        if _is_regular_file(path := self._root / task_id / name):  # the old layout
            return path, content_type
        raise TaskNotFound(NO_SUCH_FILE)

    async def delete(self, task_id: str, names: Sequence[str] = ()) -> None:
        """Remove the task's files and any staging leftovers of crashed attempts: the named
        files, or without names every file of the task in its shard (a folder scan)."""
        _check_task_id(task_id)
        safe = [name for name in names if is_safe_name(name)]
        await asyncio.to_thread(self._delete, task_id, safe)

    def _delete(self, task_id: str, names: list[str]) -> None:
        if names:
            paths = [str(self.path_of(task_id, name)) for name in names]
        else:
            prefix = task_id + SEPARATOR
            paths = [e.path for e in _entries(self._root / shard_of(task_id)) if e.name.startswith(prefix)]
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        leftovers = [e.path for e in _entries(self._staging) if _is_staging_of(task_id, e.name)]
        for path in [str(self._root / task_id), *leftovers]:  # the old layout's folder too
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(path)
        self._inline.delete(task_id, names)

    async def close(self) -> None:
        """Close the database of small results (a later use opens it again)."""
        await self._saves.close()
        self._inline.close()


def check_outputs(
    staging_root: Path, task_id: str, outputs: Sequence[OutputFile]
) -> tuple[list[int], set[Path]]:
    """The sizes of a provider's outputs and the staging folders they lie in, every output
    checked before a store takes any: a bad one leaves nothing half-saved."""
    names = [output.path.name for output in outputs]
    for name in names:
        _check_name(name, "file name")
    if len(set(names)) != len(names):
        raise ValueError(f"Provider returned duplicate file names: {names}.")
    stagings = {staging_folder_of(staging_root, task_id, o.path) for o in outputs if o.data is None}
    sizes = [_regular_file_size(o.path) if o.data is None else len(o.data) for o in outputs]
    return sizes, stagings


def staging_folder_of(staging_root: Path, task_id: str, path: Path) -> Path:
    """The staging folder of this task that `path` lies in: a provider bug must not make a
    store take arbitrary files."""
    resolved_root = staging_root.resolve()
    try:
        relative = path.parent.resolve().relative_to(resolved_root)
    except ValueError:
        raise ValueError(f"Provider output outside the staging folder: {path}.") from None
    if not relative.parts or not _is_staging_of(task_id, relative.parts[0]):
        raise ValueError(f"Provider output outside this task's staging folder: {path}.")
    return resolved_root / relative.parts[0]


def empty_dir(path: Path) -> Path:
    """`path` made as an empty folder, emptied if a crashed run left it behind. The common
    case first: one mkdir and no stat, since metadata calls are the cost here."""
    try:
        path.mkdir()
    except FileExistsError:
        shutil.rmtree(path)
        path.mkdir()
    except FileNotFoundError:
        path.mkdir(parents=True)
    return path


def _place(output: OutputFile, target: Path) -> None:
    if output.data is None:
        os.replace(output.path, target)
    else:
        # Straight to its place: the task is not `success` (so no URL names the file) until
        # the save returns, so a crash mid-write exposes nothing half-written.
        target.write_bytes(output.data)


def _entries(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except FileNotFoundError:
        return []


def _is_regular_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return False


def _is_staging_of(task_id: str, folder: str) -> bool:
    """Whether `folder` (a name under `.staging`) is `<task_id>.<attempt>`."""
    head, dot, attempt = folder.rpartition(".")
    return bool(dot) and head == task_id and attempt.isdecimal()


def _regular_file_size(path: Path) -> int:
    """The size of `path`, refusing symlinks and the like: serving one could leak any file."""
    info = os.lstat(path)
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"Provider output is not a regular file: {path}.")
    return info.st_size
