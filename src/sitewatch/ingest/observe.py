"""Put one scene on one site's grid: a single resampling, streamed, written as a COG with a mask."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.enums import Resampling
from rasterio.io import DatasetReader
from rasterio.vrt import WarpedVRT
from rio_cogeo.cogeo import cog_translate
from rio_cogeo.profiles import cog_profiles

from sitewatch.grid import SiteGrid
from sitewatch.io.raster import GDAL_SAFE_ENV, Georef, open_raster
from sitewatch.masks import CLOUDY_FRACTION, MIN_USABLE_FRACTION, quality_masks
from sitewatch.observations import read_sensor_masks
from sitewatch.settings import Limits

#: GDAL block cache while writing a COG. rasterio takes an integer in bytes here and does not restore
#: the previous value afterwards, so this is a process-wide bound on GDAL's cache (default: 5 % of RAM).
WRITE_CACHE_BYTES = 128 * 2**20
#: Overview pixels read to measure an observation's valid fraction (bounded, whatever the size).
_MASK_SAMPLE = 512


@dataclass(frozen=True)
class ObservationFile:
    """An observation COG written to disk (not yet in the catalog)."""

    path: Path
    level: int
    gsd: float
    width: int
    height: int
    valid_fraction: float
    cloud_fraction: float
    masked_fraction: float  # share of the valid area under cloud, cloud shadow or saturation

    @property
    def flags(self) -> tuple[str, ...]:
        """Quality flags: ``partial`` (the site is not fully covered), ``cloudy``, ``mostly-masked``."""
        flags = []
        if self.valid_fraction < 0.99:
            flags.append("partial")
        if self.cloud_fraction > CLOUDY_FRACTION:
            flags.append("cloudy")
        elif 1.0 - self.masked_fraction < MIN_USABLE_FRACTION:
            flags.append("mostly-masked")
        return tuple(flags)


def resampling_for(native_gsd: float, target_gsd: float) -> Resampling:
    """Average when shrinking a finer scene (no aliasing), bilinear otherwise."""
    return Resampling.average if native_gsd < 0.75 * target_gsd else Resampling.bilinear


def observe(
    src: DatasetReader,
    georef: Georef,
    native_gsd: float,
    grid: SiteGrid,
    out: Path,
    *,
    limits: Limits,
    band_names: tuple[str, ...] = (),
    sensor_masks: Sequence[tuple[str, Path]] = (),
) -> ObservationFile:
    """Warp SRC onto GRID at the level nearest NATIVE_GSD and write OUT as a COG with a mask.

    Memory is bounded by GDAL's warp and COG block sizes, never by the scene size.
    """
    level = grid.level_for(native_gsd)
    rows, cols = grid.shape_at(level)
    transform = grid.transform_at(level)
    vrt_options = {
        "crs": grid.crs,
        "transform": transform,
        "width": cols,
        "height": rows,
        "resampling": resampling_for(native_gsd, grid.gsd_at(level)),
        "add_alpha": True,
        "src_crs": georef.crs,
        "src_transform": georef.transform,
        "warp_mem_limit": 256,
    }
    if src.nodata is not None:
        vrt_options["src_nodata"] = src.nodata
    profile = cog_profiles.get("deflate")
    profile.update(blockxsize=256, blockysize=256, predictor=2 if np.dtype(src.dtypes[0]).kind in "iu" else 3)
    with WarpedVRT(src, **vrt_options) as vrt:
        cog_translate(
            vrt,
            out,
            profile,
            indexes=list(range(1, src.count + 1)),
            add_mask=True,
            in_memory=False,
            quiet=True,
            config={**GDAL_SAFE_ENV, "GDAL_NUM_THREADS": "ALL_CPUS", "GDAL_CACHEMAX": WRITE_CACHE_BYTES},
            overview_resampling="average",
        )
    valid, cloud, masked = screen(out, limits, band_names=band_names, gsd=grid.gsd_at(level), sensor_masks=sensor_masks)
    return ObservationFile(
        path=out,
        level=level,
        gsd=grid.gsd_at(level),
        width=cols,
        height=rows,
        valid_fraction=valid,
        cloud_fraction=cloud,
        masked_fraction=masked,
    )


def screen(
    path: Path,
    limits: Limits,
    *,
    band_names: tuple[str, ...] = (),
    gsd: float | None = None,
    sensor_masks: Sequence[tuple[str, Path]] = (),
) -> tuple[float, float, float]:
    """(valid, cloud, masked) fractions of an observation, from a bounded read of an overview.

    Cloud and masked (cloud, cloud shadow, saturation) are shares of the valid area; SENSOR_MASKS
    (kind, file) delivered with the scene are added to the spectral tests.
    """
    with open_raster(path, limits) as obs:
        scale = max(1, max(obs.width, obs.height) // _MASK_SAMPLE)
        shape = (max(1, obs.height // scale), max(1, obs.width // scale))
        valid = obs.dataset_mask(out_shape=shape, resampling=Resampling.nearest) > 0
        pixels = obs.read(out_shape=(obs.count, *shape), resampling=Resampling.nearest)
        dtype = obs.dtypes[0]
        overview = obs.transform @ Affine.scale(obs.width / shape[1], obs.height / shape[0])
        sensor = read_sensor_masks(sensor_masks, obs.crs, overview, shape, limits)
    masks = quality_masks(
        pixels, valid, dtype=dtype, band_names=band_names, gsd=None if gsd is None else gsd * scale, sensor=sensor
    )
    return float(np.count_nonzero(valid) / valid.size), masks.cloud_fraction, 1.0 - masks.usable_fraction
