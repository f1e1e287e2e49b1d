"""Map tiles of observations for ``sitewatch serve``: WebMercatorQuad XYZ PNGs for Leaflet.

A tile looks like the report's chips of the same observation: the same display bands
(:func:`~sitewatch.report.chips.display_bands`), the same 2-98 % stretch of the whole observation
(:func:`~sitewatch.report.chips.stretch_of`, computed once per file) and the same stretch to 8 bits
(:func:`~sitewatch.report.chips.to_rgb`); no-data is transparent instead of a grey checker, so the
base map shows through.

The app sets ``app.state.workspace_root`` (a :class:`~pathlib.Path`) and includes :data:`router`.
A catalog row is trusted no more than a file: its path must resolve inside the workspace store, or
the tile is a 404 and the file is never opened. Lookups are cached and re-read only when the
catalog file changes, so a tile request does not open SQLite.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import math
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

import numpy as np
import rasterio
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi import Path as PathParam
from morecantile.commons import Tile
from PIL import Image
from rasterio.errors import RasterioError
from rasterio.warp import transform_bounds
from rio_tiler.constants import WEB_MERCATOR_TMS
from rio_tiler.errors import TileOutsideBounds
from rio_tiler.io import Reader

from sitewatch.catalog.db import Catalog
from sitewatch.catalog.models import Observation, Site
from sitewatch.errors import NotFound, RasterRefused
from sitewatch.io.raster import gdal_env, open_raster
from sitewatch.report.chips import Stretch, display_bands, stretch_of, to_rgb
from sitewatch.workspace import Workspace

log = logging.getLogger(__name__)

router = APIRouter()

MAX_ZOOM = 24
#: A versioned URL (``?v=`` as :func:`tile_url` gives) names one file: realignment writes a new one.
#: Private: the browser keeps tiles, a proxy between it and a server with a token does not.
CACHE_VERSIONED = "private, max-age=31536000, immutable"
#: An unversioned URL may show another file after realignment, so browsers check again soon.
CACHE_UNVERSIONED = "private, max-age=60"
#: Datasets each server thread keeps open, so a tile does not open its file and neighbouring tiles
#: find their blocks in GDAL's cache (a sixth of a tile's time). A GDAL dataset must be used by one
#: thread at a time and rasterio closes it on the thread that opened it, so the cache is per thread.
READERS_PER_THREAD = 4
#: How much coarser than a tile's pixels an overview may be and still be read for it: 1.2 keeps
#: an overview at the zoom just finer than it (about 1.9x at mid latitudes) and is not visible.
OVERSAMPLING = 1.2
WEB_MERCATOR_RADIUS = 6378137.0
#: Site names whose lookups are kept (unknown names too); a catalog change clears them all.
MAX_SITES = 1024


@dataclass(frozen=True)
class TileSource:
    """Where an observation's tiles come from, as the catalog says."""

    observation_id: int
    path: Path  # absolute and resolved, inside the workspace store
    band_names: tuple[str, ...]  # its scene's, for picking the RGB bands
    version: str  # changes whenever the observation's file does

    @property
    def file_key(self) -> tuple[Path, int, int]:
        """The file with its modification time and size, to cache what is computed from it."""
        stat = self.path.stat()
        return self.path, stat.st_mtime_ns, stat.st_size


def file_version(obs: Observation) -> str:
    """A short token that changes when an observation's file does (realignment writes a new name)."""
    return hashlib.blake2s(str(obs.path).encode(), digest_size=6).hexdigest()


def tile_url(site: Site, obs: Observation) -> str:
    """The Leaflet URL template of OBS's tiles (``{z}/{x}/{y}`` left in), versioned so they cache."""
    return f"/tiles/{quote(site.name, safe='')}/{obs.id}/{{z}}/{{x}}/{{y}}.png?v={file_version(obs)}"


def observation_bounds_wgs84(site: Site, obs: Observation) -> tuple[float, float, float, float]:
    """(west, south, east, north) of OBS in degrees, from the catalog alone, to fit a map to it.

    Every observation covers its site's grid from the grid origin at its own pixel size.
    """
    left, top = site.origin_x, site.origin_y
    right, bottom = left + obs.width * obs.gsd, top - obs.height * obs.gsd
    west, south, east, north = transform_bounds(f"EPSG:{site.epsg}", "EPSG:4326", left, bottom, right, top, 21)
    return float(west), float(south), float(east), float(north)


#: SQLite's file change counter (bumped by every commit outside WAL mode; file times can be too
#: coarse to tell two quick commits apart), and the size and time of the catalog and its WAL.
CatalogVersion = tuple[bytes, tuple[int, int] | None, tuple[int, int] | None]


