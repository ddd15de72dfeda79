"""How `gengate keys list` shows keys: ids and prefixes are never cut, since a cut id names no key."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

import click
from rich.console import Console
from rich.table import Table

HEADERS = ("id", "name", "prefix", "disabled", "expires", "models", "credits")
#: Columns a reader copies from: kept on one line and whole, however narrow the terminal.
WHOLE = frozenset({"id", "prefix"})
#: The narrowest the other columns get (their text folds onto more lines).
_FOLDED_MIN = 6


def key_cells(row: dict[str, Any]) -> list[str]:
    """One key's public fields as the listing's cells."""
    expires = row["expires_at"]
    return [
        row["id"],
        row["name"],
        row["prefix"] + "…",
        "yes" if row["disabled"] else "no",
        datetime.fromtimestamp(expires / 1000, UTC).isoformat() if expires else "never",
        ",".join(row["models"]) if row["models"] is not None else "all",
        str(row["credits"]) if row["credits"] is not None else "unlimited",
    ]


def keys_table(rows: Sequence[dict[str, Any]], *, width: int | None = None) -> Table:
    """A rich table that keeps `WHOLE` columns whole; if `width` cannot hold them, it grows past it."""
    table = Table()
    for header in HEADERS:
        if header in WHOLE:
            table.add_column(header, no_wrap=True, overflow="ignore")
        else:
            table.add_column(header, overflow="fold")
    cells = [key_cells(row) for row in rows]
    for line in cells:
        table.add_row(*line)
    needed = 1  # the left border, then each column's padding and right border
    for index, header in enumerate(HEADERS):
        longest = max([len(header), *(len(line[index]) for line in cells)])
        needed += (longest if header in WHOLE else min(longest, _FOLDED_MIN)) + 3
    if width is not None and needed > width:
        table.width = needed
    return table


def print_keys(rows: Sequence[dict[str, Any]], out: TextIO | None = None) -> None:
    """A table on a terminal; tab-separated lines elsewhere, so pipes and scripts get every cell whole."""
    out = out if out is not None else sys.stdout
    if not out.isatty():
        for line in (list(HEADERS), *(key_cells(row) for row in rows)):
            click.echo("\t".join(cell.replace("\t", " ") for cell in line), file=out)
        return
    console = Console(file=out)
    # crop=False: a table wider than the terminal wraps there rather than losing its right edge.
    console.print(keys_table(rows, width=console.width), crop=False)
