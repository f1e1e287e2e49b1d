"""Render a scene onto a site grid through a displacement: the grid warp and the alignment composed
into one resampling, tile by tile, so memory is bounded by the tile size.

The unaligned case goes through GDAL's warper (:mod:`sitewatch.ingest.observe`), which is faster;
this path is for observations whose alignment is known. A displacement grid D (in pixels of the
observation's level) says where the content of grid pixel p lies in the unaligned observation:
at p + D(p). The aligned observation at p is therefore the scene at the ground position of p + D(p).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import rasterio
from affine import Affine
from pyproj import Transformer
from rasterio.enums import Resampling
from rasterio.io import DatasetReader
from rasterio.windows import Window
from rio_cogeo.cogeo import cog_translate
from rio_cogeo.profiles import cog_profiles
from scipy.ndimage import map_coordinates

from sitewatch.grid import SiteGrid
from sitewatch.io.raster import GDAL_SAFE_ENV, Georef
from sitewatch.settings import Limits

TILE_PX = 512

Displacement = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class DisplacementGrid:
    """Displacement (dx, dy) in pixels at the nodes of a regular grid over an observation.

    ``dx[i, j]`` and ``dy[i, j]`` hold at pixel ``(x, y) = (j * step_x, i * step_y)``; between nodes
    they are interpolated bilinearly, which reproduces any affine mapping exactly.
    """

    dx: np.ndarray  # float64 (ny, nx)
    dy: np.ndarray
    step_x: float
    step_y: float

    @classmethod
    def from_function(cls, displacement: Displacement, width: int, height: int, nodes: int = 17) -> DisplacementGrid:
        """Sample DISPLACEMENT(xs, ys) -> (dx, dy) (arrays of pixel coordinates) on a NODES x NODES grid."""
        step_x, step_y = max(1.0, (width - 1) / (nodes - 1)), max(1.0, (height - 1) / (nodes - 1))
        ys, xs = np.mgrid[0:nodes, 0:nodes].astype(np.float64)
        dx, dy = displacement(xs * step_x, ys * step_y)
        return cls(np.asarray(dx, np.float64), np.asarray(dy, np.float64), step_x, step_y)

    @classmethod
    def identity(cls, width: int, height: int) -> DisplacementGrid:
        """No displacement."""
        return cls.from_function(lambda x, y: (np.zeros_like(x), np.zeros_like(y)), width, height, nodes=2)

    def at(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(dx, dy) at pixel coordinates XS, YS (any shape), bilinear between nodes, clamped at the edges."""
        coords = np.stack(
            [np.clip(ys / self.step_y, 0, self.dy.shape[0] - 1), np.clip(xs / self.step_x, 0, self.dx.shape[1] - 1)]
        )
        return (
            map_coordinates(self.dx, coords, order=1, mode="nearest"),
            map_coordinates(self.dy, coords, order=1, mode="nearest"),
        )

    def then(self, inner: DisplacementGrid) -> DisplacementGrid:
        """The displacement of applying INNER first, then this one: p -> p + Di(p) -> ... + D(p + Di(p))."""
        ys, xs = np.mgrid[0 : inner.dx.shape[0], 0 : inner.dx.shape[1]].astype(np.float64)
        px, py = xs * inner.step_x, ys * inner.step_y
        ix, iy = inner.dx, inner.dy
        ox, oy = self.at(px + ix, py + iy)
        return DisplacementGrid(ix + ox, iy + oy, inner.step_x, inner.step_y)

    def to_json(self) -> dict[str, object]:
        """A JSON-able form, for the catalog."""
        return {
            "dx": self.dx.round(4).tolist(),
            "dy": self.dy.round(4).tolist(),
            "step_x": self.step_x,
            "step_y": self.step_y,
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> DisplacementGrid:
        """Read back :meth:`to_json`."""
        return cls(
            np.asarray(value["dx"], np.float64),
            np.asarray(value["dy"], np.float64),
            float(value["step_x"]),
            float(value["step_y"]),
        )


def render_displaced(
    src: DatasetReader,
    georef: Georef,
    grid: SiteGrid,
    level: int,
    displacement: DisplacementGrid,
    out: Path,
    *,
    limits: Limits,
) -> None:
    """Write SRC onto GRID at LEVEL, displaced by DISPLACEMENT, as a COG with a mask, in one resampling."""
    rows, cols = grid.shape_at(level)
    transform = grid.transform_at(level)
    to_scene = Transformer.from_crs(grid.crs, georef.crs, always_xy=True)
    inverse = ~georef.transform
    native = min(abs(georef.transform.a), abs(georef.transform.e))
    factor = max(1, math.floor(grid.gsd_at(level) / _native_size_in_grid_units(georef, grid, native)))
    tmp = out.with_name(f".{out.name}.stage.tif")
    profile = {
        "driver": "GTiff",
        "width": cols,
        "height": rows,
        "count": src.count,
        "dtype": src.dtypes[0],
        "crs": grid.crs,
        "transform": transform,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
    }
    try:
        with rasterio.Env(**GDAL_SAFE_ENV), rasterio.open(tmp, "w", **profile) as dst:
            for row0 in range(0, rows, TILE_PX):
                for col0 in range(0, cols, TILE_PX):
                    window = Window(col0, row0, min(TILE_PX, cols - col0), min(TILE_PX, rows - row0))
                    data, mask = _tile(src, window, transform, displacement, to_scene, inverse, factor)
                    dst.write(data.astype(src.dtypes[0]), window=window)
                    dst.write_mask(mask, window=window)
        profile_cog = cog_profiles.get("deflate")
        profile_cog.update(blockxsize=256, blockysize=256)
        cog_translate(
            tmp,
            out,
            profile_cog,
            add_mask=True,
            in_memory=False,
            quiet=True,
            config=dict(GDAL_SAFE_ENV),
            overview_resampling="average",
        )
    finally:
        tmp.unlink(missing_ok=True)


def _native_size_in_grid_units(georef: Georef, grid: SiteGrid, native: float) -> float:
    """The scene's pixel size in the grid's units (metres), for choosing a pre-averaging factor."""
    if georef.crs.is_geographic:
        return native * 111_320.0 * 0.8  # a conservative metres-per-degree: never over-averages
    return native


def _tile(
    src: DatasetReader,
    window: Window,
    transform: Affine,
    displacement: DisplacementGrid,
    to_scene: Transformer,
    inverse: Affine,
    factor: int,
) -> tuple[np.ndarray, np.ndarray]:
    """One output tile: where each pixel's content lies in the scene, read and resampled bilinearly."""
    ys, xs = np.mgrid[window.row_off : window.row_off + window.height, window.col_off : window.col_off + window.width]
    xs, ys = xs.astype(np.float64), ys.astype(np.float64)
    dx, dy = displacement.at(xs, ys)
    gx, gy = _apply(transform, xs + dx + 0.5, ys + dy + 0.5)
    sx, sy = to_scene.transform(gx, gy)
    cx, cy = _apply(inverse, np.asarray(sx), np.asarray(sy))
    cx, cy = cx - 0.5, cy - 0.5  # scene pixel coordinates, centres at integers
    bands = src.count
    empty = (
        np.zeros((bands, int(window.height), int(window.width)), np.float32),
        np.zeros((int(window.height), int(window.width)), np.uint8),
    )
    finite = np.isfinite(cx) & np.isfinite(cy)
    if not finite.any():
        return empty
    c0, c1 = math.floor(np.nanmin(cx)) - 2, math.ceil(np.nanmax(cx)) + 3
    r0, r1 = math.floor(np.nanmin(cy)) - 2, math.ceil(np.nanmax(cy)) + 3
    c0, r0, c1, r1 = max(c0, 0), max(r0, 0), min(c1, src.width), min(r1, src.height)
    if c1 <= c0 or r1 <= r0:
        return empty
    read = Window(c0, r0, c1 - c0, r1 - r0)
    shape = (max(1, (r1 - r0) // factor), max(1, (c1 - c0) // factor))
    pixels = src.read(window=read, out_shape=(bands, *shape), resampling=Resampling.average).astype(np.float32)
    valid = src.dataset_mask(window=read, out_shape=shape, resampling=Resampling.nearest).astype(np.float32)
    scale_x, scale_y = shape[1] / (c1 - c0), shape[0] / (r1 - r0)
    map_x = ((cx - c0 + 0.5) * scale_x - 0.5).astype(np.float32)
    map_y = ((cy - r0 + 0.5) * scale_y - 0.5).astype(np.float32)
    data = np.stack(
        [
            cv2.remap(band, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            for band in pixels
        ]
    )
    covered = cv2.remap(valid, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    mask = np.where((covered > 254.0 * 0.999) & finite, 255, 0).astype(np.uint8)
    if np.dtype(src.dtypes[0]).kind in "iu":
        info = np.iinfo(src.dtypes[0])
        data = np.clip(np.rint(data), info.min, info.max)
    return data, mask


def _apply(t: Affine, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An affine transform applied to coordinate arrays."""
    return t.a * xs + t.b * ys + t.c, t.d * xs + t.e * ys + t.f
