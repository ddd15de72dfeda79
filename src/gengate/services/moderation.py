"""The moderation hook: every input is shown to a `Moderator` before it is accepted.

The built-in one refuses inputs with a denied word (case-insensitive, whole words) or a match
of a denied regular expression, in any string of the input. An operator plugs in another
(a classifier, a moderation API) by naming a factory in `moderation_hook`: a dotted path
(`package.module:factory` or `package.module.factory`) to a callable that takes the settings
and returns a `Moderator`.
"""

from __future__ import annotations

import pkgutil
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Protocol

import msgspec

from gengate.settings import Settings
from gengate.startup import StartupError


class Verdict(msgspec.Struct, frozen=True):
    """What a moderator decided: `allowed`, and the `reason` a refused client is told."""

    allowed: bool
    reason: str | None = None


ALLOWED = Verdict(True)


class Moderator(Protocol):
    async def check(self, model: str, mode: str, input: Mapping[str, Any]) -> Verdict:
        """Judge a validated input of `model` in `mode` before it becomes a task."""
        ...


class ModerationConfigError(StartupError, ValueError):
    """The moderation settings name a hook that cannot be loaded or patterns that do not compile."""


class DenyList:
    """Refuses an input when any string in it holds a denied word or matches a denied pattern."""

    def __init__(self, words: Iterable[str] = (), patterns: Iterable[str] = ()) -> None:
        words = [w.strip() for w in words if w.strip()]
        # Whole words: not inside a longer word, whatever characters the word itself has.
        alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
        self._words = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE) if words else None
        try:
            self._patterns = [re.compile(p, re.IGNORECASE) for p in patterns if p]
        except re.error as exc:
            raise ModerationConfigError(f"moderation_deny_patterns: {exc}") from exc

    def __bool__(self) -> bool:
        return self._words is not None or bool(self._patterns)

    async def check(self, model: str, mode: str, input: Mapping[str, Any]) -> Verdict:
        for text in _strings(input):
            if self._words is not None and self._words.search(text):
                return Verdict(False, "The input contains a word this gateway does not accept.")
            if any(pattern.search(text) for pattern in self._patterns):
                return Verdict(False, "The input matches content this gateway does not accept.")
        return ALLOWED


def _strings(value: Any) -> Iterator[str]:
    """Every string in a JSON value, iteratively (nesting is bounded, but costs no stack)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)


def build_moderator(settings: Settings) -> Moderator | None:
    """The configured moderator: the operator's hook, else the deny-list, else none."""
    if settings.moderation_hook:
        try:
            factory = pkgutil.resolve_name(settings.moderation_hook)
        except (ImportError, AttributeError, ValueError) as exc:
            raise ModerationConfigError(f"moderation_hook {settings.moderation_hook!r}: {exc}") from exc
        moderator: Moderator = factory(settings)
        return moderator
    deny = DenyList(settings.moderation_deny_words, settings.moderation_deny_patterns)
    return deny if deny else None
