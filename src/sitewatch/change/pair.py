"""Load a BEFORE/AFTER pair onto one grid, as the ``change`` contract in DESIGN.md says.

* Either image is any raster ``open_raster`` accepts, or a Sentinel-2 band folder (OSCD layout).
* Both georeferenced: AFTER is reprojected onto BEFORE's grid (bilinear), with a valid mask for the
  pixels AFTER does not cover. Otherwise they must have the same size.
* Bands are reconciled: equal band counts are kept as they are; otherwise both are reduced to a
  common representation (RGB where both can give it, else luminance).
* A global sub-pixel translation is found by phase correlation and applied only where it is
  reliable; the full co-registration is the ``align`` stage's job.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.enums import ColorInterp
from scipy import ndimage
from skimage.registration import phase_cross_correlation

from sitewatch.errors import InputError, NoOverlapError
from sitewatch.io.bands import read_band_folder
from sitewatch.io.raster import Georef, check_same_size, georef_of, gsd_of, open_raster, reproject_onto
from sitewatch.settings import DEFAULT_LIMITS, Limits

log = logging.getLogger(__name__)

#: ITU-R BT.601 luma weights for R, G, B.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_S2_RGB = ("B04", "B03", "B02")

#: A shift larger than this is not a residual misregistration but a wrong pair or a wrong peak.
MAX_SHIFT_PX = 20.0
#: Quadrant estimates must agree with the global one within this many pixels to trust it.
AGREEMENT_PX = 0.5
#: Shifts smaller than this are left alone: resampling would blur more than it corrects.
MIN_SHIFT_PX = 0.2
#: Phase correlation runs on a central window at most this big, which bounds its time.
ALIGN_WINDOW_PX = 1024


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
    """

    before: np.ndarray
    after: np.ndarray
    valid: np.ndarray
    georef: Georef | None
    gsd: float | None
    shift: tuple[float, float] | None

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


def load_pair(
    before: Path,
    after: Path,
    gsd: float | None = None,
    align: bool = True,
    limits: Limits = DEFAULT_LIMITS,
) -> ImagePair:
    """Read BEFORE and AFTER and put AFTER on BEFORE's grid.

    Args:
        before: raster file or Sentinel-2 band folder.
        after: raster file or Sentinel-2 band folder.
        gsd: metres per pixel, used only when BEFORE has no georeference.
        align: find and apply a global sub-pixel translation of AFTER.
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
    shift = None
    if align:
        after_data, valid, shift = align_translation(before_data, after_data, valid)
    if a.georef is not None:
        gsd = gsd_of(a.georef, a.data.shape[2], a.data.shape[1])
    return ImagePair(before_data, after_data, valid, a.georef, gsd, shift)


def _read(path: Path, limits: Limits) -> _Image:
    """One image as float32 with its valid mask (nodata, alpha and NaN are invalid)."""
    if path.is_dir():
        stack = read_band_folder(path, limits)
        valid = np.isfinite(stack.data).all(axis=0)
        return _Image(stack.data, valid, stack.georef, stack.names)
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
    finite = np.isfinite(data).all(axis=0)
    return _Image(np.where(finite, data, 0.0).astype(np.float32), valid & finite, georef, None)


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


def align_translation(
    before: np.ndarray, after: np.ndarray, valid: np.ndarray
) -> tuple[np.ndarray, np.ndarray, tuple[float, float] | None]:
    """Shift AFTER by the global translation onto BEFORE, when phase correlation is reliable.

    Reliable means: the estimates from the four quadrants of the window agree with the global one
    (at least three within ``AGREEMENT_PX``) and the shift is at most ``MAX_SHIFT_PX``. A pair with
    much change or little texture fails this and is left as it is.
    """
    ref = _filled(before.mean(axis=0), valid)
    mov = _filled(after.mean(axis=0), valid)
    window = _central_window(ref.shape, ALIGN_WINDOW_PX)
    ref, mov = ref[window], mov[window]
    if min(ref.shape) < 32:
        return after, valid, None
    shift = _phase_shift(ref, mov)
    dy, dx = float(shift[0]), float(shift[1])
    if math.hypot(dx, dy) > MAX_SHIFT_PX or not _quadrants_agree(ref, mov, shift):
        log.debug("alignment: shift (%.2f, %.2f) px not reliable; not applied", dx, dy)
        return after, valid, None
    if math.hypot(dx, dy) < MIN_SHIFT_PX:
        return after, valid, None
    log.debug("alignment: applying shift (%.2f, %.2f) px to AFTER", dx, dy)
    moved = ndimage.shift(after, (0.0, dy, dx), order=1, mode="constant", cval=0.0)
    # A pixel stays valid only if every source pixel it was interpolated from was valid.
    inside = ndimage.shift(valid.astype(np.float32), (dy, dx), order=1, mode="constant", cval=0.0)
    return moved.astype(np.float32), valid & (inside > 0.999), (dx, dy)


def _phase_shift(ref: np.ndarray, mov: np.ndarray) -> np.ndarray:
    """(dy, dx) that moves MOV onto REF, to 1/20 px. A Hann window first: without it the image
    borders, which do not wrap around, pull the phase-correlation peak towards zero shift."""
    taper = np.outer(np.hanning(ref.shape[0]), np.hanning(ref.shape[1]))
    shift: np.ndarray = phase_cross_correlation(
        (ref - ref.mean()) * taper, (mov - mov.mean()) * taper, upsample_factor=20
    )[0]
    return shift


def _quadrants_agree(ref: np.ndarray, mov: np.ndarray, shift: np.ndarray) -> bool:
    rows, cols = ref.shape
    agree = 0
    for r in (slice(0, rows // 2), slice(rows // 2, rows)):
        for c in (slice(0, cols // 2), slice(cols // 2, cols)):
            part = _phase_shift(ref[r, c], mov[r, c])
            agree += bool(np.hypot(*(part - shift)) <= AGREEMENT_PX)
    return agree >= 3


def _filled(band: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """BAND with invalid pixels set to the valid median, so no-data edges make no false peak."""
    return np.where(valid, band, np.median(band[valid])).astype(np.float32)


def _central_window(shape: tuple[int, ...], size: int) -> tuple[slice, slice]:
    rows, cols = shape
    top, left = max(0, (rows - size) // 2), max(0, (cols - size) // 2)
    return slice(top, top + min(rows, size)), slice(left, left + min(cols, size))