class ObservationIndex:
    """(site name, observation id) -> :class:`TileSource` of one workspace, cached until its catalog changes.

    The catalog is opened once per site and catalog version (all of a site's observations are read
    at once) and re-read when :data:`CatalogVersion` changes.
    Safe to share between the server's threads.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = (root / "store").resolve()
        self._lock = threading.Lock()  # guards the cache
        self._reading = threading.Lock()  # one catalog read at a time: the others wait and use its result
        self._version: CatalogVersion | None = None
        self._sites: dict[str, dict[int, TileSource]] = {}

    def lookup(self, site: str, observation_id: int) -> TileSource | None:
        """The tile source of an observation of SITE; None if there is none (or its path is unsafe)."""
        version = self._catalog_version()
        known = self._cached(site, version)
        if known is None:
            with self._reading:
                known = self._cached(site, version)
                if known is None:
                    known = self._read_site(site)
                    with self._lock:
                        if version == self._version:
                            self._sites[site] = known
        return known.get(observation_id)

    def _cached(self, site: str, version: CatalogVersion) -> dict[int, TileSource] | None:
        with self._lock:
            if version != self._version or len(self._sites) > MAX_SITES:
                self._sites.clear()
                self._version = version
            return self._sites.get(site)

    def forget(self) -> None:
        """Drop every lookup (a file named by the catalog has gone: the catalog may have moved on)."""
        with self._lock:
            self._sites.clear()

    def _catalog_version(self) -> CatalogVersion:
        catalog = self.root / Catalog.FILENAME
        try:
            with catalog.open("rb") as file:
                header = file.read(28)
        except FileNotFoundError:
            header = b""
        return header[24:28], _stat_key(catalog), _stat_key(catalog.with_name(catalog.name + "-wal"))

    def _read_site(self, name: str) -> dict[int, TileSource]:
        with Workspace.open(self.root) as ws:
            try:
                site = ws.catalog.site(name)
            except NotFound:
                return {}
            sources = {}
            for obs in ws.catalog.observations(site):
                path = self._inside_store(obs)
                if obs.id is not None and path is not None:
                    scene = ws.catalog.scene(obs.scene_id)
                    sources[obs.id] = TileSource(obs.id, path, scene.band_names, file_version(obs))
        return sources

    def _inside_store(self, obs: Observation) -> Path | None:
        """OBS's file, resolved (symbolic links followed); None, and a warning, if outside the store."""
        path = (self.store / obs.path).resolve()
        if path.is_relative_to(self.store):
            return path
        log.warning("observation %s: path %r leaves the workspace store; not served", obs.id, str(obs.path))
        return None


