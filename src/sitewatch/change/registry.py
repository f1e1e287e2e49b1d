"""Change detectors by name: ``@register`` a class, ``get(name)`` it back, ``names()`` for help text."""

from __future__ import annotations

import importlib
from typing import TypeVar

from sitewatch.change.base import ChangeDetector
from sitewatch.errors import SitewatchError, UnknownName

D = TypeVar("D", bound=type[ChangeDetector])

#: Detectors shipped with sitewatch: name -> module that registers it. Declared here so that
#: ``names()`` (the CLI's ``--detector`` help) needs no heavy import; ``get`` imports on first use.
BUILTIN: dict[str, str] = {"cva": "sitewatch.change.cva"}

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


def get(name: str) -> type[ChangeDetector]:
    """The detector class registered as NAME.

    Raises:
        UnknownName: If there is none; the message lists the known names.
    """
    if name not in _DETECTORS and name in BUILTIN:
        importlib.import_module(BUILTIN[name])
    if name not in _DETECTORS:
        raise UnknownName(f"no change detector {name!r}; known: {', '.join(names())}")
    return _DETECTORS[name]


def names() -> list[str]:
    """Names of the registered and shipped detectors, sorted."""
    return sorted(_DETECTORS.keys() | BUILTIN.keys())
