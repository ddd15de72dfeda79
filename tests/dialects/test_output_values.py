"""Plain output values (a model server's text or numbers) in the seed dialects: `resultJson`
carries them as `output` beside `resultUrls`; XHuo's run result as `output`."""

from __future__ import annotations

from pathlib import Path

import orjson
from test_dialects import task

from gengate.dialects import xhuo
from gengate.dialects.links import SignedLinks
from gengate.domain.states import TaskState
from gengate.files.local import LocalFileStore
from gengate.files.signing import UrlSigner


def links(tmp_path: Path) -> SignedLinks:
    return SignedLinks(LocalFileStore(tmp_path, "http://files.test", UrlSigner(b"k")), ttl_ms=60_000)


def test_result_json_has_the_output_beside_the_urls(tmp_path: Path) -> None:
    done = task(TaskState.SUCCESS, output_json='{"caption":"a cat","score":0.9}')
    result = orjson.loads(links(tmp_path).result_json(done))
    assert result["output"] == {"caption": "a cat", "score": 0.9}
    assert len(result["resultUrls"]) == 1


def test_result_json_without_output_is_unchanged(tmp_path: Path) -> None:
    assert set(orjson.loads(links(tmp_path).result_json(task(TaskState.SUCCESS)))) == {"resultUrls"}


def test_xhuo_run_result_has_the_output(tmp_path: Path) -> None:
    done = task(TaskState.SUCCESS, output_json="[1, 2]")
    assert xhuo.run_result(done, links(tmp_path))["output"] == [1, 2]
    assert "output" not in xhuo.run_result(task(TaskState.SUCCESS), links(tmp_path))
