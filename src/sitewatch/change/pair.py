"""Load a BEFORE/AFTER pair onto one grid, as the ``change`` contract in DESIGN.md says.

* Either image is any raster ``open_raster`` accepts, or a Sentinel-2 band folder (OSCD layout).
* Both georeferenced: AFTER is reprojected onto BEFORE's grid (bilinear), with a valid mask for the
  pixels AFTER does not cover. Otherwise they must have the same size.
* Bands are reconciled: equal band counts are kept as they are; otherwise both are reduced to a
  common representation (RGB where both can give it, else luminance).
* Then the pair is treated as the pipeline treats observations (:func:`prepare`): AFTER is
  co-registered onto BEFORE (``sitewatch.align``) and saturated pixels are left out.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.enums import ColorInterp

from sitewatch.errors import InputError, NoOverlapError
from sitewatch.io.bands import read_band_folder
from sitewatch.io.raster import Georef, check_same_size, georef_of, gsd_of, open_raster, reproject_onto
from sitewatch.settings import DEFAULT_LIMITS, Limits

log = logging.getLogger(__name__)

#: ITU-R BT.601 luma weights for R, G, B.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_S2_RGB = ("B04", "B03", "B02")


@dataclass(frozen=True)
class ImagePair:
    """BEFORE and AFTER on BEFORE's grid, ready for a change detector.

    Attributes:
        before: float32 ``(bands, rows, cols)``.
        after: float32 ``(bands, rows, cols)``, same shape as BEFORE.
        valid: bool ``(rows, cols)``: pixels where both images have data.
        georef: BEFORE's georeference, or ``None`` for plain images.
        gsd: metres per pixel (from the georeference, else as given), or ``None`` when unknown.
        shift: ``(dx, dy)`` pixels applied to AFTER by alignment, or ``None`` when none was applied.
        dtype: BEFORE's dtype as stored (``uint8``, ``uint16``, ...), for the masks' value scale.
        band_names: the bands' names where known (band folders), else empty.
    """

    before: np.ndarray
    after: np.ndarray
    valid: np.ndarray
    georef: Georef | None
    gsd: float | None
    shift: tuple[float, float] | None
    dtype: str = "float32"
    band_names: tuple[str, ...] = ()

    @property
    def height(self) -> int:
        """Rows of BEFORE's grid."""
        return int(self.before.shape[1])

    @property
    def width(self) -> int:
        """Columns of BEFORE's grid."""
        return int(self.before.shape[2])


@dataclass(frozen=True)
class _Image:
    data: np.ndarray  # float32 (bands, rows, cols)
    valid: np.ndarray  # bool (rows, cols)
    georef: Georef | None
    band_names: tuple[str, ...] | None  # known only for band folders
    dtype: str = "float32"  # as stored in the file


def load_pair(
    before: Path,
    after: Path,
    gsd: float | None = None,
    align: bool = True,
    limits: Limits = DEFAULT_LIMITS,
) -> ImagePair:
    """Read BEFORE and AFTER onto BEFORE's grid and prepare them as the pipeline does (:func:`prepare`)."""
    return prepare(read_pair(before, after, gsd=gsd, limits=limits), align=align)


