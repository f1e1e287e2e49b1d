"""Registrations on georeferenced grids: pixel maps between two grids, and shifts in metres."""

from __future__ import annotations

import math

import numpy as np
from pyproj import Geod, Transformer

from sitewatch.align.fit import apply_matrix
from sitewatch.align.tiepoints import PixelMap
from sitewatch.io.raster import Georef


def georef_map(grid: Georef, own: Georef) -> PixelMap:
    """Pixel coordinates on GRID to pixel coordinates of an image lying on OWN (same ground point).

    Composed after a registration measured on GRID, it lets :func:`sitewatch.align.apply` take
    pixels straight from the image on OWN, so it is resampled once (not warped, then warped again).
    """
    transformer = None if grid.crs == own.crs else Transformer.from_crs(grid.crs, own.crs, always_xy=True)
    to_world = np.array(grid.transform.column_vectors).T  # 2x3: pixel corner (col, row) -> (east, north)
    to_pixel = np.array((~own.transform).column_vectors).T

    def mapping(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        east, north = apply_matrix(to_world, np.asarray(x, np.float64) + 0.5, np.asarray(y, np.float64) + 0.5)
        if transformer is not None:
            east, north = transformer.transform(east, north)
        col, row = apply_matrix(to_pixel, np.asarray(east), np.asarray(north))
        return col - 0.5, row - 0.5

    return mapping


def shift_metres(shift_px: tuple[float, float], georef: Georef, shape: tuple[int, int]) -> tuple[float, float]:
    """(east, north) metres of a SHIFT_PX (dx, dy) in pixels of an image on GEOREF of SHAPE (rows, cols).

    Projected CRS: through the grid's own transform (so on a north-up grid, north = -dy x pixel
    height), in the CRS's linear unit converted to metres. Geographic CRS: the geodesic from the
    image centre to the shifted centre, split into its east and north parts.
    """
    dx, dy = shift_px
    tr = georef.transform
    if not georef.crs.is_geographic:
        factor = georef.crs.axis_info[0].unit_conversion_factor if georef.crs.axis_info else 1.0
        return (tr.a * dx + tr.b * dy) * factor, (tr.d * dx + tr.e * dy) * factor
    rows, cols = shape
    lon0, lat0 = tr @ (cols / 2, rows / 2)
    lon1, lat1 = tr @ (cols / 2 + dx, rows / 2 + dy)
    azimuth, _, distance = Geod(ellps="WGS84").inv(lon0, lat0, lon1, lat1)
    angle = math.radians(azimuth)
    return distance * math.sin(angle), distance * math.cos(angle)
