"""Puts the SDK's sources into gengate-client's wheel and sdist.

They live in the repository's src/gengate, two folders up; an sdist carries a copy under its own
src/gengate, which a wheel built from that sdist then takes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

#: What the SDK is, relative to the `gengate` package: nothing of the server. `wire` reads the
#: answers, `net` bounds how much of them is read; neither imports anything but httpx.
FILES = ("__init__.py", "py.typed", "client", "wire", "net")


def _package_root(project_root: Path) -> Path:
    for candidate in (project_root / "src" / "gengate", project_root.parent.parent / "src" / "gengate"):
        if (candidate / "client" / "__init__.py").is_file():
            return candidate
    raise FileNotFoundError(f"no src/gengate/client beside or two folders above {project_root}")


class CustomBuildHook(BuildHookInterface):
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        package = _package_root(Path(self.root))
        prefix = "gengate" if self.target_name == "wheel" else "src/gengate"
        for name in FILES:
            build_data["force_include"][str(package / name)] = f"{prefix}/{name}"
