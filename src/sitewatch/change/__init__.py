"""Change detection: what differs between two images of a place, as a mask, probability and polygons.

``compare()`` loads a pair and runs a detector (what the CLI, ``eval`` and ``analyze`` share), by
default ``auto``: the best one valid for the pair's bands and GSD; ``vectorize()`` turns a
detector's result into typed polygons. Detectors are small named classes in ``registry``
(``get_detector(name)``), so a new method is one new file.

Every CLI start imports this package (for ``--detector`` help), so it must stay light: the
modules imported here defer NumPy and the geospatial stack to their functions, and the detector
and pair-loading names are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sitewatch.change import registry
from sitewatch.change.base import ChangeDetector, ChangeResult, min_mapping_unit_px
from sitewatch.change.compare import (
    ChangeProduct,
    compare,
    write_mask_png,
    write_probability_tif,
    write_products,
)
from sitewatch.change.registry import get as get_detector
from sitewatch.change.vectorize import ChangeKind, ChangePolygon, vectorize

if TYPE_CHECKING:
    from sitewatch.change.cva import Cva, CvaSettings
    from sitewatch.change.pair import ImagePair, load_pair

_LAZY: dict[str, str] = {
    "Cva": "sitewatch.change.cva",
    "CvaSettings": "sitewatch.change.cva",
    "ImagePair": "sitewatch.change.pair",
    "load_pair": "sitewatch.change.pair",
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
    "compare",
    "get_detector",
    "load_pair",
    "min_mapping_unit_px",
    "registry",
    "vectorize",
    "write_mask_png",
    "write_probability_tif",
    "write_products",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value
