"""Which band is which: Sentinel-2 band folders, and where red, green and blue are in a file.

A Sentinel-2 band folder (the OSCD layout) is read as one stack on the grid of its 10 m bands. Each
band is a single-band GeoTIFF named ``*_B01.tif`` … ``*_B12.tif``, ``*_B8A.tif`` at its native
resolution (10, 20 or 60 m). The 10 m bands fix the grid because they carry the detail change
detection needs; coarser bands are resampled onto it once, bilinearly (they are reflectance).

:func:`rgb_indices` finds red, green and blue for detectors that read RGB only; it never guesses
where a wrong guess would feed them NIR as red.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.enums import ColorInterp

from sitewatch.errors import InputError
from sitewatch.io.raster import Georef, georef_of, open_raster, reproject_onto
from sitewatch.settings import DEFAULT_LIMITS, Limits

#: Sentinel-2 MSI bands in their conventional order.
S2_BANDS: tuple[str, ...] = (
    "B01",
    "B02",
    "B03",
    "B04",
    "B05",
    "B06",
    "B07",
    "B08",
    "B8A",
    "B09",
    "B10",
    "B11",
    "B12",
)

#: The 10 m bands, whose common grid the stack is put on.
S2_10M_BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B08")

#: Band names that say red, green and blue: colour words (band descriptions, STAC ``eo:common_name``,
#: which Landsat STAC items use too) and Sentinel-2's zero-padded numbers.
_RGB_NAMES: tuple[frozenset[str], frozenset[str], frozenset[str]] = (
    frozenset({"red", "b04"}),
    frozenset({"green", "b03"}),
    frozenset({"blue", "b02"}),
)
#: Names that say a band is something known, so its position must not be guessed: STAC common names
#: and band numbers. Unpadded numbers (``B4``, ``SR_B4``) are Landsat's, whose red is band 4 on
#: Landsat 8-9 but band 3 on Landsat 4-7, so they name a band without saying which colour it is.
_SPECTRAL_NAME = re.compile(
    r"(red|green|blue|coastal|yellow|pan|rededge|nir\d*|swir\d*|cirrus|lwir\d*|"
    r"((sr|st|toa)_)?b\d{1,2}a?)",
    re.IGNORECASE,
)
_SPECTRAL_INTERP = frozenset(ColorInterp) - {
    ColorInterp.undefined,
    ColorInterp.gray,
    ColorInterp.alpha,
    ColorInterp.palette,
}

_BAND_FILE = re.compile(r"_(B0[1-9]|B1[0-2]|B8A)\.tiff?$", re.IGNORECASE)


@dataclass(frozen=True)
class BandStack:
    """Bands of one date stacked on the 10 m grid: ``data`` is ``(bands, rows, cols)`` float32."""

    data: np.ndarray
    georef: Georef
    names: tuple[str, ...]


def band_files(folder: Path) -> dict[str, Path]:
    """Band name -> file for the band GeoTIFFs directly in FOLDER (empty when there are none).

    Raises:
        InputError: If one band has two files (two products mixed in one folder).
    """
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        match = _BAND_FILE.search(path.name)
        if match is None or not path.is_file():
            continue
        name = match.group(1).upper()
        if name in found:
            raise InputError(folder, f"two files for band {name}: {found[name].name} and {path.name}")
        found[name] = path
    return found


def is_band_folder(path: Path) -> bool:
    """Whether PATH is a folder holding Sentinel-2 band GeoTIFFs."""
    return path.is_dir() and bool(band_files(path))


def read_band_folder(folder: str | Path, limits: Limits = DEFAULT_LIMITS) -> BandStack:
    """Stack every band in FOLDER on the grid of its 10 m bands, in Sentinel-2 order.

    Raises:
        InputError: If FOLDER is not a folder, holds no band files, or lacks a 10 m band.
        RasterRefused: If a band file is refused by :func:`open_raster`.
        GeoreferenceError: If a band file has an unusable georeference.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "not a folder of Sentinel-2 band files")
    files = band_files(folder)
    if not files:
        raise InputError(folder, "no band files named *_B01.tif … *_B12.tif or *_B8A.tif")
    missing = [b for b in S2_10M_BANDS if b not in files]
    if missing:
        raise InputError(folder, f"missing the 10 m band(s) {', '.join(missing)} that fix the grid")

    names = tuple(b for b in S2_BANDS if b in files)
    grid_path = files[S2_10M_BANDS[0]]
    with open_raster(grid_path, limits) as src:
        georef = georef_of(src, grid_path)
        if georef is None:
            raise InputError(grid_path, "band file has no georeference")
        shape = (src.height, src.width)

    data = np.empty((len(names), *shape), dtype=np.float32)
    for i, name in enumerate(names):
        data[i] = _read_on_grid(files[name], georef, shape, limits)
    return BandStack(data=data, georef=georef, names=names)


def _read_on_grid(path: Path, grid: Georef, shape: tuple[int, int], limits: Limits) -> np.ndarray:
    """One band on GRID: read as is when it already lies on it, else bilinear reprojection."""
    with open_raster(path, limits) as src:
        own = georef_of(src, path)
        if own is None:
            raise InputError(path, "band file has no georeference")
        band: np.ndarray = src.read(1).astype(np.float32)
    return reproject_onto(band, own, grid, shape)


def rgb_indices(
    band_names: Sequence[str | None], colorinterp: Sequence[ColorInterp], count: int
) -> tuple[int, int, int] | None:
    """0-based indices of red, green and blue among COUNT bands, or ``None`` when they are not known.

    In order of trust: band names (descriptions, Sentinel-2 ``B04/B03/B02``, STAC common names),
    then GDAL's colour interpretation, then three bands that neither names nor colour
    interpretation describe, taken to be RGB as in every plain image format. Four or more such
    bands are not guessed (blue-green-red-NIR and red-green-blue-NIR orders are both common), nor
    are bands whose names say what they are without saying red, green and blue: callers then use
    a detector that reads any bands.
    """
    names = [(name or "").strip().lower() for name in band_names[:count]]
    by_name = _find_rgb([[i for i, n in enumerate(names) if n in wanted] for wanted in _RGB_NAMES])
    if by_name is not None or any(_SPECTRAL_NAME.fullmatch(n) for n in names):
        return by_name
    interp = list(colorinterp[:count])
    wanted_interp = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
    by_interp = _find_rgb([[i for i, ci in enumerate(interp) if ci == wanted] for wanted in wanted_interp])
    if by_interp is not None or any(ci in _SPECTRAL_INTERP for ci in interp):
        return by_interp
    return (0, 1, 2) if count == 3 else None


def _find_rgb(found: list[list[int]]) -> tuple[int, int, int] | None:
    """Red, green and blue when each was found exactly once."""
    if all(len(indices) == 1 for indices in found):
        return found[0][0], found[1][0], found[2][0]
    return None
