"""Mistakes in `gengate.toml` and `GENGATE_*` variables are named: the file or variable, the table,
the setting, and the nearest known name; never a silent pass, never a raw pydantic dump."""

from __future__ import annotations

from pathlib import Path

import pytest

from gengate.settings import load_settings
from gengate.startup import StartupError

GOOD_MODEL = '[models.demo]\nprovider = "demo-image"\n'


@pytest.fixture(autouse=True)
def _clean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("GENGATE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def _message(config: str) -> str:
    Path("gengate.toml").write_text(config)
    with pytest.raises(StartupError) as caught:
        load_settings()
    text = str(caught.value)
    assert "pydantic" not in text
    assert "validation error" not in text
    assert len(text.splitlines()) <= 2, text
    return text


def test_a_good_file_loads() -> None:
    Path("gengate.toml").write_text(GOOD_MODEL + "timeout_s = 5\n[providers.r]\nkind = 'demo'\n")
    loaded = load_settings()
    assert loaded.models["demo"].timeout_s == 5
    assert loaded.providers["r"].kind == "demo"


def test_a_typo_in_a_model_table_is_named_with_the_nearest_setting() -> None:
    text = _message(GOOD_MODEL + "timout_s = 5\n")
    assert text == 'gengate.toml: [models.demo] has no setting "timout_s"; did you mean "timeout_s"?'


def test_a_typo_in_a_table_name_is_an_unknown_table() -> None:
    text = _message('[modles.x]\nprovider = "demo-image"\n')
    assert text == "gengate.toml: unknown table [modles]; did you mean [models]?"


def test_a_typo_at_the_top_level_is_named() -> None:
    assert _message("prot = 8001\n") == 'gengate.toml: unknown setting "prot"; did you mean "port"?'
    text = _message("nothing_like_this = 1\n")
    assert text.startswith('gengate.toml: unknown setting "nothing_like_this"')
    assert "did you mean" not in text


def test_a_syntax_error_names_the_file_and_line() -> None:
    text = _message("port = 8001\n[models.x\n")
    assert text.startswith("gengate.toml: not valid TOML: ")
    assert "line 2" in text


def test_a_type_error_says_which_field_in_which_table_in_plain_words() -> None:
    text = _message(GOOD_MODEL + 'timeout_s = "abc"\n')
    assert text == 'gengate.toml: [models.demo] timeout_s: must be a number greater than 0 (got "abc")'
    assert (
        _message("port = 70000\n") == "gengate.toml: port: must be a whole number from 0 to 65535 (got 70000)"
    )
    text = _message("[providers.p]\nbase_url = 'http://x'\n")
    assert text == "gengate.toml: [providers.p] kind: is required"


def test_a_value_error_of_a_validator_keeps_its_words() -> None:
    text = _message("[models.x]\nprice = 2\n")
    assert text == "gengate.toml: [models.x]: a model needs `providers` (or `provider`)"


def test_a_bad_environment_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENGATE_PORT", "abc")
    assert _message("") == 'GENGATE_PORT: must be a whole number from 0 to 65535 (got "abc")'
    monkeypatch.delenv("GENGATE_PORT")
    monkeypatch.setenv("GENGATE_MODELS__DEMO__TIMEOUT_S", "-1")
    text = _message(GOOD_MODEL)
    assert text == 'GENGATE_MODELS__DEMO__TIMEOUT_S: must be a number greater than 0 (got "-1")'


def test_the_environment_wins_so_its_error_is_named_even_with_the_same_key_in_the_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GENGATE_WORKERS", "many")
    assert _message("workers = 4\n").startswith("GENGATE_WORKERS: must be a whole number")


def test_a_secret_value_is_not_echoed() -> None:
    text = _message("admin_key = 12345678\n")
    assert text.startswith("gengate.toml: admin_key: must be a string")
    assert "12345678" not in text


def test_a_config_file_that_does_not_exist_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(StartupError, match=r"config file nowhere\.toml does not exist"):
        load_settings("nowhere.toml")
    monkeypatch.setenv("GENGATE_CONFIG", "missing.toml")
    with pytest.raises(StartupError, match=r"GENGATE_CONFIG.*missing\.toml"):
        load_settings()


def test_an_unsupported_database_url_is_named_without_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENGATE_DATABASE_URL", "mysql://user:hunter2@db/x")
    text = _message("")
    assert text.startswith("GENGATE_DATABASE_URL: ")
    assert "sqlite:///" in text
    assert "postgresql://" in text
    assert "hunter2" not in text


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("GENGATE_FILES_URL", "ftp://x/y", "GENGATE_FILES_URL: unsupported files URL 'ftp://x/y': use s3://"),
        ("GENGATE_LOG_LEVEL", "loud", "GENGATE_LOG_LEVEL: use debug, info, warning, error or critical"),
        ("GENGATE_MODELS", "{not json", "GENGATE_MODELS: not valid JSON"),
        (
            "GENGATE_MODELS__X__TIMOUT_S",
            "5",
            'GENGATE_MODELS__X__TIMOUT_S: [models.x] has no setting "timout_s"; did you mean "timeout_s"?',
        ),
    ],
)
def test_values_that_would_fail_later_are_named_at_load(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    assert _message("").startswith(message)


def test_a_value_where_a_table_or_a_list_item_goes_is_said_plainly() -> None:
    assert _message("[providers]\nx = 5\n") == "gengate.toml: [providers.x]: must be a table (got 5)"
    text = _message('webhook_retry_schedule = [1, "a"]\n')
    assert text == 'gengate.toml: webhook_retry_schedule[1]: must be a number (got "a")'
