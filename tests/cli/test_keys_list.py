"""`gengate keys list` never cuts a key id, however narrow the terminal: an id read off the listing
must work in `gengate keys topup`."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gengate.cli.key_listing import print_keys

GENGATE = Path(sys.executable).parent / "gengate"
KEY_ID = re.compile(r"\bkey_[0-9a-f]+\b")


def gengate(*args: str, data_dir: Path, columns: int = 80) -> subprocess.CompletedProcess[str]:
    clean = {name: value for name, value in os.environ.items() if not name.startswith("GENGATE_")}
    return subprocess.run(
        [str(GENGATE), *args],
        env={**clean, "GENGATE_DATA_DIR": str(data_dir), "COLUMNS": str(columns)},
        cwd=data_dir.parent,
        capture_output=True,  # stdout is a pipe, not a terminal
        text=True,
        timeout=60,
        check=False,
    )


def test_ids_are_whole_at_80_columns_and_usable(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    created_ids = []
    for name in ("a key with a rather long descriptive name for the listing", "second"):
        created = gengate(
            "keys", "create", "--name", name, "--credits", "3", "--expires", "2099-01-01T00:00:00",
            data_dir=data_dir,
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        created_ids.append(created.stderr.split()[1])

    listed = gengate("keys", "list", data_dir=data_dir, columns=80)
    assert listed.returncode == 0, listed.stderr
    shown = KEY_ID.findall(listed.stdout)
    assert sorted(shown) == sorted(created_ids), listed.stdout
    assert "a key with a rather long descriptive name for the listing" in listed.stdout

    topped = gengate("keys", "topup", shown[0], "2", data_dir=data_dir)
    assert topped.returncode == 0, topped.stderr
    assert topped.stdout.strip() == f"{shown[0]}: balance 5"


class Terminal(io.StringIO):
    """What rich takes for a terminal: `isatty()` is true."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("columns", [80, 40, 20])
def test_terminal_table_keeps_ids_whole_when_narrow(monkeypatch: pytest.MonkeyPatch, columns: int) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    rows = [
        {
            "id": f"key_0123456789abcde{n}",
            "name": "a name that has to fold " * 3,
            "prefix": "gg_abcdefgh",
            "disabled": False,
            "expires_at": None,
            "models": ["demo-image", "demo-echo", "flux-2"],
            "credits": None,
        }
        for n in range(2)
    ]
    out = Terminal()
    print_keys(rows, out)
    text = out.getvalue()
    assert text.startswith("┏"), text  # the table, not the plain lines
    assert KEY_ID.findall(text) == [row["id"] for row in rows], text
    assert text.count("gg_abcdefgh…") == 2, text