def _stat_key(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_mtime_ns, stat.st_size


@functools.lru_cache(maxsize=16)
def _index_of(root: Path) -> ObservationIndex:
    return ObservationIndex(root)


def observation_index(request: Request) -> ObservationIndex:
    """The app's workspace index (dependency): one per workspace root, shared by all requests."""
    return _index_of(Path(request.app.state.workspace_root))


@dataclass(frozen=True)
class Style:
    """How an observation file is drawn, and what a tile needs to know of it before reading it."""

    stretch: Stretch
    bounds: tuple[float, float, float, float]  # EPSG:3857, to answer tiles outside without reading
    pixel_size: float  # metres, at full resolution
    overviews: tuple[int, ...]  # decimation factors, finest first

    def overview_for(self, tile_bounds: tuple[float, float, float, float], tilesize: int) -> int | None:
        """The GDAL ``OVERVIEW_LEVEL`` to read a tile from: the coarsest overview at most
        :data:`OVERSAMPLING` times coarser than the tile's pixels; None for full resolution.

        Observations are on UTM site grids, where a metre of the grid is a metre on the ground (to
        0.1 %), and Web Mercator's scale at latitude phi is 1 / cos(phi): no reprojection needed.
        """
        left, bottom, right, top = tile_bounds
        latitude = math.atan(math.sinh((bottom + top) / 2 / WEB_MERCATOR_RADIUS))
        ratio = (right - left) / tilesize * math.cos(latitude) / self.pixel_size * OVERSAMPLING
        levels = [level for level, factor in enumerate(self.overviews) if factor <= ratio]
        return levels[-1] if levels else None


def style_of(file_key: tuple[Path, int, int], band_names: tuple[str, ...]) -> Style:
    """The display bands, stretch and layout of one version of a file (see :attr:`TileSource.file_key`).

    Computed once: a map's first view asks for a screenful of tiles at once, and they wait for the
    first one's statistics rather than each reading the file's overview for them.
    """
    with _style_lock:
        return _style_of(file_key, band_names)


_style_lock = threading.Lock()


@functools.lru_cache(maxsize=256)
def _style_of(file_key: tuple[Path, int, int], band_names: tuple[str, ...]) -> Style:
    path = file_key[0]
    with open_raster(path) as src:
        stretch = stretch_of(src, display_bands(src, band_names))
        bounds = transform_bounds(src.crs, WEB_MERCATOR_TMS.rasterio_crs, *src.bounds, densify_pts=21)
        return Style(stretch, bounds, abs(src.transform.a), tuple(src.overviews(1)))


class _ThreadReaders(threading.local):
    """This thread's open readers by (file key, overview level), least recently used first."""

    def __init__(self) -> None:
        self.readers: OrderedDict[tuple[Path, int, int, int | None], Reader] = OrderedDict()


_thread_readers = _ThreadReaders()


def _reader(file_key: tuple[Path, int, int], level: int | None) -> Reader:
    """This thread's reader of one version of a file at an overview LEVEL (None: full resolution),
    opened after :func:`open_raster`'s checks, through the driver they accepted. Call it, use the
    reader and close any it evicts inside :func:`gdal_env`, on the same thread."""
    readers = _thread_readers.readers
    key = (*file_key, level)
    reader = readers.pop(key, None)
    if reader is None:
        path = file_key[0]
        with open_raster(path) as src:
            driver = src.driver
        options = {} if level is None else {"OVERVIEW_LEVEL": level}
        reader = Reader(str(path), dataset=rasterio.open(path, driver=driver, **options))
        while len(readers) >= READERS_PER_THREAD:
            _close(readers.popitem(last=False)[1])
    readers[key] = reader
    return reader


def _close(reader: Reader) -> None:
    if reader.dataset is not None:
        reader.dataset.close()


def render_tile(source: TileSource, z: int, x: int, y: int, tilesize: int = 256) -> bytes | None:
    """The PNG of one tile of SOURCE, or None where it shows nothing (outside, or no data there).

    Tiles coarser than the file are read from its overviews (averaged at ingest, as the report's
    shrunken views are) rather than by sampling full resolution: half the time at those zooms.
    No-data is transparent; a tile without any is encoded without alpha (a third faster, and smaller).

    Raises:
        RasterRefused: If the file is missing, not an allowed raster or unreadable.
    """
    try:
        file_key = source.file_key
    except FileNotFoundError as exc:
        raise RasterRefused(source.path, "no such file") from exc
    style = style_of(file_key, source.band_names)
    tile_bounds = WEB_MERCATOR_TMS.xy_bounds(Tile(x, y, z))
    left, bottom, right, top = tile_bounds
    west, south, east, north = style.bounds
    if left >= east or right <= west or bottom >= north or top <= south:
        return None
    level = style.overview_for(tile_bounds, tilesize)
    with gdal_env():
        try:
            image = _reader(file_key, level).tile(x, y, z, tilesize=tilesize, indexes=style.stretch.bands)
        except TileOutsideBounds:  # touches the edge only, in rio-tiler's reckoning
            return None
        except RasterioError as exc:
            if (reader := _thread_readers.readers.pop((*file_key, level), None)) is not None:
                _close(reader)
            raise RasterRefused(source.path, f"corrupt or truncated raster data ({exc})") from exc
    data = np.ma.asarray(image.array, dtype=np.float32)
    visible = ~np.ma.getmaskarray(data).any(axis=0)
    if not visible.any():
        return None
    rgb = to_rgb(data, style.stretch)
    pixels = rgb if visible.all() else np.dstack([rgb, np.where(visible, 255, 0).astype(np.uint8)])
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_type=zlib.Z_RLE)
    return buffer.getvalue()


Index = Annotated[ObservationIndex, Depends(observation_index)]


@router.get(
    "/tiles/{site:path}/{observation_id}/{z}/{x}/{y}.png",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}}, "description": "The tile."},
        204: {"description": "The tile shows nothing: outside the observation, or no data there."},
        404: {"description": "No such site or observation, or its file is unavailable."},
    },
)
def tile(
    index: Index,
    site: str,
    observation_id: int,
    z: Annotated[int, PathParam(ge=0, le=MAX_ZOOM)],
    x: Annotated[int, PathParam(ge=0)],
    y: Annotated[int, PathParam(ge=0)],
    tilesize: Annotated[int, Query(ge=256, le=512, multiple_of=256, description="256 or 512 px")] = 256,
    v: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """One 256 (or 512) px WebMercatorQuad tile of an observation of SITE (its name)."""
    if x >= 2**z or y >= 2**z:
        raise HTTPException(422, f"tile {z}/{x}/{y}: x and y must be below {2**z} at zoom {z}")
    source = index.lookup(site, observation_id)
    if source is None:
        raise HTTPException(404, f"site {site!r} has no observation {observation_id}")
    try:
        png = render_tile(source, z, x, y, tilesize)
    except RasterRefused as exc:
        if not source.path.exists():
            index.forget()  # replaced, by realignment: the catalog names the new file
        log.warning("observation %s: %s", observation_id, exc)
        raise HTTPException(404, f"observation {observation_id}: its file is not available") from exc
    headers = {"Cache-Control": CACHE_VERSIONED if v == source.version else CACHE_UNVERSIONED}
    if png is None:
        return Response(status_code=204, headers=headers)
    return Response(png, media_type="image/png", headers=headers)
