"""Change detection: what differs between two images of a place, as a mask, probability and polygons.

The entry points are ``sitewatch.change.compare.compare()`` (load a pair, run a detector: what the
CLI, ``eval`` and ``analyze`` share) and ``sitewatch.change.vectorize.vectorize()`` (mask to typed
polygons). Detectors are small named classes in ``registry``, so a new method is one new file.

The names below are imported on first use, so that importing ``sitewatch.change.registry`` (as
every CLI start does, for ``--detector`` help) does not pay for OpenCV, SciPy and scikit-image.
``compare`` and ``vectorize`` are not re-exported: those attributes are their modules, and a lazy
re-export would be rebound to the module by whichever import came first.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sitewatch.change import registry
    from sitewatch.change.base import ChangeDetector, ChangeResult, min_mapping_unit_px
    from sitewatch.change.compare import (
        ChangeProduct,
        write_mask_png,
        write_probability_tif,
        write_products,
    )
    from sitewatch.change.cva import Cva, CvaSettings
    from sitewatch.change.pair import ImagePair, load_pair
    from sitewatch.change.vectorize import ChangeKind, ChangePolygon

_EXPORTS: dict[str, str] = {
    "ChangeDetector": "sitewatch.change.base",
    "ChangeKind": "sitewatch.change.vectorize",
    "ChangePolygon": "sitewatch.change.vectorize",
    "ChangeProduct": "sitewatch.change.compare",
    "ChangeResult": "sitewatch.change.base",
    "Cva": "sitewatch.change.cva",
    "CvaSettings": "sitewatch.change.cva",
    "ImagePair": "sitewatch.change.pair",
    "load_pair": "sitewatch.change.pair",
    "min_mapping_unit_px": "sitewatch.change.base",
    "write_mask_png": "sitewatch.change.compare",
    "write_probability_tif": "sitewatch.change.compare",
    "write_products": "sitewatch.change.compare",
}

__all__ = [
    "ChangeDetector",
    "ChangeKind",
    "ChangePolygon",
    "ChangeProduct",
    "ChangeResult",
    "Cva",
    "CvaSettings",
    "ImagePair",
    "load_pair",
    "min_mapping_unit_px",
    "registry",
    "write_mask_png",
    "write_probability_tif",
    "write_products",
]


def __getattr__(name: str) -> Any:
    if name == "registry":
        return importlib.import_module("sitewatch.change.registry")
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value
