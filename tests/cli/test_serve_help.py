"""`gengate serve --help` describes every option."""

from __future__ import annotations

import click
from click.testing import CliRunner

from gengate.cli.main import cli, serve


def test_every_serve_option_has_help() -> None:
    options = [param for param in serve.params if isinstance(param, click.Option)]
    assert options
    missing = [option.opts[0] for option in options if not (option.help or "").strip()]
    assert not missing, f"options without help: {missing}"


def test_serve_help_shows_each_option_with_its_text() -> None:
    shown = CliRunner().invoke(cli, ["serve", "--help"])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    for param in serve.params:
        if not isinstance(param, click.Option):
            continue
        name = param.opts[0]
        at = next(i for i, line in enumerate(lines) if line.strip().startswith(name))
        described = lines[at].strip().removeprefix(name).split(maxsplit=1)
        # The help text follows the option (and its metavar) on its line or the next.
        assert len(described) > 1 or lines[at + 1].startswith(" " * 10), (name, shown.output)
    assert "GENGATE_MAX_CONNECTIONS" in shown.output
