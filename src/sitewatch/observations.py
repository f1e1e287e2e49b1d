"""Reading a site's observations back from the store onto the site grid, for the stages that compare them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT

from sitewatch.catalog.models import Observation
from sitewatch.grid import SiteGrid
from sitewatch.io.raster import open_raster
from sitewatch.workspace import Workspace


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
