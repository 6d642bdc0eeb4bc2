"""Lazy package exports (PEP 562): a package names what it offers, and imports a submodule only when
one of its names is first used, so a command pays only for what it touches (`wfctl --help` for none)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def exports(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that finds each name in the module ``where`` gives."""
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value  # found once; later lookups do not come here
        return value

    return __getattr__
