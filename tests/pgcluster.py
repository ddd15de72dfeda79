"""A real PostgreSQL server for the tests and the benches: `initdb` in a temp folder, `pg_ctl` on a
free loopback port, trust authentication, the socket in the same folder.

Hand-written rather than pytest-postgresql because the tests often run as root (CI containers),
where `initdb` refuses to run: the cluster then belongs to an unprivileged user (`postgres`, else
`nobody`) and every server command runs as that user. Plain functions and no pytest, so that the
benches can import this file by path too.

    with running_cluster() as cluster:
        cluster.create_database("gengate")
        url = cluster.url("gengate")      # postgresql://postgres@127.0.0.1:PORT/gengate
        cluster.restart()                 # stop -m fast, start again on the same port
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import secrets
import shutil
import socket
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

#: The superuser `initdb -U` makes; every URL connects as it.
SUPERUSER = "postgres"
#: The OS users a root process hands the cluster to, in order of preference.
UNPRIVILEGED_USERS = ("postgres", "nobody")
COMMAND_TIMEOUT_S = 120
#: Picks the server binaries' folder (one version among several, or none to test their absence).
BINDIR_VARIABLE = "GENGATE_TEST_PG_BINDIR"
START_ATTEMPTS = 3
StopMode = Literal["smart", "fast", "immediate"]


class PostgresMissing(Exception):
    """No PostgreSQL server binaries (`initdb`, `pg_ctl`) were found on this machine."""


class PostgresError(Exception):
    """A server command failed; the message carries its output and the server log's tail."""


# -- finding the binaries ----------------------------------------------------------------------
def _has_server(bindir: Path) -> bool:
    return all((bindir / name).is_file() for name in ("initdb", "pg_ctl", "postgres"))


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path.parent.name)) or (0,)


def find_bindir() -> Path | None:
    """The folder holding `initdb` and `pg_ctl`: `GENGATE_TEST_PG_BINDIR` when set (and then only
    it), else `pg_config --bindir`, the newest `/usr/lib/postgresql/*/bin` (Debian keeps them off
    PATH), then PATH; None if none has them."""
    if chosen := os.environ.get(BINDIR_VARIABLE):
        return Path(chosen) if _has_server(Path(chosen)) else None
    candidates: list[Path] = []
    if pg_config := shutil.which("pg_config"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=30, check=True
            )
            candidates.append(Path(done.stdout.strip()))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).resolve().parent)
    return next((path for path in candidates if _has_server(path)), None)


def require_bindir() -> Path:
    bindir = find_bindir()
    if bindir is None:
        raise PostgresMissing(
            "PostgreSQL is not installed (no initdb/pg_ctl found via pg_config, /usr/lib/postgresql/*/bin "
            "or PATH); run scripts/ensure-postgres.sh as root, or install the `postgresql` package"
        )
    return bindir


# -- who runs the server -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RunAs:
    """The OS user the server runs as when we are root: `uid`, `gid`, `name`, `home`."""

    uid: int
    gid: int
    name: str
    home: str


def _unprivileged_user() -> RunAs | None:
    """None when we are not root (the server runs as us); else the first unprivileged user found."""
    if os.geteuid() != 0:
        return None
    for name in UNPRIVILEGED_USERS:
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return RunAs(entry.pw_uid, entry.pw_gid, name, entry.pw_dir)
    raise PostgresError(f"running as root and none of the users {UNPRIVILEGED_USERS} exists to run initdb")


def _traversable_tempdir() -> str:
    """A temp folder every user can pass through: the cluster's owner must reach its own folder."""
    base = Path(tempfile.gettempdir()).resolve()
    for folder in (base, *base.parents):
        if not folder.stat().st_mode & stat.S_IXOTH:
            return "/tmp"
    return str(base)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- the cluster -------------------------------------------------------------------------------
