"""`/openapi.json` compared whole with a stored copy, so moving route descriptions cannot change it.

After a deliberate change to the document, rewrite the copy with
`UPDATE_OPENAPI_SNAPSHOT=1 pytest tests/api/test_openapi_snapshot.py` and review its diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import orjson

SNAPSHOT = Path(__file__).with_name("openapi_snapshot.json")


async def test_the_document_is_the_stored_one(http: httpx.AsyncClient) -> None:
    document = (await http.get("/openapi.json")).json()
    document["info"].pop("version")  # the installed package's version, not the document's shape
    rendered = orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    if os.environ.get("UPDATE_OPENAPI_SNAPSHOT") == "1":
        SNAPSHOT.write_bytes(rendered)
    assert orjson.loads(rendered) == orjson.loads(SNAPSHOT.read_bytes())
    assert rendered == SNAPSHOT.read_bytes()
