"""The site grid: every observation of a site sits on it, so pixels of different dates line up.

Local UTM zone, fixed origin (the top-left corner of the site's bounding box, snapped outward to
whole metres), base pixel size g. An observation is stored at g·2^k, the level nearest its native
GSD, on the same origin, so all levels nest exactly and a coarse scene is never blown up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import shapely
from affine import Affine
from pyproj import CRS, Transformer
from shapely.geometry.base import BaseGeometry

from sitewatch.catalog.models import Site


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the WGS84 UTM zone holding (LON, LAT)."""
    zone = min(int((lon + 180.0) // 6.0) + 1, 60)
    return (32600 if lat >= 0 else 32700) + zone


def to_crs(geometry: BaseGeometry, src: CRS | str | int, dst: CRS | str | int) -> BaseGeometry:
    """Reproject a shapely geometry, densifying edges first so long straight edges stay faithful."""
    transformer = Transformer.from_crs(src, dst, always_xy=True)
    if CRS.from_user_input(src).is_geographic:
        geometry = shapely.segmentize(geometry, 0.001)
    return shapely.transform(geometry, transformer.transform, interleaved=False)


@dataclass(frozen=True)
class SiteGrid:
    """Where a site's observations are stored, at every level."""

    epsg: int
    origin_x: float
    origin_y: float
    extent_x: float
    extent_y: float
    base_gsd: float

    @classmethod
    def of(cls, site: Site, base_gsd: float | None = None) -> SiteGrid:
        """The grid of SITE (with BASE_GSD in place of the stored one, when refining)."""
        gsd = base_gsd if base_gsd is not None else site.base_gsd
        if gsd is None or gsd <= 0:
            raise ValueError(f"site {site.name!r} has no base GSD yet")
        return cls(site.epsg, site.origin_x, site.origin_y, site.extent_x, site.extent_y, gsd)

    @property
    def crs(self) -> CRS:
        """The grid's CRS."""
        return CRS.from_epsg(self.epsg)

    def level_for(self, native_gsd: float) -> int:
        """The level g·2^k nearest a scene's native GSD (never finer than the base)."""
        return max(0, round(math.log2(native_gsd / self.base_gsd)))

    def gsd_at(self, level: int) -> float:
        """Pixel size at LEVEL."""
        return float(self.base_gsd * 2.0**level)

    def shape_at(self, level: int) -> tuple[int, int]:
        """(rows, cols) at LEVEL: the extent covered, rounded up to whole pixels."""
        gsd = self.gsd_at(level)
        return max(1, math.ceil(self.extent_y / gsd - 1e-9)), max(1, math.ceil(self.extent_x / gsd - 1e-9))

    def transform_at(self, level: int) -> Affine:
        """Pixel-corner transform at LEVEL (north up)."""
        gsd = self.gsd_at(level)
        return Affine(gsd, 0.0, self.origin_x, 0.0, -gsd, self.origin_y)


def grid_frame(geometry_wgs84: BaseGeometry) -> tuple[int, float, float, float, float]:
    """(epsg, origin_x, origin_y, extent_x, extent_y) of the site grid for a WGS84 outline."""
    centre = geometry_wgs84.centroid
    epsg = utm_epsg(centre.x, centre.y)
    left, bottom, right, top = to_crs(geometry_wgs84, "EPSG:4326", epsg).bounds
    origin_x, origin_y = math.floor(left), math.ceil(top)
    return (
        epsg,
        float(origin_x),
        float(origin_y),
        float(math.ceil(right) - origin_x),
        float(origin_y - math.floor(bottom)),
    )
