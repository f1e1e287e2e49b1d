"""From what the user named (files, folders, options) to a list of :class:`SceneSource`."""

from __future__ import annotations

import fcntl
import logging
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import uuid4

from pyproj import CRS
from pyproj.exceptions import CRSError
from rasterio.transform import from_bounds
from shapely.ops import unary_union

from sitewatch.errors import GeoreferenceError, InputError
from sitewatch.ingest.metadata import parse_datetime
from sitewatch.ingest.pipeline import store_lock
from sitewatch.ingest.sources import SceneSource
from sitewatch.io.raster import open_raster
from sitewatch.settings import Limits
from sitewatch.workspace import Workspace

if TYPE_CHECKING:
    from sitewatch.ingest.stac import ItemError

log = logging.getLogger(__name__)

RASTER_SUFFIXES = frozenset({".tif", ".tiff", ".jp2", ".png", ".jpg", ".jpeg", ".bmp"})
#: The lock file in each download folder, held by the process using it (never a download's name:
#: those are never hidden).
IN_USE = ".in-use"


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


@dataclass(frozen=True)
class IngestRequest:
    """What the user asked to ingest, as typed (parsed and checked by :func:`resolve_sources`)."""

    inputs: tuple[str, ...] = ()  # files, folders, STAC JSON files or http(s) URLs of STAC documents
    site_names: tuple[str, ...] = ()
    acquired: str | None = None
    bounds: str | None = None
    crs: str | None = None
    stac_api: str | None = None
    collections: tuple[str, ...] = ()
    date_from: str | None = None
    date_to: str | None = None
    allow_hosts: tuple[str, ...] = ()


@contextmanager
def downloads(ws: Workspace) -> Iterator[Path]:
    """A private folder for remote assets, inside the workspace, removed afterwards (with
    ``.downloads`` when no other is left in it: an ingest leaves the workspace as it found it).

    While it is in use the folder's :data:`IN_USE` file is locked (``flock``), a lock the OS drops
    when the process dies, so :func:`remove_stale_downloads` can tell a folder a killed run left from
    one in use. Folders are made and locked, and ``.downloads`` removed, under the workspace lock,
    which that check holds too: it never sees a live folder before its lock is taken.
    """
    parent = ws.root / ".downloads"
    folder = parent / uuid4().hex
    with store_lock(ws):
        folder.mkdir(parents=True)
        in_use = (folder / IN_USE).open("w")
        fcntl.flock(in_use, fcntl.LOCK_EX)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        in_use.close()
        with store_lock(ws), suppress(OSError):
            parent.rmdir()  # only if empty


def remove_stale_downloads(ws: Workspace) -> list[Path]:
    """Remove the download folders no live process uses (left by killed runs); the folders removed.

    A folder is stale when its :data:`IN_USE` lock can be taken, or it has none (its run was killed
    before taking it). Age would not tell: a download in another process may run for longer than
    any threshold, and a killed run's folder may be seconds old.
    """
    parent = ws.root / ".downloads"
    if not parent.is_dir():
        return []
    removed = []
    with store_lock(ws):
        for folder in sorted(parent.iterdir()):
            if folder.is_dir() and not _in_use(folder):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
        with suppress(OSError):
            parent.rmdir()  # only if empty
    if removed:
        log.info("removed %d download folders left by interrupted runs", len(removed))
    return removed


def _in_use(folder: Path) -> bool:
    """Whether a live process holds FOLDER's :data:`IN_USE` lock (taking it for a moment if not)."""
    try:
        with (folder / IN_USE).open("r") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released when the file is closed
    except FileNotFoundError:
        return False
    except OSError:  # held (BlockingIOError), or unreadable: not for this check to remove
        return True
    return False


def resolve_sources(
    ws: Workspace,
    request: IngestRequest,
    download_dir: Path,
    *,
    on_item_error: Callable[[ItemError], None] | None = None,
) -> list[SceneSource]:
    """Every scene source the request names; all checks (paths, hosts, hrefs) run before ingest.

    With ON_ITEM_ERROR, an item of the STAC API search that fails on its own is passed to it and
    left out, instead of failing the whole search (see :mod:`sitewatch.ingest.stac`).
    """
    from sitewatch.ingest.stac import sources_from_stac_api, sources_from_stac_file, sources_from_stac_url
    from sitewatch.io.stac import HostPolicy

    if not request.inputs and not request.stac_api:
        raise InputError("ingest", "give files or folders to ingest, or --stac URL")
    acquired = parse_datetime(request.acquired) if request.acquired else None
    bounds = parse_bounds(request.bounds) if request.bounds else None
    crs = parse_crs(request.crs) if request.crs else None
    limits = ws.settings.limits
    hosts = request.allow_hosts + ws.settings.allowed_hosts
    sources: list[SceneSource] = []
    local = [Path(i) for i in request.inputs if not _is_url(i)]
    for url in (i for i in request.inputs if _is_url(i)):
        sources.extend(sources_from_stac_url(url, download_dir, HostPolicy.for_url(url, hosts), limits))
    for path in expand_paths(local):
        if path.suffix.lower() == ".json":
            sources.extend(sources_from_stac_file(path, download_dir, HostPolicy(allowed_hosts=hosts), limits))
        else:
            sources.append(file_source(path, acquired=acquired, bounds=bounds, crs=crs, limits=limits))
    if request.stac_api:
        targets = [ws.catalog.site(n) for n in request.site_names] or ws.catalog.sites()
        if not targets:
            raise InputError(request.stac_api, "no sites to search for; add one with `sitewatch site add`")
        west, south, east, north = unary_union([s.geometry for s in targets]).bounds
        sources.extend(
            sources_from_stac_api(
                request.stac_api,
                list(request.collections),
                (west, south, east, north),
                parse_datetime(request.date_from, "--from") if request.date_from else None,
                parse_datetime(request.date_to, "--to") if request.date_to else None,
                download_dir,
                HostPolicy.for_url(request.stac_api, hosts),
                limits,
                on_item_error=on_item_error,
            )
        )
    return sources


def _is_url(text: str) -> bool:
    return text.lower().startswith(("http://", "https://"))
