"""Load a BEFORE/AFTER pair onto one grid, as the ``change`` contract in DESIGN.md says.

* Either image is any raster ``open_raster`` accepts, or a Sentinel-2 band folder (OSCD layout).
* Both georeferenced: AFTER is reprojected onto BEFORE's grid (bilinear), with a valid mask for the
  pixels AFTER does not cover. Otherwise they must have the same size.
* Any number of bands, any integer or float type: values stay as stored (float32), because the
  detectors that read any bands standardise each band themselves; 8-, 12- and 16-bit data differ
  only in scale. Detectors that read RGB get it through :meth:`ImagePair.as_rgb`, on the 8-bit scale.
* Where red, green and blue are is found once, from band names, colour interpretation or three plain
  bands (:func:`sitewatch.io.bands.rgb_indices`), and kept as :attr:`ImagePair.rgb`.
* Bands are reconciled: equal band counts are kept as they are; otherwise both are reduced to a
  common representation (RGB where both can give it, else luminance).
* An image with no valid pixel (all no-data) is refused: an all-unchanged mask would claim that
  nothing changed where nothing was seen. No-data pixels of a usable image are reported unchanged.
* Then the pair is treated as the pipeline treats observations (:func:`prepare`): AFTER is
  co-registered onto BEFORE (``sitewatch.align``) and saturated pixels are left out.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.enums import ColorInterp

from sitewatch.errors import InputError, NoOverlapError
from sitewatch.io.bands import read_band_folder, rgb_indices
from sitewatch.io.raster import Georef, check_same_size, georef_of, gsd_of, open_raster, reproject_onto
from sitewatch.settings import DEFAULT_LIMITS, Limits

log = logging.getLogger(__name__)

#: ITU-R BT.601 luma weights for R, G, B.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
#: :meth:`ImagePair.as_rgb` maps this percentile of wider-than-8-bit RGB to 255: robust to a few
#: hot pixels, and the same rule for 12-bit, 16-bit, reflectance and float data.
_WHITE_PERCENTILE = 99.8
_RGB = (0, 1, 2)


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
        band_names: the bands' names where known (band folders, band descriptions), else empty.
        rgb: indices of red, green and blue among the bands, or ``None`` when not known.
    """

    before: np.ndarray
    after: np.ndarray
    valid: np.ndarray
    georef: Georef | None
    gsd: float | None
    shift: tuple[float, float] | None
    dtype: str = "float32"
    band_names: tuple[str, ...] = ()
    rgb: tuple[int, int, int] | None = None

    @property
    def band_count(self) -> int:
        """Bands of each image."""
        return int(self.before.shape[0])

    @property
    def height(self) -> int:
        """Rows of BEFORE's grid."""
        return int(self.before.shape[1])

    @property
    def width(self) -> int:
        """Columns of BEFORE's grid."""
        return int(self.before.shape[2])

    def as_rgb(self) -> ImagePair:
        """The pair as red, green, blue on the 8-bit scale (0-255), for detectors that read RGB.

        8-bit data is kept as stored; wider data is scaled by one gain for both dates and all three
        bands (the :data:`_WHITE_PERCENTILE` of their valid pixels becomes 255), which keeps the
        colour balance and the change between dates.

        Raises:
            ValueError: If :attr:`rgb` is unknown (``registry.valid_for`` says so before this is called).
        """
        if self.rgb is None:
            raise ValueError("the pair's red, green and blue bands are not known")
        before, after = self.before[list(self.rgb)], self.after[list(self.rgb)]
        if self.dtype != "uint8":
            values = np.concatenate([before[:, self.valid], after[:, self.valid]], axis=None)
            white = float(np.percentile(values, _WHITE_PERCENTILE)) if values.size else 0.0
            gain = np.float32(255.0 / white) if white > 0 else np.float32(1.0)
            before, after = (np.clip(image * gain, 0.0, 255.0).astype(np.float32) for image in (before, after))
        return dataclasses.replace(
            self, before=before, after=after, dtype="uint8", band_names=("red", "green", "blue"), rgb=_RGB
        )


