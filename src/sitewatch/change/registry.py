"""Change detectors by name: ``@register`` a class, ``get(name)`` it back, ``names()`` for help text."""

from __future__ import annotations

import importlib
from typing import TypeVar

from sitewatch.change.base import ChangeDetector
from sitewatch.errors import SitewatchError, UnknownName

D = TypeVar("D", bound=type[ChangeDetector])

#: Modules of the detectors shipped with sitewatch; imported on first lookup so that ``get`` and
#: ``names`` see them whichever module was imported first.
BUILTIN_MODULES: tuple[str, ...] = ("sitewatch.change.cva",)

_DETECTORS: dict[str, type[ChangeDetector]] = {}


class RegistryError(SitewatchError, ValueError):
    """A detector registered twice under one name (a programming error, caught at import)."""


def register(cls: D) -> D:
    """Class decorator adding a detector under its ``name``.

    Raises:
        RegistryError: If another class already holds that name.
    """
    known = _DETECTORS.get(cls.name)
    if known is not None and known is not cls:
        raise RegistryError(f"change detector {cls.name!r} is already registered by {known.__qualname__}")
    _DETECTORS[cls.name] = cls
    return cls


def _load_builtins() -> None:
    for module in BUILTIN_MODULES:
        importlib.import_module(module)


def get(name: str) -> type[ChangeDetector]:
    """The detector class registered as NAME.

    Raises:
        UnknownName: If there is none; the message lists the known names.
    """
    _load_builtins()
    if name not in _DETECTORS:
        raise UnknownName(f"no change detector {name!r}; known: {', '.join(names())}")
    return _DETECTORS[name]


def names() -> list[str]:
    """Registered detector names, sorted."""
    _load_builtins()
    return sorted(_DETECTORS)
