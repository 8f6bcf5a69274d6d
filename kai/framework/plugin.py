"""Plugin base class and registry. Plugins only register callbacks when a session opens."""
from __future__ import annotations

from typing import Callable


class Plugin:
    """A scheduler plugin. ``arguments`` are the strings from the config's ``tiers[].plugins[]``."""

    name = ""

    def __init__(self, arguments: dict[str, str] | None = None) -> None:
        self.arguments = dict(arguments or {})

    def on_session_open(self, ssn) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def on_session_close(self, ssn) -> None:
        pass


PLUGINS: dict[str, Callable[[dict], Plugin]] = {}


def register_plugin(cls):
    PLUGINS[cls.name] = cls
    return cls
