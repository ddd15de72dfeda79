"""The wire formats a task can be created in; its callbacks are rendered in the same one.

The renderers live in :mod:`gengate.dialects`, one module per member; this enum is all the
domain and the store know of them. A `StrEnum`, so the stored text is the value itself.
"""

from __future__ import annotations

import enum


class Dialect(enum.StrEnum):
    APIXO = "apixo"
    KIE = "kie"
    XHUO = "xhuo"
    FAL = "fal"
    REPLICATE = "replicate"
    OPENAI = "openai"
