"""The ``register`` contract on files: read two rasters, put MOVING on REFERENCE's grid, register.

This is the edge between files and :func:`sitewatch.align.register` (arrays in, a registration
out), shared by ``sitewatch register`` and ``sitewatch eval align``:

* Both georeferenced: MOVING is first placed on REFERENCE's grid by its georeference (bilinear), so
  what is measured is the misregistration left after that, in REFERENCE pixels, and it is also
  given in metres (east, north).
* Otherwise the images are compared in their own pixel coordinates, whatever their sizes.
* The aligned output takes MOVING's pixels straight from the file through the composed map (grid
  placement and registration), so they are interpolated once.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import rasterio
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning

from sitewatch.align.apply import apply
from sitewatch.align.geo import georef_map, shift_metres
from sitewatch.align.register import Registration, register
from sitewatch.io.files import atomic_path
from sitewatch.io.raster import Georef, gdal_env, georef_of, gsd_of, open_raster, reproject_onto
from sitewatch.settings import DEFAULT_LIMITS, Limits


@dataclass(frozen=True)
class Raster:
    """A whole raster as read: ``(bands, rows, cols)`` in its own dtype, its data mask and georeference."""

    path: Path
    data: np.ndarray
    valid: np.ndarray  # bool (rows, cols): nodata, alpha and internal masks joined
    georef: Georef | None

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols)."""
        return int(self.data.shape[1]), int(self.data.shape[2])


@dataclass(frozen=True)
class FileRegistration:
    """A registration of two files, with what is needed to report and apply it."""

    reference: Raster
    moving: Raster
    registration: Registration
    shift_m: tuple[float, float] | None  # (east, north), for georeferenced pairs that registered

    def to_json(self) -> dict[str, object]:
        """The ``register`` contract's JSON object."""
        return self.registration.to_json(self.shift_m)


def read_raster(path: Path, limits: Limits = DEFAULT_LIMITS) -> Raster:
    """Every band but alpha (a palette image as its RGB), with the dataset mask (nodata, alpha,
    internal mask) as VALID.

    Raises:
        RasterRefused: If the file is missing, not an allowed raster, or too large.
        GeoreferenceError: If its georeference is unusable (unknown CRS, rotated grid).
    """
    with open_raster(path, limits) as src:
        georef = georef_of(src, path)
        valid = src.dataset_mask() > 0
        if src.count == 1 and src.colorinterp[0] == ColorInterp.palette:
            colormap, indices = src.colormap(1), src.read(1)
            table = np.zeros((max(int(indices.max()), *colormap) + 1, 3), dtype=np.uint8)
            for index, rgba in colormap.items():
                table[index] = rgba[:3]
            data = np.moveaxis(table[indices], -1, 0)
        else:
            indexes = [i + 1 for i, ci in enumerate(src.colorinterp) if ci != ColorInterp.alpha] or [1]
            data = src.read(indexes)
    if np.issubdtype(data.dtype, np.floating):
        valid &= np.isfinite(data).all(axis=0)
    return Raster(path, data, valid, georef)


def register_files(reference: Path, moving: Path, limits: Limits = DEFAULT_LIMITS) -> FileRegistration:
    """Register the raster MOVING against the raster REFERENCE (see the module docstring).

    Raises:
        RasterRefused: If either file is missing, not an allowed raster, or too large.
        GeoreferenceError: If a georeference is unusable.
    """
    ref = read_raster(reference, limits)
    mov = read_raster(moving, limits)
    data, valid, gsd = mov.data, mov.valid, None
    if ref.georef is not None and mov.georef is not None:
        data = reproject_onto(mov.data, mov.georef, ref.georef, ref.shape)
        placed = reproject_onto(mov.valid.astype(np.uint8), mov.georef, ref.georef, ref.shape, nearest=True)
        # bilinear placement mixes fill into the pixels beside it: one pixel less is clean data
        valid = cv2.erode(placed, np.ones((3, 3), np.uint8)) > 0
        gsd = gsd_of(ref.georef, ref.shape[1], ref.shape[0])
    registration = register(ref.data, data, ref_valid=ref.valid, mov_valid=valid, gsd=gsd)
    shift_m = None
    if registration.shift_px is not None and ref.georef is not None and mov.georef is not None:
        shift_m = shift_metres(registration.shift_px, ref.georef, ref.shape)
    return FileRegistration(ref, mov, registration, shift_m)


def write_aligned(result: FileRegistration, output: Path) -> None:
    """MOVING resampled once onto REFERENCE's grid as a GeoTIFF (georeferenced like REFERENCE, if it
    is), with MOVING's missing data in its internal mask; written beside OUTPUT, then renamed.

    Raises:
        ValueError: If the registration failed.
        InputError: If OUTPUT cannot be written.
    """
    ref, mov = result.reference, result.moving
    source = georef_map(ref.georef, mov.georef) if ref.georef is not None and mov.georef is not None else None
    aligned, valid = apply(mov.data, result.registration, ref.shape, mov_valid=mov.valid, source=source)
    rows, cols = ref.shape
    profile: dict[str, object] = {
        "driver": "GTiff",
        "width": cols,
        "height": rows,
        "count": aligned.shape[0],
        "dtype": aligned.dtype.name,
        "compress": "deflate",
        "tiled": rows >= 512 and cols >= 512,
    }
    if ref.georef is not None:
        profile.update(crs=ref.georef.crs.to_wkt(), transform=ref.georef.transform)
    with atomic_path(output) as tmp, gdal_env(), warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(aligned)
            dst.write_mask(np.where(valid, 255, 0).astype(np.uint8))
