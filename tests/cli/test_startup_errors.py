"""A data folder, database or configuration gengate cannot use ends every command that opens it
in one or two lines naming the path or URL, exit status 1, never a traceback.

The real `gengate` runs as a subprocess. Tests usually run as root, which ignores permission
bits; a read-only folder is then reproduced by running the command without the capabilities
that let root write anywhere (`setpriv`, dropping CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH): it
then meets "attempt to write a readonly database" and "unable to open database file" exactly as
an ordinary user does.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

GENGATE = Path(sys.executable).parent / "gengate"
TIMEOUT_S = 90
ROOT_OVERRIDES = "-dac_override,-dac_read_search"
#: Each command that opens the data folder or the database.
COMMANDS = {
    "serve": ["serve", "--port", "0"],
    "worker": ["worker"],
    "migrate": ["migrate"],
    "keys list": ["keys", "list"],
    "keys create": ["keys", "create", "--name", "x"],
}


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("GENGATE_")}
    return {**env, **extra}


def _unprivileged() -> list[str]:
    """The prefix that makes permission bits count for this process's children."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: permission bits cannot be made to count")
    return [setpriv, f"--bounding-set={ROOT_OVERRIDES}", f"--inh-caps={ROOT_OVERRIDES}"]


def gengate(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, *, unprivileged: bool = False
) -> subprocess.CompletedProcess[str]:
    command = [*(_unprivileged() if unprivileged else []), str(GENGATE), *args]
    return subprocess.run(
        command,
        cwd=cwd,
        env=_clean_env(env or {}),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def assert_message(result: subprocess.CompletedProcess[str], *fragments: str, lines: int = 2) -> str:
    """One short message on stderr, naming `fragments`; exit status 1; no traceback anywhere."""
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.returncode == 1, output
    text = result.stderr.strip()
    assert 1 <= len(text.splitlines()) <= lines, text
    for fragment in fragments:
        assert fragment in text, text
    return text


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    """A folder the unprivileged commands cannot write (checked: else the test would prove nothing)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    probe = subprocess.run(
        [*_unprivileged(), "touch", str(folder / "probe")], capture_output=True, check=False
    )
    if probe.returncode == 0:
        pytest.skip("this environment lets the command write a 0500 folder (no capability dropping)")
    yield folder
    folder.chmod(0o700)


def _filled(folder: Path) -> None:
    """A data folder as a first start leaves it: database, secrets, keys."""
    folder.chmod(0o700)
    env = {"GENGATE_DATA_DIR": str(folder)}
    assert gengate(["keys", "create", "--name", "first"], folder.parent, env).returncode == 0
    bootstrap = "from gengate import bootstrap; from gengate.settings import load_settings as l; "
    code = bootstrap + "s = l(); bootstrap.admin_key(s); bootstrap.server_secret(s)"
    subprocess.run([sys.executable, "-c", code], env=_clean_env(env), check=True)
    (folder / "files").mkdir()
    for path in folder.rglob("*"):
        path.chmod(0o400 if path.is_file() else 0o500)
    folder.chmod(0o500)


@pytest.mark.parametrize("holding_data", [False, True], ids=["empty", "holding data"])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_read_only_data_folder_is_named(read_only: Path, command: str, holding_data: bool) -> None:
    if holding_data:
        _filled(read_only)
    env = {"GENGATE_DATA_DIR": str(read_only), "GENGATE_DATABASE_WAIT_S": "1"}
    result = gengate(COMMANDS[command], read_only.parent, env, unprivileged=True)
    text = assert_message(result, str(read_only))
    assert "writable" in text or "read-only" in text
    assert "GENGATE_DATA_DIR" in text or "GENGATE_DATABASE_URL" in text


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_data_folder_under_a_file_is_named(tmp_path: Path, command: str) -> None:
    (tmp_path / "plain").write_text("not a folder")
    data = tmp_path / "plain" / "data"
    result = gengate(COMMANDS[command], tmp_path, {"GENGATE_DATA_DIR": str(data)})
    assert_message(result, str(tmp_path / "plain"), "not a folder")


def test_a_data_folder_that_is_a_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("not a folder")
    for args in COMMANDS.values():
        result = gengate(args, tmp_path, {"GENGATE_DATA_DIR": str(tmp_path / "data")})
        assert_message(result, str(tmp_path / "data"), "not a folder")


def test_a_data_folder_whose_parent_cannot_be_made_is_named(read_only: Path) -> None:
    data = read_only / "missing" / "data"
    for args in COMMANDS.values():
        result = gengate(args, read_only.parent, {"GENGATE_DATA_DIR": str(data)}, unprivileged=True)
        assert_message(result, str(read_only), "writable")


def test_a_database_file_that_is_not_sqlite_is_named(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "gengate.db").write_bytes(b"garbage, not a database " * 100)
    for args in COMMANDS.values():
        result = gengate(args, tmp_path, {"GENGATE_DATA_DIR": str(data)})
        assert_message(result, str(data / "gengate.db"), "not a SQLite database")


def test_a_read_only_database_file_is_named_at_once(tmp_path: Path) -> None:
    """Not yoyo's "Database locked" after retrying its lock for 10 s."""
    data = tmp_path / "data"
    assert gengate(["migrate"], tmp_path, {"GENGATE_DATA_DIR": str(data)}).returncode == 0
    (data / "gengate.db").chmod(0o400)
    for args in COMMANDS.values():
        result = gengate(args, tmp_path, {"GENGATE_DATA_DIR": str(data)}, unprivileged=True)
        assert_message(result, str(data / "gengate.db"), "writable")


def test_a_files_folder_that_cannot_be_written_is_named(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "files").write_text("a file where the files folder goes")
    for name in ("serve", "worker"):
        result = gengate(COMMANDS[name], tmp_path, {"GENGATE_DATA_DIR": str(data)})
        assert_message(result, str(data / "files"), "not a folder")


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A PostgreSQL URL on a loopback port that refuses connections (bound, never listening)."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield f"postgresql://gengate:hunter2@127.0.0.1:{held.getsockname()[1]}/gengate"


@pytest.mark.parametrize("command", list(COMMANDS))
def test_an_unreachable_postgres_is_named_briefly(tmp_path: Path, refused_url: str, command: str) -> None:
    env = {
        "GENGATE_DATABASE_URL": refused_url,
        "GENGATE_DATABASE_WAIT_S": "0.5",
        "GENGATE_DATA_DIR": str(tmp_path / "data"),
    }
    result = gengate(COMMANDS[command], tmp_path, env)
    redacted = refused_url.replace("hunter2", "***")
    # At most a line saying what it waits for, then the error.
    text = assert_message(result, redacted, "GENGATE_DATABASE_URL", lines=2)
    assert "hunter2" not in result.stdout + result.stderr
    assert text.splitlines()[-1].startswith("Error: cannot reach PostgreSQL")


def test_waiting_for_postgres_is_said_in_one_line(tmp_path: Path, refused_url: str) -> None:
    env = {"GENGATE_DATABASE_URL": refused_url, "GENGATE_DATABASE_WAIT_S": "1.5"}
    result = gengate(COMMANDS["migrate"], tmp_path, env)
    text = assert_message(result, "GENGATE_DATABASE_WAIT_S", lines=2)
    first = text.splitlines()[0]
    assert "waiting" in first
    assert refused_url.replace("hunter2", "***") in first


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            '[models.demo]\nprovider = "demo-image"\ntimout_s = 5\n',
            'gengate.toml: [models.demo] has no setting "timout_s"; did you mean "timeout_s"?',
        ),
        (
            '[modles.x]\nprovider = "demo-image"\n',
            "gengate.toml: unknown table [modles]; did you mean [models]?",
        ),
        ("[models.x\n", "gengate.toml: not valid TOML: "),
        (
            '[models.demo]\nprovider = "demo-image"\ntimeout_s = "abc"\n',
            'gengate.toml: [models.demo] timeout_s: must be a number greater than 0 (got "abc")',
        ),
        (
            '[providers.r]\nkind = "apixo"\nbase_url = "http://x"\npoll_intial_s = 1\n',
            '[providers.r] has no setting "poll_intial_s"; did you mean "poll_initial_s"?',
        ),
    ],
)
def test_configuration_mistakes_end_serve_in_one_line(tmp_path: Path, config: str, message: str) -> None:
    (tmp_path / "gengate.toml").write_text(config)
    result = gengate(COMMANDS["serve"], tmp_path, {"GENGATE_DATA_DIR": str(tmp_path / "data")})
    assert_message(result, message, lines=1)


def test_configuration_mistakes_end_every_command_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "gengate.toml").write_text('[models.demo]\nprovider = "demo-image"\ntimout_s = 5\n')
    for args in COMMANDS.values():
        result = gengate(args, tmp_path, {"GENGATE_DATA_DIR": str(tmp_path / "data")})
        assert_message(result, '[models.demo] has no setting "timout_s"', lines=1)


def test_a_bad_environment_variable_ends_serve_in_one_line(tmp_path: Path) -> None:
    result = gengate(COMMANDS["serve"], tmp_path, {"GENGATE_WORKERS": "lots"})
    assert_message(result, 'GENGATE_WORKERS: must be a whole number at least 0 (got "lots")', lines=1)
