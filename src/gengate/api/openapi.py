"""The OpenAPI document, put together from the fragments the route modules keep beside their handlers.

Each route module has `openapi(spec) -> Fragment`: its paths and the schemas only it names,
drawn from the same msgspec structs that validate requests. A new door adds its module here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gengate.api import (
    account,
    admin,
    apixo,
    callbacks,
    fal_openapi,
    kie,
    openai_images,
    ops,
    replicate,
    tasks_api,
    upstream_hooks,
    xhuo,
)
from gengate.api.openapi_parts import ERROR, KEY, DocSpec, Fragment, with_limits
from gengate.domain.catalogue import Catalogue

#: The route groups, in the order their paths appear in the document.
FRAGMENTS: tuple[Callable[[DocSpec], Fragment], ...] = (
    apixo.openapi,
    tasks_api.openapi,
    kie.openapi,
    xhuo.openapi,
    replicate.openapi,
    openai_images.openapi,
    fal_openapi.openapi,
    admin.openapi,
    ops.openapi_files,
    account.openapi,
    callbacks.openapi,
    ops.openapi,
    upstream_hooks.openapi,
)


def openapi_document(catalogue: Catalogue, version: str) -> dict[str, Any]:
    spec = DocSpec.of(catalogue, admin.OPENAPI_STRUCTS)
    components: dict[str, Any] = {**spec.schemas, "Error": ERROR, "Key": KEY}
    paths: dict[str, Any] = {}
    for describe in FRAGMENTS:
        fragment = describe(spec)
        paths |= fragment.paths
        components |= fragment.schemas
    return {
        "openapi": "3.1.0",
        "info": {"title": "gengate", "version": version, "description": "Asynchronous AI generation tasks."},
        "paths": with_limits(paths),
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
