"""Change mask -> typed change polygons (appeared, removed, modified) with area and confidence.

A pure function of arrays and a transform, so ``analyze`` can call it on observations of a site
and the ``change`` command on any pair.

How the kind is decided: by which date holds the structure. A structure (a building, a container
stack, a vehicle) stands out from the ground around it; bare ground, rubble and debris look like
their surroundings. For each region, the contrast with a ring of unchanged pixels around it is
measured on each date (distance between the mean band vectors inside and in the ring, in units of
the ring's spread). If the AFTER image stands out at least ``CONTRAST_RATIO`` times more than the
BEFORE image, the region ``appeared``; the reverse is ``removed``; otherwise ``modified`` (for
example one roof replaced by another, or a change of surface).

Luminance is normalised per date by its median and interquartile range first, so a change of
illumination between dates does not vote.

NumPy, SciPy, rasterio, shapely and scikit-image are imported inside the functions: the package
imports this module at every CLI start (for ``--help``), which must stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from sitewatch.change.base import ChangeResult, min_mapping_unit_px

if TYPE_CHECKING:
    import numpy as np
    from affine import Affine
    from shapely.geometry.base import BaseGeometry

ChangeKind = Literal["appeared", "removed", "modified"]

#: How many times more one date must stand out from the surroundings than the other to decide.
CONTRAST_RATIO = 1.5
#: Width of the ring of surroundings, in pixels.
RING_PX = 6


@dataclass(frozen=True)
class ChangePolygon:
    """One change region.

    Attributes:
        geometry: polygon in the coordinates of the transform (the grid's CRS), or in pixel
            coordinates (x = column to the right, y = row down, pixel corners) without one.
        area_m2: ground area (pixels times GSD²), or ``None`` when the GSD is unknown.
        area_px: area in pixels of the grid.
        confidence: mean change probability inside the polygon, 0–1.
        kind: ``appeared``, ``removed`` or ``modified`` (see the module docstring for the rule).
    """

    geometry: BaseGeometry
    area_m2: float | None
    area_px: int
    confidence: float
    kind: ChangeKind


def vectorize(
    result: ChangeResult,
    before: np.ndarray,
    after: np.ndarray,
    transform: Affine | None = None,
    gsd: float | None = None,
    min_pixels: int | None = None,
) -> list[ChangePolygon]:
    """Polygons of the changed regions of a detector's RESULT, largest first.

    Args:
        result: the detector's mask (which regions) and probability (their confidence).
        before: ``(bands, rows, cols)`` or ``(rows, cols)``, for the kind.
        after: same shape as BEFORE.
        transform: the grid's pixel-corner transform; ``None`` gives pixel coordinates.
        gsd: metres per pixel, for the area and the default minimum mapping unit.
        min_pixels: regions smaller than this are dropped; default: the minimum mapping unit at
            GSD (see :func:`sitewatch.change.base.min_mapping_unit_px`).
    """
    import numpy as np
    from affine import Affine
    from rasterio.features import shapes
    from scipy import ndimage
    from shapely.geometry import shape

    mask, probability = result.mask, result.probability
    if mask.shape != probability.shape or before.shape != after.shape or before.shape[-2:] != mask.shape:
        raise ValueError(
            f"shapes differ: mask {mask.shape}, probability {probability.shape}, "
            f"before {before.shape}, after {after.shape}"
        )
    labels, count = ndimage.label(mask)  # 4-connected, as rasterio's shapes()
    if count == 0:
        return []
    index = np.arange(1, count + 1)
    area_px = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    keep = area_px >= (min_mapping_unit_px(gsd) if min_pixels is None else min_pixels)
    if not keep.any():
        return []

    confidence = ndimage.mean(probability, labels, index)
    kept = np.where(np.concatenate(([False], keep))[labels], labels, 0).astype(np.int32)
    contrast_before, contrast_after = _contrasts(kept, mask, before, after, count)
    polygons: list[ChangePolygon] = []
    for geojson, value in shapes(kept, mask=kept > 0, connectivity=4, transform=transform or Affine.identity()):
        i = int(value) - 1
        polygons.append(
            ChangePolygon(
                geometry=shape(geojson),
                area_m2=None if gsd is None else float(area_px[i]) * gsd * gsd,
                area_px=int(area_px[i]),
                confidence=float(np.clip(confidence[i], 0.0, 1.0)),
                kind=_kind(float(contrast_before[i]), float(contrast_after[i])),
            )
        )
    polygons.sort(key=lambda p: p.area_px, reverse=True)
    return polygons


def _kind(contrast_before: float, contrast_after: float) -> ChangeKind:
    """The module docstring's rule: the date whose region stands out from its surroundings holds it."""
    if contrast_after >= CONTRAST_RATIO * contrast_before:
        return "appeared"
    if contrast_before >= CONTRAST_RATIO * contrast_after:
        return "removed"
    return "modified"


def _contrasts(
    labels: np.ndarray, changed: np.ndarray, before: np.ndarray, after: np.ndarray, count: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per region 1..COUNT: (before, after) contrast of the region with its ring of unchanged pixels."""
    import numpy as np
    from scipy import ndimage

    contrast = np.zeros((2, count), np.float32)
    images = [_normalised_bands(before), _normalised_bands(after)]
    for index, box in enumerate(ndimage.find_objects(labels)):
        if box is None:
            continue
        grown = tuple(slice(max(0, s.start - RING_PX), s.stop + RING_PX) for s in box)
        region = labels[grown] == index + 1
        ring = ndimage.binary_dilation(region, iterations=RING_PX) & ~changed[grown]
        if ring.sum() < 4:
            continue
        for date, image in enumerate(images):
            window = image[(slice(None), *grown)]
            inside, around = window[:, region], window[:, ring]
            spread = float(np.sqrt((around.var(axis=1)).sum())) + 1e-3
            contrast[date, index] = float(np.linalg.norm(inside.mean(axis=1) - around.mean(axis=1))) / spread
    return contrast[0], contrast[1]


def _normalised_bands(image: np.ndarray) -> np.ndarray:
    """``(bands, rows, cols)``, each band minus its median over its robust standard deviation."""
    import numpy as np

    bands = image[np.newaxis] if image.ndim == 2 else image
    return np.stack([_standardised(band) for band in bands])


def _standardised(band: np.ndarray) -> np.ndarray:
    """A band minus its median, over its robust standard deviation (IQR / 1.349)."""
    import numpy as np

    values = band.astype(np.float32)
    q25, q50, q75 = np.percentile(values, [25, 50, 75])
    spread = float(q75 - q25) / 1.349
    centred: np.ndarray = values - np.float32(q50)
    return centred / np.float32(spread) if spread > 0 else centred
