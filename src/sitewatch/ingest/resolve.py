"""From what the user named (files, folders, options) to a list of :class:`SceneSource`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from pyproj import CRS
from pyproj.exceptions import CRSError
from rasterio.transform import from_bounds

from sitewatch.errors import GeoreferenceError, InputError
from sitewatch.ingest.sources import SceneSource
from sitewatch.io.raster import open_raster
from sitewatch.settings import Limits

RASTER_SUFFIXES = frozenset({".tif", ".tiff", ".jp2", ".png", ".jpg", ".jpeg", ".bmp"})


def parse_crs(text: str) -> CRS:
    """A CRS from ``EPSG:n``, WKT or PROJ text."""
    try:
        return CRS.from_user_input(text)
    except CRSError as exc:
        raise GeoreferenceError("--crs", f"unknown CRS {text!r}") from exc


def parse_bounds(text: str) -> tuple[float, float, float, float]:
    """``LEFT,BOTTOM,RIGHT,TOP`` in the image's CRS."""
    try:
        left, bottom, right, top = (float(v) for v in text.split(","))
    except ValueError as exc:
        raise GeoreferenceError("--bounds", f"expected LEFT,BOTTOM,RIGHT,TOP, got {text!r}") from exc
    if not (left < right and bottom < top):
        raise GeoreferenceError("--bounds", f"{text!r} needs LEFT < RIGHT and BOTTOM < TOP")
    return left, bottom, right, top


def expand_paths(paths: Sequence[Path]) -> list[Path]:
    """Files as given; folders replaced by the rasters and STAC JSON files directly inside them."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            inside = sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES | {".json"}
            )
            if not inside:
                raise InputError(path, "folder holds no rasters or STAC JSON files")
            found.extend(inside)
        elif not path.exists():
            raise InputError(path, "no such file or folder")
        else:
            found.append(path)
    return found


def file_source(
    path: Path,
    *,
    acquired: datetime | None,
    bounds: tuple[float, float, float, float] | None,
    crs: CRS | None,
    limits: Limits,
) -> SceneSource:
    """A raster file, with the georeference given on the command line where it has none."""
    if path.suffix.lower() not in RASTER_SUFFIXES:
        raise InputError(path, f"not a supported raster type ({', '.join(sorted(RASTER_SUFFIXES))}) or STAC JSON")
    transform = None
    if bounds is not None:
        with open_raster(path, limits) as src:
            transform = from_bounds(*bounds, width=src.width, height=src.height)
        if crs is None:
            raise GeoreferenceError(path, "--bounds needs --crs")
    return SceneSource(path=path, origin=str(path), acquired=acquired, crs=crs, transform=transform)