@dataclass(frozen=True)
class _Image:
    data: np.ndarray  # float32 (bands, rows, cols)
    valid: np.ndarray  # bool (rows, cols)
    georef: Georef | None
    band_names: tuple[str, ...]  # empty when the file names no band
    rgb: tuple[int, int, int] | None
    dtype: str  # as stored in the file


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
        InputError: If a file is missing or refused, an image has no valid pixel, the sizes differ
            without georeferences, the footprints do not overlap, or GSD is not a positive number.
    """
    if gsd is not None and not (math.isfinite(gsd) and gsd > 0):
        raise InputError("--gsd", f"must be a positive number of metres, got {gsd!r}")
    a = _read(before, limits)
    b = _read(after, limits)
    if a.georef is not None and b.georef is not None:
        b = _onto_grid(b, b.georef, a.georef, a.data.shape[1:], after)
    else:
        check_same_size(before, a.data, after, b.data)
    a, b = _common_bands(a, b)
    valid = a.valid & b.valid
    if not valid.any():
        raise NoOverlapError(after, f"has no valid pixel in common with {before.name}")
    if a.georef is not None:
        gsd = gsd_of(a.georef, a.data.shape[2], a.data.shape[1])
    return ImagePair(a.data, b.data, valid, a.georef, gsd, None, a.dtype, a.band_names, a.rgb)


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
    return dataclasses.replace(pair, after=after, valid=valid, shift=shift)


def _read(path: Path, limits: Limits) -> _Image:
    """One image as float32 with its valid mask (nodata, alpha and NaN are invalid).

    Raises:
        InputError: If the image has no valid pixel.
    """
    if path.is_dir():
        stack = read_band_folder(path, limits)
        valid = np.isfinite(stack.data).all(axis=0)
        rgb = rgb_indices(stack.names, (), len(stack.names))
        image = _Image(stack.data, valid, stack.georef, stack.names, rgb, "uint16")
    else:
        image = _read_file(path, limits)
    if not image.valid.any():
        raise InputError(path, "has no valid pixel (all no-data)")
    return image


def _read_file(path: Path, limits: Limits) -> _Image:
    """A raster file's bands, alpha left out and a palette expanded to RGB."""
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
            names: tuple[str, ...] = ()
            rgb: tuple[int, int, int] | None = _RGB
            dtype = "uint8"
        else:
            indexes = [i + 1 for i, ci in enumerate(interp) if ci != ColorInterp.alpha] or [1]
            data = src.read(indexes).astype(np.float32)
            descriptions = [src.descriptions[i - 1] or "" for i in indexes]
            names = tuple(descriptions) if any(descriptions) else ()
            rgb = rgb_indices(descriptions, [interp[i - 1] for i in indexes], len(indexes))
            dtype = src.dtypes[0]
    finite = np.isfinite(data).all(axis=0)
    return _Image(np.where(finite, data, 0.0).astype(np.float32), valid & finite, georef, names, rgb, dtype)


def _onto_grid(image: _Image, own: Georef, grid: Georef, shape: tuple[int, ...], path: Path) -> _Image:
    """IMAGE (lying on OWN) reprojected onto GRID of SHAPE, bilinear; untouched if already on it."""
    if image.data.shape[1:] == shape and own == grid:
        return image
    target = (int(shape[0]), int(shape[1]))
    data = reproject_onto(image.data, own, grid, target)
    covered = reproject_onto(image.valid.astype(np.uint8), own, grid, target, nearest=True)
    if not covered.any():
        raise NoOverlapError(path, "does not overlap BEFORE's footprint")
    return dataclasses.replace(image, data=data, valid=covered > 0, georef=grid)


def _common_bands(a: _Image, b: _Image) -> tuple[_Image, _Image]:
    """Both images on bands they share, with what is known of them.

    Equal band counts are kept as they are (band i of BEFORE is band i of AFTER), unless both say
    where their RGB is and disagree; otherwise RGB where both can give it, else luminance of each.
    """
    if a.data.shape[0] == b.data.shape[0] and (a.rgb is None or b.rgb is None or a.rgb == b.rgb):
        rgb = a.rgb or b.rgb
        names = a.band_names or b.band_names
        return dataclasses.replace(a, band_names=names, rgb=rgb), dataclasses.replace(b, band_names=names, rgb=rgb)
    if a.rgb is not None and b.rgb is not None:
        return _as_rgb(a, a.rgb), _as_rgb(b, b.rgb)
    return _luminance(a), _luminance(b)


def _as_rgb(image: _Image, rgb: tuple[int, int, int]) -> _Image:
    return dataclasses.replace(image, data=image.data[list(rgb)], band_names=("red", "green", "blue"), rgb=_RGB)


def _luminance(image: _Image) -> _Image:
    """One band: BT.601 luma of RGB where it is known, else the mean of the bands."""
    if image.rgb is not None:
        data = np.tensordot(_LUMA, image.data[list(image.rgb)], axes=1)[np.newaxis].astype(np.float32)
    else:
        data = image.data.mean(axis=0, keepdims=True, dtype=np.float32)
    return dataclasses.replace(image, data=data, band_names=(), rgb=None)
