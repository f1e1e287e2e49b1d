"""apply(): MOVING resampled onto REFERENCE's pixel grid through a registration, in one resampling.

Pixel (x, y) of the result takes MOVING's value at ``registration.map(x, y)``: where the content of
REFERENCE's pixel (x, y) lies in MOVING. Bilinear, as reflectance should be; a result pixel is valid
only where all the MOVING pixels it was interpolated from were.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from sitewatch.align.register import Registration
from sitewatch.align.tiepoints import PixelMap

#: dtypes OpenCV resamples as they are; others go through float64 and back.
_NATIVE = (np.uint8, np.uint16, np.int16, np.float32, np.float64)
#: Maps are built for this many rows at a time, which bounds their memory on large images.
STRIP_ROWS = 1024


def apply(
    moving: np.ndarray,
    registration: Registration,
    shape: tuple[int, int],
    *,
    mov_valid: np.ndarray | None = None,
    source: PixelMap | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(aligned, valid)``: MOVING on REFERENCE's grid of SHAPE (rows, cols), and where it has data.

    Args:
        moving: ``(bands, rows, cols)`` or ``(rows, cols)``; the result has the same layout and dtype.
        registration: a successful registration of MOVING (or of the grid SOURCE maps from).
        shape: REFERENCE's (rows, cols).
        mov_valid: bool, MOVING's pixels with data (default: all).
        source: when MOVING is not on the grid the registration was measured on (for instance the
            original file, before it was placed on REFERENCE's grid by its georeference), the map
            from that grid's pixel coordinates to MOVING's; see :func:`sitewatch.align.georef_map`.
            Coordinates are composed, so the pixels are still interpolated once.

    Raises:
        ValueError: If the registration failed, or MOV_VALID does not match MOVING.
    """
    if registration.affine is None:
        raise ValueError(f"cannot apply a failed registration ({registration.reason})")
    bands = moving if moving.ndim == 3 else moving[np.newaxis]
    if mov_valid is not None and mov_valid.shape != bands.shape[1:]:
        raise ValueError(f"mov_valid has shape {mov_valid.shape}, MOVING {bands.shape[1:]}")
    valid_in = np.ones(bands.shape[1:], np.float32) if mov_valid is None else mov_valid.astype(np.float32)
    rows, cols = shape
    aligned = np.zeros((bands.shape[0], rows, cols), dtype=moving.dtype)
    valid = np.zeros((rows, cols), bool)
    if registration.field is None and source is None:
        matrix = np.reshape(np.asarray(registration.affine, np.float64), (2, 3))
        for index, band in enumerate(bands):
            aligned[index] = _cast(_warp_affine(_native(band), matrix, rows, cols), moving.dtype)
        valid[:] = _warp_affine(valid_in, matrix, rows, cols) > 0.999
    else:
        for top in range(0, rows, STRIP_ROWS):
            strip = slice(top, min(rows, top + STRIP_ROWS))
            grid_x, grid_y = np.meshgrid(np.arange(cols, dtype=np.float64), np.arange(strip.start, strip.stop))
            map_x, map_y = registration.map(grid_x, grid_y)
            if source is not None:
                map_x, map_y = source(map_x, map_y)
            map_x, map_y = map_x.astype(np.float32), map_y.astype(np.float32)
            for index, band in enumerate(bands):
                aligned[index, strip] = _cast(_remap(_native(band), map_x, map_y), moving.dtype)
            valid[strip] = _remap(valid_in, map_x, map_y) > 0.999
    return (aligned if moving.ndim == 3 else aligned[0]), valid


def _native(band: np.ndarray) -> np.ndarray:
    return band if band.dtype.type in _NATIVE else band.astype(np.float64)


def _warp_affine(band: np.ndarray, matrix: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """dst(x, y) = band(matrix · (x, y, 1)): OpenCV's inverse-map warp is exactly the register map."""
    out: np.ndarray = cv2.warpAffine(
        band,
        matrix,
        (cols, rows),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return out


def _remap(band: np.ndarray, map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
    out: np.ndarray = cv2.remap(band, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out


def _cast(values: np.ndarray, dtype: np.dtype[Any]) -> np.ndarray:
    """VALUES in DTYPE: integers rounded and clipped to its range."""
    if values.dtype == dtype:
        return values
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        values = np.clip(np.rint(values), info.min, info.max)
    cast: np.ndarray = values.astype(dtype)
    return cast
