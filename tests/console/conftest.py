"""Console fixtures: a real `gengate serve` (started by the end-to-end harness of tests/e2e), a
headless Chromium driven by Playwright, and a loopback callback receiver (helpers in
`console_support`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from console_support import CHROMIUM, Guarded, Receiver, open_guarded

from e2e_harness import harness


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"true", "1", "yes"}


@pytest.fixture(scope="module")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A server for one module: demo models, loopback callbacks allowed."""
    server = harness.start_server(
        tmp_path_factory.mktemp("console"),
        "console",
        env={"GENGATE_WEBHOOK_ALLOW": "127.0.0.0/8", "GENGATE_CONSOLE_SIGNIN_LIMIT": "1000/minute"},
    )
    yield server
    server.stop()
    log = server.log()
    assert "Traceback" not in log, f"the console's server logged an unexpected error:\n{log}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        message = f"no Chromium at {CHROMIUM}: run scripts/ensure-chromium.sh"
        if _in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def guarded_page(browser: Any, console_server: Any) -> Iterator[Guarded]:
    guarded = open_guarded(browser, console_server.base_url)
    yield guarded
    guarded.page.context.close()
    guarded.watch.check()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()