@dataclass
class PgCluster:
    """One PostgreSQL cluster in `root` (data in `root/data`, socket in `root`, log in
    `root/server.log`) listening on 127.0.0.1:`port`. `fsync` off trades durability for speed."""

    bindir: Path
    root: Path
    port: int
    fsync: bool = True
    run_as: RunAs | None = None
    _running: bool = field(default=False, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    # -- life --------------------------------------------------------------------------------
    @classmethod
    def create(
        cls, *, bindir: Path | None = None, fsync: bool = True, max_connections: int = 300
    ) -> PgCluster:
        """`initdb` a new cluster in a fresh temp folder (not started yet)."""
        bindir = bindir or require_bindir()
        run_as = _unprivileged_user()
        root = Path(tempfile.mkdtemp(prefix="gengate-pg-", dir=_traversable_tempdir()))
        if run_as is not None:
            os.chown(root, run_as.uid, run_as.gid)
        cluster = cls(bindir=bindir, root=root, port=free_port(), fsync=fsync, run_as=run_as)
        try:
            cluster._run_server_command(
                [
                    str(bindir / "initdb"),
                    "--pgdata",
                    str(cluster.data_dir),
                    "--username",
                    SUPERUSER,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",  # the files initdb writes; the server's own fsync is set below
                ]
            )
            switch = "on" if fsync else "off"
            settings = {
                "listen_addresses": "'127.0.0.1'",
                "unix_socket_directories": f"'{root}'",
                "max_connections": str(max_connections),
                "fsync": switch,
                "full_page_writes": switch,
                "synchronous_commit": "on",
                "log_min_messages": "warning",
            }
            with (cluster.data_dir / "postgresql.conf").open("a") as conf:
                conf.write("\n# gengate test cluster\n")
                conf.writelines(f"{name} = {value}\n" for name, value in settings.items())
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        return cluster

    def start(self) -> None:
        """Start on `self.port` and wait until it accepts connections. The first start moves to
        another free port when this one was taken meanwhile; later starts keep it."""
        first = not self.log_path.exists()
        for attempt in range(START_ATTEMPTS if first else 1):
            try:
                self._pg_ctl("start", "-l", str(self.log_path), "-o", f"-p {self.port}")
            except PostgresError:
                in_use = "already in use" in self.log_tail().lower()
                if not (first and in_use and attempt + 1 < START_ATTEMPTS):
                    raise
                self.port = free_port()
                continue
            self._running = True
            return

    def stop(self, mode: StopMode = "fast") -> None:
        """Stop the server: `fast` ends sessions cleanly, `immediate` is as abrupt as a crash."""
        if self.is_running():
            self._pg_ctl("stop", "-m", mode)
        self._running = False

    def restart(self, mode: StopMode = "fast") -> None:
        """Stop and start again on the same port: clients see their connections break."""
        self.stop(mode)
        self.start()

    @contextlib.contextmanager
    def down(self, mode: StopMode = "fast") -> Iterator[None]:
        """The server stopped for the body of a `with`, started again after it."""
        self.stop(mode)
        try:
            yield
        finally:
            self.start()

    def is_running(self) -> bool:
        if not (self.data_dir / "postmaster.pid").exists():
            return False
        status = [str(self.bindir / "pg_ctl"), "status", "-D", str(self.data_dir)]
        return self._run_server_command(status, check=False).returncode == 0

    def destroy(self) -> None:
        """Stop the server at once and remove its folder."""
        with contextlib.suppress(PostgresError, OSError, subprocess.SubprocessError):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    # -- databases ------------------------------------------------------------------------------
    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL as the superuser over TCP; its unaligned output without headers."""
        psql = self.bindir / "psql"
        binary = str(psql) if psql.is_file() else (shutil.which("psql") or "psql")
        argv = [binary, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"]
        argv += ["-p", str(self.port), "-U", SUPERUSER, "-d", database, "-c", sql]
        done = subprocess.run(
            argv, capture_output=True, text=True, env=_client_env(), timeout=COMMAND_TIMEOUT_S, check=False
        )
        if done.returncode != 0:
            raise PostgresError(f"psql failed ({done.returncode}) on {sql!r}:\n{done.stderr}")
        return done.stdout

    def create_database(self, name: str) -> str:
        """A new empty database (from `template0`); returns its URL."""
        self.psql(f"CREATE DATABASE \"{_identifier(name)}\" TEMPLATE template0 ENCODING 'UTF8'")
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop it, closing any connection still open to it."""
        self.psql(f'DROP DATABASE IF EXISTS "{_identifier(name)}" WITH (FORCE)')

    def fresh_database(self, prefix: str = "t") -> str:
        """Create a database with a random name; returns the name."""
        name = f"{prefix}_{secrets.token_hex(6)}"
        self.create_database(name)
        return name

    # -- plumbing -------------------------------------------------------------------------------
    def log_tail(self, chars: int = 4000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-chars:]

    def _pg_ctl(self, *args: str) -> None:
        command, rest = args[0], args[1:]
        wait = ["-w", "-t", str(COMMAND_TIMEOUT_S)]
        self._run_server_command(
            [str(self.bindir / "pg_ctl"), command, "-D", str(self.data_dir), *wait, *rest]
        )

    def _run_server_command(self, argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run as the cluster's owner (`pg_ctl` and `initdb` refuse root), in a session of its own
        so that a Ctrl-C meant for the tests does not stop the server under them."""
        env = _client_env() | {"LC_ALL": "C", "LANG": "C"}
        owner = self.run_as
        if owner is not None:
            env |= {"HOME": str(self.root), "USER": owner.name, "LOGNAME": owner.name}
        done = subprocess.run(
            argv,
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S + 30,
            start_new_session=True,
            check=False,
            user=owner.uid if owner else None,
            group=owner.gid if owner else None,
            extra_groups=[] if owner else None,
        )
        if check and done.returncode != 0:
            raise PostgresError(
                f"{Path(argv[0]).name} {argv[1]} failed ({done.returncode}):\n{done.stdout}{done.stderr}\n"
                f"--- {self.log_path} ---\n{self.log_tail()}"
            )
        return done


def _identifier(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", name):
        raise ValueError(f"not a plain database name: {name!r}")
    return name


def _client_env() -> dict[str, str]:
    """Our environment without the PG* variables that could point a client elsewhere."""
    return {name: value for name, value in os.environ.items() if not name.startswith("PG")}


@contextlib.contextmanager
def running_cluster(*, bindir: Path | None = None, fsync: bool = True) -> Iterator[PgCluster]:
    """A started cluster, stopped and removed after the `with` (and at exit, should the process
    be ended before that)."""
    cluster = PgCluster.create(bindir=bindir, fsync=fsync)
    atexit.register(cluster.destroy)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()
        atexit.unregister(cluster.destroy)
