"""The moderation hook: the built-in deny-lists, an operator's own moderator, and what a client
sees when an input is refused (403 `forbidden`, no task, no charge)."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gengate.runtime import Gateway
from gengate.services.moderation import DenyList, ModerationConfigError, build_moderator
from gengate.settings import Settings, load_settings

ADMIN = {"Authorization": "Bearer gga_test_admin_key"}


async def verdict_of(deny: DenyList, value: object) -> bool:
    return (await deny.check("m", "echo", {"data": value})).allowed


async def test_denied_words_are_whole_words_in_any_case() -> None:
    deny = DenyList(words=["forbidden", "c++"])
    assert not await verdict_of(deny, "a FORBIDDEN thing")
    assert not await verdict_of(deny, "I write C++ daily")
    assert await verdict_of(deny, "unforbiddenly")  # inside a longer word: not the word
    assert await verdict_of(deny, "c+")
    # Any string anywhere in the input, however nested.
    assert not await verdict_of(deny, [{"deep": ["ok", {"x": "Forbidden"}]}])
    assert await verdict_of(deny, [{"forbidden": "keys are not text"}])


async def test_denied_patterns_match_anywhere() -> None:
    deny = DenyList(patterns=[r"\b\d{3}-\d{2}-\d{4}\b", r"buy\s+now"])
    assert not await verdict_of(deny, "ssn 123-45-6789 here")
    assert not await verdict_of(deny, "BUY   NOW")
    assert await verdict_of(deny, "buy later")


def test_settings_read_words_comma_separated_and_patterns_one_per_line(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GENGATE_MODERATION_DENY_WORDS", "alpha, Beta ,,gamma")
    monkeypatch.setenv("GENGATE_MODERATION_DENY_PATTERNS", "a{1,3}b\nx, y")
    loaded = load_settings()
    assert loaded.moderation_deny_words == ["alpha", "Beta", "gamma"]
    assert loaded.moderation_deny_patterns == ["a{1,3}b", "x, y"]
    monkeypatch.setenv("GENGATE_MODERATION_DENY_PATTERNS", '["a,b", "c"]')
    assert load_settings().moderation_deny_patterns == ["a,b", "c"]
    monkeypatch.setenv("GENGATE_MODERATION_DENY_PATTERNS", "(unclosed")
    with pytest.raises(ValueError, match="does not compile"):
        load_settings()


def test_no_lists_no_moderator(settings: Settings) -> None:
    assert build_moderator(settings) is None


def test_an_operator_plugs_in_a_moderator_by_dotted_path(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "house_rules.py").write_text(
        textwrap.dedent(
            """
            from gengate.services.moderation import Verdict

            class Shouting:
                def __init__(self, settings):
                    self.settings = settings

                async def check(self, model, mode, input):
                    prompt = input.get("prompt") or ""
                    if prompt.isupper():
                        return Verdict(False, "No shouting, please.")
                    return Verdict(True)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    moderator = build_moderator(settings.model_copy(update={"moderation_hook": "house_rules:Shouting"}))
    assert type(moderator).__name__ == "Shouting"
    with pytest.raises(ModerationConfigError):
        build_moderator(settings.model_copy(update={"moderation_hook": "house_rules:Missing"}))


@pytest.fixture
async def moderated(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    (tmp_path / "broken_rules.py").write_text(
        "class Broken:\n"
        "    def __init__(self, settings): pass\n"
        "    async def check(self, model, mode, input):\n"
        "        if input.get('prompt') == 'crash': raise RuntimeError('classifier down')\n"
        "        from gengate.services.moderation import DenyList\n"
        "        return await DenyList(['forbidden']).check(model, mode, input)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    gateway = Gateway(settings.model_copy(update={"workers": 0, "moderation_hook": "broken_rules:Broken"}))
    async with gateway.running():
        transport = httpx.ASGITransport(app=gateway.asgi())
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as http:
            yield http


async def test_a_refused_input_is_forbidden_with_no_task_and_no_charge(moderated: httpx.AsyncClient) -> None:
    http = moderated
    created = await http.post("/admin/v1/keys", json={"name": "m", "credits": 3}, headers=ADMIN)
    key = {"Authorization": f"Bearer {created.json()['data']['key']}"}
    for path, body in (
        ("/api/v1/generateTask/demo-echo", {"input": {"prompt": "something Forbidden here"}}),
        ("/api/v1/jobs/createTask", {"model": "demo-echo", "input": {"data": {"x": ["forbidden"]}}}),
        ("/api/v1/run/demo-echo", {"prompt": "forbidden"}),
    ):
        refused = await http.post(path, json=body, headers=key)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "forbidden"
    tasks = (await http.get("/api/v1/tasks", headers=key)).json()["data"]["tasks"]
    assert tasks == []
    assert (await http.get("/api/v1/account", headers=key)).json()["data"]["credits"] == 3
    fine = {"input": {"prompt": "fine"}}
    allowed = await http.post("/api/v1/generateTask/demo-echo", json=fine, headers=key)
    assert allowed.status_code == 200


async def test_a_failing_moderator_refuses_with_unavailable(moderated: httpx.AsyncClient) -> None:
    http = moderated
    created = await http.post("/admin/v1/keys", json={"name": "m"}, headers=ADMIN)
    key = {"Authorization": f"Bearer {created.json()['data']['key']}"}
    crash = {"input": {"prompt": "crash"}}
    response = await http.post("/api/v1/generateTask/demo-echo", json=crash, headers=key)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "unavailable"
    assert response.headers["retry-after"]
