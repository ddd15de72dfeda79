#!/bin/sh
# Make sure the PostgreSQL server binaries (initdb, pg_ctl) are here for the tests, which start
# their own server in a temp folder (tests/pgcluster.py). Quiet and quick when they are already
# installed; as root, installs Debian's `postgresql` package when they are not. Not root and
# missing: says so and exits 0 (the PostgreSQL tests then skip, or fail under CI=true).
set -eu

has_server() {
    [ -x "$1/initdb" ] && [ -x "$1/pg_ctl" ]
}

found() {
    if [ -n "${GENGATE_TEST_PG_BINDIR:-}" ]; then
        has_server "$GENGATE_TEST_PG_BINDIR"
        return
    fi
    if command -v pg_config >/dev/null 2>&1 && has_server "$(pg_config --bindir 2>/dev/null)"; then
        return 0
    fi
    for bindir in /usr/lib/postgresql/*/bin; do
        if has_server "$bindir"; then
            return 0
        fi
    done
    command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1
}

if found; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-postgres: PostgreSQL is not installed and this is not root; install it with" >&2
    echo "  sudo apt-get install -y postgresql   (or your system's package)" >&2
    echo "ensure-postgres: until then the PostgreSQL tests are skipped (and fail under CI=true)" >&2
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-postgres: PostgreSQL is not installed and there is no apt-get; install it by hand" >&2
    exit 1
fi

echo "ensure-postgres: installing PostgreSQL with apt-get ..." >&2
export DEBIAN_FRONTEND=noninteractive
install() {
    apt-get install -y -q --no-install-recommends postgresql >/dev/null
}
if ! install; then
    apt-get update -q >/dev/null
    install
fi

if ! found; then
    echo "ensure-postgres: the postgresql package installed, but no initdb/pg_ctl was found" >&2
    exit 1
fi
# The package may start a system-wide cluster on 5432; the tests start their own on free ports.
if command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now postgresql >/dev/null 2>&1 || true
fi
echo "ensure-postgres: PostgreSQL installed" >&2
