"""tests/e2e/conftest.py loaded once as a module of its own, so that test packages outside
tests/e2e (the relays, the console) reuse its server helpers without a copy of them."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

NAME = "gengate_e2e_harness"


def _load() -> ModuleType:
    if NAME in sys.modules:
        return sys.modules[NAME]
    path = Path(__file__).resolve().parent / "e2e" / "conftest.py"
    spec = importlib.util.spec_from_file_location(NAME, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[NAME] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


harness = _load()