def read_pair(
    before: Path,
    after: Path,
    gsd: float | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> ImagePair:
    """Read BEFORE and AFTER and put AFTER on BEFORE's grid (by georeference only).

    Args:
        before: raster file or Sentinel-2 band folder.
        after: raster file or Sentinel-2 band folder.
        gsd: metres per pixel, used only when BEFORE has no georeference.
        limits: size limits for every file read.

    Raises:
        InputError: If a file is missing or refused, the sizes differ without georeferences, the
            footprints do not overlap, or GSD is not a positive number.
    """
    if gsd is not None and not (math.isfinite(gsd) and gsd > 0):
        raise InputError("--gsd", f"must be a positive number of metres, got {gsd!r}")
    a = _read(before, limits)
    b = _read(after, limits)
    if a.georef is not None and b.georef is not None:
        b = _onto_grid(b, b.georef, a.georef, a.data.shape[1:], after)
    else:
        check_same_size(before, a.data, after, b.data)
    before_data, after_data = _common_bands(a, b)
    valid = a.valid & b.valid
    if not valid.any():
        raise NoOverlapError(after, f"has no valid pixel in common with {before.name}")
    if a.georef is not None:
        gsd = gsd_of(a.georef, a.data.shape[2], a.data.shape[1])
    names = a.band_names if a.band_names is not None and len(a.band_names) == before_data.shape[0] else ()
    return ImagePair(before_data, after_data, valid, a.georef, gsd, None, a.dtype, tuple(names or ()))


def prepare(pair: ImagePair, *, align: bool = True) -> ImagePair:
    """The pipeline's treatment of a pair: co-registration of AFTER onto BEFORE (with ALIGN) and
    saturated pixels left out.

    Radiometry is left to the detector: CVA standardises each band of each date itself, and a prior
    IR-MAD normalisation lowered its F1 on SZTAKI (0.437 to 0.374) and OSCD; the alignment stage
    records each observation's normalisation fit against its reference instead.

    Cloud and cloud-shadow masks are left to the site pipeline, which screens whole observations
    with their provenance: on a bare pair of chips (LEVIR-CD, SZTAKI) there is no cloud to find and
    a bright new roof is exactly the change being looked for.
    """
    from sitewatch.align import apply, register
    from sitewatch.masks import quality_masks

    after, valid, shift = pair.after, pair.valid, None
    if align:
        registration = register(pair.before, after, ref_valid=valid, mov_valid=valid, gsd=pair.gsd)
        if registration.ok and registration.shift_px is not None:
            after, moved = apply(after, registration, pair.before.shape[1:], mov_valid=valid)
            after, valid = after.astype(np.float32), valid & moved
            shift = (-registration.shift_px[0], -registration.shift_px[1])  # what AFTER was moved by
        else:
            log.debug("alignment: %s; AFTER left as placed", registration.reason)
    for image in (pair.before, after):
        quality = quality_masks(image, valid, dtype=pair.dtype, band_names=pair.band_names, gsd=pair.gsd)
        valid = valid & ~quality.saturated
    return ImagePair(pair.before, after, valid, pair.georef, pair.gsd, shift, pair.dtype, pair.band_names)


def _read(path: Path, limits: Limits) -> _Image:
    """One image as float32 with its valid mask (nodata, alpha and NaN are invalid)."""
    if path.is_dir():
        stack = read_band_folder(path, limits)
        valid = np.isfinite(stack.data).all(axis=0)
        return _Image(stack.data, valid, stack.georef, stack.names, "uint16")
    with open_raster(path, limits) as src:
        georef = georef_of(src, path)
        # The dataset mask joins nodata, alpha and internal masks, which read_array would lose.
        valid = src.dataset_mask() > 0
        interp = src.colorinterp
        if src.count == 1 and interp[0] == ColorInterp.palette:
            colormap, indices = src.colormap(1), src.read(1)
            table = np.zeros((max(int(indices.max()), *colormap) + 1, 3), dtype=np.float32)
            for index, rgba in colormap.items():
                table[index] = rgba[:3]
            data = np.moveaxis(table[indices], -1, 0)
        else:
            indexes = [i + 1 for i, ci in enumerate(interp) if ci != ColorInterp.alpha] or [1]
            data = src.read(indexes).astype(np.float32)
        dtype = "uint8" if src.count == 1 and interp[0] == ColorInterp.palette else src.dtypes[0]
    finite = np.isfinite(data).all(axis=0)
    return _Image(np.where(finite, data, 0.0).astype(np.float32), valid & finite, georef, None, dtype)


def _onto_grid(image: _Image, own: Georef, grid: Georef, shape: tuple[int, ...], path: Path) -> _Image:
    """IMAGE (lying on OWN) reprojected onto GRID of SHAPE, bilinear; untouched if already on it."""
    if image.data.shape[1:] == shape and own == grid:
        return image
    target = (int(shape[0]), int(shape[1]))
    data = reproject_onto(image.data, own, grid, target)
    covered = reproject_onto(image.valid.astype(np.uint8), own, grid, target, nearest=True)
    if not covered.any():
        raise NoOverlapError(path, "does not overlap BEFORE's footprint")
    return _Image(data, covered > 0, grid, image.band_names)


def _common_bands(a: _Image, b: _Image) -> tuple[np.ndarray, np.ndarray]:
    """Equal band counts as they are; else RGB where both can give it, else luminance of each."""
    if a.data.shape[0] == b.data.shape[0]:
        return a.data, b.data
    rgb_a, rgb_b = _rgb(a), _rgb(b)
    if rgb_a is not None and rgb_b is not None:
        return rgb_a, rgb_b
    return _luminance(a), _luminance(b)


def _rgb(image: _Image) -> np.ndarray | None:
    """The image as R, G, B: three bands are taken to be RGB; band folders give B04, B03, B02."""
    if image.band_names is not None and all(n in image.band_names for n in _S2_RGB):
        return image.data[[image.band_names.index(n) for n in _S2_RGB]]
    if image.band_names is None and image.data.shape[0] == 3:
        return image.data
    return None


def _luminance(image: _Image) -> np.ndarray:
    """One band: BT.601 luma of RGB, else the mean of the bands."""
    rgb = _rgb(image)
    if rgb is not None:
        return np.tensordot(_LUMA, rgb, axes=1)[np.newaxis].astype(np.float32)
    mean: np.ndarray = image.data.mean(axis=0, keepdims=True, dtype=np.float32)
    return mean
