"""Reading a site's observations back from the store onto the site grid, for the stages that compare them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from affine import Affine
from pyproj import CRS
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT

from sitewatch.catalog.models import Observation, Scene
from sitewatch.grid import SiteGrid
from sitewatch.io.raster import open_raster
from sitewatch.settings import Limits
from sitewatch.workspace import Workspace

if TYPE_CHECKING:
    from sitewatch.masks import SensorMask


@dataclass(frozen=True)
class ObservationDone:
    """Progress event of a stage that goes through a site's observations: one more done."""

    observation: Observation
    done: int
    total: int


@dataclass(frozen=True)
class Layer:
    """One observation read onto the comparison grid."""

    pixels: np.ndarray  # float32 (bands, rows, cols)
    valid: np.ndarray  # bool (rows, cols)


def read_layer(ws: Workspace, obs: Observation, grid: SiteGrid, level: int) -> Layer:
    """Read an observation onto the site grid at LEVEL (same origin; coarser levels are averaged)."""
    rows, cols = grid.shape_at(level)
    with open_raster(ws.store / obs.path, ws.settings.limits) as src:
        if obs.level == level:
            data = src.read(out_shape=(src.count, rows, cols), boundless=False)
            valid = src.dataset_mask(out_shape=(rows, cols)) > 0
        else:
            options = {"crs": src.crs, "transform": grid.transform_at(level), "width": cols, "height": rows}
            with WarpedVRT(src, resampling=Resampling.average, **options) as vrt:
                data = vrt.read()
                valid = vrt.dataset_mask() > 0
    return Layer(pixels=data.astype(np.float32), valid=valid)


def read_clear_layer(ws: Workspace, obs: Observation, scene: Scene, grid: SiteGrid, level: int) -> Layer:
    """OBS at LEVEL with every band, its valid mask narrowed to the clear pixels: cloud, cloud shadow
    and saturation (found in the pixels, or given by the sensor's masks) are taken out. Every stage that
    looks at an observation's ground reads it this way, so they agree on what could be seen.

    SCENE is OBS's scene (its dtype, band names and sensor masks).
    """
    from sitewatch.ingest.pipeline import scene_masks
    from sitewatch.masks import quality_masks

    raw = read_layer(ws, obs, grid, level)
    sensor = read_sensor_masks(
        scene_masks(ws, scene), grid.crs, grid.transform_at(level), grid.shape_at(level), ws.settings.limits
    )
    quality = quality_masks(
        raw.pixels, raw.valid, dtype=scene.dtype, band_names=scene.band_names, gsd=grid.gsd_at(level), sensor=sensor
    )
    return Layer(raw.pixels, quality.usable)


def read_sensor_masks(
    masks: Sequence[tuple[str, Path]],
    crs: CRS,
    transform: Affine,
    shape: tuple[int, int],
    limits: Limits,
) -> SensorMask | None:
    """Sensor-provided masks (kind, file) read onto a grid (nearest: classes must not be averaged),
    decoded and joined; None without any."""
    from sitewatch.masks import SensorMask, sensor_mask

    joined: SensorMask | None = None
    for kind, path in masks:
        with open_raster(path, limits) as src:
            options = {"crs": crs, "transform": transform, "width": shape[1], "height": shape[0]}
            with WarpedVRT(src, resampling=Resampling.nearest, **options) as vrt:
                data = vrt.read()
        decoded = sensor_mask(data if data.shape[0] > 1 else data[0], kind)  # type: ignore[arg-type]
        if joined is None:
            joined = decoded
        else:
            joined = SensorMask(
                joined.cloud | decoded.cloud,
                joined.shadow | decoded.shadow,
                joined.haze | decoded.haze,
                joined.nodata | decoded.nodata,
                joined.saturated | decoded.saturated,
            )
    return joined
