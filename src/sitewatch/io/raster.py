"""open_raster(): the one door through which sitewatch reads a raster file.

Every file is hostile. Only drivers that cannot pull in other files are allowed (a VRT renamed to
``.tif`` would otherwise read arbitrary local files), the declared size is checked before any pixel
is read, GDAL's directory listing is off, and any GDAL failure inside the ``with`` block becomes
one :class:`RasterRefused` naming the file.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from pyproj import CRS, Geod
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.io import DatasetReader

from sitewatch.errors import GeoreferenceError, InputError, RasterRefused
from sitewatch.settings import DEFAULT_LIMITS, Limits

log = logging.getLogger(__name__)

#: Drivers that read one self-contained file. Never VRT, GTI, WMS or anything that references others.
ALLOWED_DRIVERS: tuple[str, ...] = ("GTiff", "COG", "JP2OpenJPEG", "PNG", "JPEG", "BMP")

#: World-file suffixes GDAL would look for beside a plain image, per image suffix.
WORLD_FILE_SUFFIXES: dict[str, tuple[str, ...]] = {
    ".png": (".pgw", ".pngw", ".wld"),
    ".jpg": (".jgw", ".jpgw", ".wld"),
    ".jpeg": (".jgw", ".jpegw", ".wld"),
    ".bmp": (".bpw", ".bmpw", ".wld"),
    ".tif": (".tfw", ".tifw", ".wld"),
    ".tiff": (".tfw", ".tiffw", ".wld"),
}

GDAL_SAFE_ENV: dict[str, str] = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",  # no sidecar discovery (.ovr, .aux.xml, world files)
    "GDAL_PAM_ENABLED": "NO",  # never write .aux.xml beside a user's file
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".none",  # no network access from GDAL itself
    "GDAL_HTTP_MAX_RETRY": "0",
}


@contextmanager
def gdal_env() -> Iterator[None]:
    """GDAL settings for reading hostile files (also used when writing derived products)."""
    with rasterio.Env(**GDAL_SAFE_ENV):
        yield


def _check_path(path: Path, limits: Limits) -> None:
    text = str(path)
    if text.startswith("/vsi") or "://" in text:
        raise RasterRefused(path, "only plain local files can be opened")
    if not path.exists():
        raise RasterRefused(path, "no such file")
    if not path.is_file():
        raise RasterRefused(path, "not a regular file")
    size = path.stat().st_size
    if size == 0:
        raise RasterRefused(path, "empty file")
    if size > limits.max_file_bytes:
        raise RasterRefused(path, f"{size} bytes is over the file size limit of {limits.max_file_bytes}")


@contextmanager
def open_raster(path: str | Path, limits: Limits = DEFAULT_LIMITS) -> Iterator[DatasetReader]:
    """Open a local raster with the driver allowlist and the size limit.

    Raises:
        RasterRefused: If the file is missing, not an allowed raster, declares too many pixels, or
            GDAL fails while it is read inside the ``with`` block (corrupt or truncated data).
    """
    path = Path(path)
    _check_path(path, limits)
    with gdal_env():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                # rasterio.open() takes one driver name only; the reader takes the allowlist.
                src = DatasetReader(path, driver=list(ALLOWED_DRIVERS))
        except RasterioError as exc:
            raise RasterRefused(path, f"not a readable raster of an allowed format ({_short(exc)})") from exc
        try:
            if src.driver not in ALLOWED_DRIVERS:
                raise RasterRefused(path, f"driver {src.driver} is not allowed")
            declared = src.width * src.height * src.count
            if declared > limits.max_pixels:
                raise RasterRefused(
                    path,
                    f"declares {src.width}x{src.height}x{src.count} pixels, over the limit of "
                    f"{limits.max_pixels} (set SITEWATCH_MAX_PIXELS to raise it)",
                )
            try:
                yield src
            except RasterioError as exc:
                raise RasterRefused(path, f"corrupt or truncated raster data ({_short(exc)})") from exc
        finally:
            src.close()


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 160 else text[:157] + "..."


def read_world_file(image: Path) -> Affine | None:
    """Find and parse the world file beside a plain image, since GDAL's readdir is off.

    A world file holds six numbers: A (x size), D, B (rotation terms), E (y size, negative), and
    C, F: the *centre* of the top-left pixel. The returned transform maps to pixel corners.

    Raises:
        GeoreferenceError: If a world file exists but is malformed.
    """
    suffixes = WORLD_FILE_SUFFIXES.get(image.suffix.lower(), (".wld",))
    for suffix in suffixes:
        for candidate in (image.with_suffix(suffix), image.with_suffix(suffix.upper())):
            if candidate.is_file():
                return _parse_world_file(candidate)
    return None


def _parse_world_file(path: Path) -> Affine:
    if path.stat().st_size > 4096:
        raise GeoreferenceError(path, "world file is too large to be one")
    try:
        values = [float(v) for v in path.read_text(encoding="ascii").split()]
    except (UnicodeDecodeError, ValueError) as exc:
        raise GeoreferenceError(path, "world file must hold six numbers") from exc
    if len(values) != 6 or not all(math.isfinite(v) for v in values):
        raise GeoreferenceError(path, f"world file must hold six finite numbers, found {len(values)}")
    a, d, b, e, c, f = values
    if a == 0 or e == 0:
        raise GeoreferenceError(path, "world file has a zero pixel size")
    centre = Affine(a, b, c, d, e, f)
    return centre @ Affine.translation(-0.5, -0.5)


@dataclass(frozen=True)
class Georef:
    """Where an image lies: CRS and pixel-corner transform (both known, or the image is plain)."""

    crs: CRS
    transform: Affine


def transform_of(src: DatasetReader, path: Path) -> Affine | None:
    """The pixel-corner transform: the file's own, else a world file beside it, else None.

    Raises:
        GeoreferenceError: If the grid is rotated or sheared.
    """
    own = src.transform if src.transform != Affine.identity() else None
    transform = own if own is not None and (src.crs is not None or not _has_world_file(path)) else None
    if transform is None:
        transform = read_world_file(path)
    if transform is not None and (transform.b != 0 or transform.d != 0):
        raise GeoreferenceError(path, "rotated or sheared grids are not supported")
    return transform


def georef_of(src: DatasetReader, path: Path) -> Georef | None:
    """The georeference of an open raster (CRS and transform both known), else None.

    Raises:
        GeoreferenceError: If the CRS is present but unknown, or the grid is rotated.
    """
    if src.crs is None:
        return None
    try:
        crs = CRS.from_user_input(src.crs.to_wkt())
    except Exception as exc:  # pyproj raises CRSError and others for garbage WKT
        raise GeoreferenceError(path, f"unknown CRS ({_short(exc)})") from exc
    transform = transform_of(src, path)
    return None if transform is None else Georef(crs=crs, transform=transform)


def _has_world_file(path: Path) -> bool:
    return read_world_file(path) is not None


def gsd_of(georef: Georef, width: int, height: int) -> float:
    """Ground sample distance in metres (mean of x and y pixel sizes; geodesic for lon/lat)."""
    tr = georef.transform
    if georef.crs.is_geographic:
        geod = Geod(ellps="WGS84")
        lon, lat = tr @ (width / 2, height / 2)
        _, _, dx = geod.inv(lon, lat, lon + tr.a, lat)
        _, _, dy = geod.inv(lon, lat, lon, lat + tr.e)
        return float((abs(dx) + abs(dy)) / 2)
    factor = georef.crs.axis_info[0].unit_conversion_factor if georef.crs.axis_info else 1.0
    return float((abs(tr.a) + abs(tr.e)) / 2 * factor)


def read_array(path: str | Path, limits: Limits = DEFAULT_LIMITS) -> tuple[np.ndarray, Georef | None]:
    """Read a whole (small) raster as ``(bands, rows, cols)`` with its georeference, if any.

    For files known to be small: pairs for the ``change`` contract, evaluation images. Large scenes
    go through tiled paths (ingest) instead.
    """
    path = Path(path)
    with open_raster(path, limits) as src:
        georef = georef_of(src, path)
        data = src.read()
    return data, georef


def require_georef(path: Path, georef: Georef | None) -> Georef:
    """The georeference, or a one-line error saying how to supply it."""
    if georef is None:
        raise GeoreferenceError(path, "no georeference and no world file; give --bounds and --crs")
    return georef


def check_same_size(before: Path, a: np.ndarray, after: Path, b: np.ndarray) -> None:
    """Plain image pairs must have the same width and height."""
    if a.shape[-2:] != b.shape[-2:]:
        raise InputError(
            after,
            f"size {b.shape[-1]}x{b.shape[-2]} differs from {before.name} ({a.shape[-1]}x{a.shape[-2]}) "
            "and neither is georeferenced",
        )


def reproject_onto(
    data: np.ndarray, own: Georef, grid: Georef, shape: tuple[int, int], *, nearest: bool = False
) -> np.ndarray:
    """``(bands, rows, cols)`` or ``(rows, cols)`` DATA lying on OWN, put on GRID of SHAPE in one resampling.

    Bilinear for pixel values; NEAREST for masks and labels (averaging would invent classes). Pixels
    DATA does not cover are 0. Returned unchanged when it already lies on GRID.
    """
    from rasterio.warp import Resampling, reproject

    if data.shape[-2:] == shape and own == grid:
        return data
    out = np.zeros((*data.shape[:-2], *shape), dtype=data.dtype)
    reproject(
        data,
        out,
        src_transform=own.transform,
        src_crs=own.crs,
        dst_transform=grid.transform,
        dst_crs=grid.crs,
        src_nodata=0 if nearest else None,
        dst_nodata=0 if nearest else None,
        resampling=Resampling.nearest if nearest else Resampling.bilinear,
    )
    return out
