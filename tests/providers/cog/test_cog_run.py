"""The cog provider against a real cog server: results, logs, failures, plain outputs, schema."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cog_runs import Run
from PIL import Image

from cog_servers import CogServer, start_cog, upload_store
from gengate.domain.errors import BadRequest
from gengate.domain.states import FailCode
from gengate.providers.base import ProviderFailure
from gengate.providers.cog.provider import CogProvider, parse_cog_options

MakeCog = Callable[..., CogProvider]


@pytest.fixture(scope="module")
def values_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CogServer]:
    server = start_cog("values", tmp_path_factory.mktemp("cog-values"))
    yield server
    server.stop()


async def test_a_png_becomes_our_result_file(cog: MakeCog, new_run: Callable[..., Run]) -> None:
    run = new_run()
    files = await cog().run({"mode": "predict", "prompt": "a square", "color": "blue", "size": 24}, run.ctx)
    assert len(files) == 1
    assert files[0].content_type == "image/png"
    assert files[0].path.parent == run.ctx.output_dir
    with Image.open(files[0].path) as image:
        assert image.size == (24, 24)
        assert image.getpixel((0, 0)) == (0, 0, 255)
    assert run.outputs == []  # nothing but a file came back


async def test_the_models_logs_become_the_tasks_log(cog: MakeCog, new_run: Callable[..., Run]) -> None:
    run = new_run()
    await cog().run({"prompt": "slow", "steps": 3, "step_s": 0.05}, run.ctx)
    assert run.log_text.splitlines() == ["step 1/3", "step 2/3", "step 3/3"]


async def test_a_failing_model_fails_the_task_with_its_error(
    cog: MakeCog, new_run: Callable[..., Run]
) -> None:
    provider = cog()
    run = new_run()
    with pytest.raises(ProviderFailure) as failure:
        await provider.run({"prompt": "doomed", "fail": True, "steps": 1, "step_s": 0}, run.ctx)
    assert failure.value.fail_code == FailCode.PROVIDER_ERROR
    assert not failure.value.transient  # the same code on the same input would fail again
    assert "the model broke on 'doomed'" in failure.value.message
    assert provider.servers()[0].state == "ready"  # a model's error says nothing of the server


async def test_files_inside_a_structure_and_plain_values(
    values_server: CogServer, cog: MakeCog, new_run: Callable[..., Run]
) -> None:
    run = new_run()
    files = await cog(values_server.url).run({"count": 3}, run.ctx)
    assert [file.content_type for file in files] == ["image/png"] * 3
    assert [Path(file.path).name for file in files] == ["0.png", "1.png", "2.png"]
    with Image.open(files[2].path) as image:
        assert image.getpixel((0, 0)) == (80, 0, 0)
    assert run.outputs[-1] == {"caption": "3 squares", "score": 0.5}


async def test_input_is_checked_against_the_published_schema(cog: MakeCog) -> None:
    provider = cog()
    check = provider.input_checks["predict"]
    assert check.json_schema()["additionalProperties"] is True  # not known before a server is seen
    assert check.check({"anything": 1}) == {"anything": 1}
    await provider.watch.started()
    schema = check.json_schema()
    assert schema["required"] == ["prompt"]
    assert schema["$defs"]["color"]["enum"] == ["red", "blue"]
    assert check.check({"prompt": "x", "size": 32}) == {"prompt": "x", "size": 32}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"prompt": "x", "size": 4}, "input.size: 4 is less than the minimum of 8"),
        ({"prompt": "x", "color": "green"}, 'input.color: "green" is not one of'),
        ({"size": 8}, '"prompt" is a required property'),
        ({"prompt": "x", "sise": 8}, "'sise' was unexpected"),
        ({"prompt": 7}, 'input.prompt: 7 is not of type "string"'),
    ]
    for bad, says in cases:
        with pytest.raises(BadRequest) as error:
            check.check(bad)
        assert says in error.value.message


async def test_without_a_published_schema_input_passes_through(
    values_server: CogServer, cog: MakeCog
) -> None:
    provider = cog(values_server.url)
    await provider.watch.started()
    assert provider.input_checks["predict"].check({"count": "not checked here"}) == {
        "count": "not checked here"
    }


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="urls"):
        parse_cog_options({})
    with pytest.raises(ValueError, match="not an http"):
        parse_cog_options({"urls": ["ftp://x"]})
    assert parse_cog_options({"urls": "http://a:5000/, http://b:5000"}).urls == [
        "http://a:5000",
        "http://b:5000",
    ]


async def test_output_urls_are_copied_into_our_files(
    tmp_path: Path, cog: MakeCog, new_run: Callable[..., Run]
) -> None:
    """A server with an upload URL returns its files as URLs: each is fetched into our files."""
    with upload_store() as bucket:
        server = start_cog("image", tmp_path, upload_url=bucket)
        try:
            run = new_run()
            files = await cog(server.url).run({"prompt": "x", "size": 12}, run.ctx)
        finally:
            server.stop()
    assert [file.content_type for file in files] == ["image/png"]
    with Image.open(files[0].path) as image:
        assert image.size == (12, 12)
