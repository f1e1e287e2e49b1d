"""Change detectors by name: ``@register`` a class, ``get(name)`` it back, ``names()`` for help text."""

from __future__ import annotations

import importlib
from typing import TypeVar

from sitewatch.change.base import ChangeDetector
from sitewatch.errors import SitewatchError, UnknownName

D = TypeVar("D", bound=type[ChangeDetector])

#: Detectors shipped with sitewatch: name -> module that registers it. Declared here so that
#: ``names()`` (the CLI's ``--detector`` help) needs no heavy import; ``get`` imports on first use.
BUILTIN: dict[str, str] = {
    "cva": "sitewatch.change.cva",
    "irmad": "sitewatch.change.irmad",
    "structural": "sitewatch.change.structural",
    "deepcva": "sitewatch.change.deepcva",
    "siamese": "sitewatch.change.siamese",
}

#: The name that asks the default pipeline to pick (see :func:`choose`).
AUTO = "auto"

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
        UnknownName: If there is none (the message lists the known names), or its module cannot be
            imported in this install.
    """
    if name not in _DETECTORS and name in BUILTIN:
        try:
            importlib.import_module(BUILTIN[name])
        except ImportError as exc:
            raise UnknownName(f"change detector {name!r} is not installed ({exc})") from exc
    if name not in _DETECTORS:
        raise UnknownName(f"no change detector {name!r}; known: {', '.join(names())}")
    return _DETECTORS[name]


def names() -> list[str]:
    """Names of the registered and shipped detectors, sorted."""
    return sorted(_DETECTORS.keys() | BUILTIN.keys())


def valid_for(
    cls: type[ChangeDetector], band_count: int, has_rgb: bool, gsd: float | None, *, installed: bool = True
) -> str | None:
    """Why CLS cannot run on BAND_COUNT bands (HAS_RGB: red, green and blue are known) at GSD, or ``None``.

    INSTALLED=False skips the test for the shipped model (a detector given another model folder).
    """
    if installed and not cls.available():
        return f"{cls.name}: its model is not installed"
    if cls.bands == "rgb" and not has_rgb:
        return f"{cls.name}: needs red, green and blue bands ({band_count} band(s) without a known RGB)"
    low, high = cls.gsd_range
    if gsd is not None and not low <= gsd <= high:
        return f"{cls.name}: valid from {low:g} to {high:g} m GSD, not {gsd:g} m"
    return None


def choose(band_count: int, has_rgb: bool, gsd: float | None) -> str:
    """The best detector valid for the data: highest ``rank`` among those :func:`valid_for` accepts.

    ``cva`` works on any bands at any GSD, so there is always an answer.
    """
    candidates = []
    for name in names():
        try:
            candidates.append(get(name))
        except UnknownName:
            continue  # a detector whose module this install lacks is simply not a candidate
    valid = [cls for cls in candidates if valid_for(cls, band_count, has_rgb, gsd) is None]
    return max(valid, key=lambda cls: (cls.rank, cls.name)).name


def resolve(name: str, band_count: int, has_rgb: bool, gsd: float | None) -> str:
    """NAME itself, or :func:`choose`'s pick when NAME is ``auto``.

    Raises:
        UnknownName: If NAME is neither ``auto`` nor registered.
    """
    return choose(band_count, has_rgb, gsd) if name == AUTO else get(name).name
