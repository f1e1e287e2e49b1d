"""Change mask -> typed change polygons (appeared, removed, modified) with area and confidence.

A pure function of arrays and a transform, so ``analyze`` can call it on observations of a site
and the ``change`` command on any pair.

How the kind is decided (one vote each from structure and brightness; the net vote decides):

* structure: edge density (mean Sobel magnitude of the normalised luminance) inside the polygon.
  A relative gain of at least ``STRUCTURE_VOTE`` votes ``appeared`` (new roofs, walls, vehicles
  add edges), a loss as large votes ``removed``.
* brightness: mean normalised luminance inside the polygon. A gain of at least
  ``BRIGHTNESS_VOTE`` robust standard deviations votes ``appeared`` (new roofs and concrete are
  usually brighter than what they replace), a loss as large votes ``removed``.
* a net vote above zero is ``appeared``, below zero ``removed``, zero ``modified``.

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

#: Relative change of edge density, (after - before) / (after + before), that casts a vote.
STRUCTURE_VOTE = 0.2
#: Change of mean normalised luminance, in robust standard deviations, that casts a vote.
BRIGHTNESS_VOTE = 0.5


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
    from skimage.filters import sobel

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

    lum_before, lum_after = _normalised_luminance(before), _normalised_luminance(after)
    confidence = ndimage.mean(probability, labels, index)
    d_brightness = ndimage.mean(lum_after - lum_before, labels, index)
    edges_before = ndimage.mean(sobel(lum_before), labels, index)
    edges_after = ndimage.mean(sobel(lum_after), labels, index)
    d_structure = (edges_after - edges_before) / np.maximum(edges_after + edges_before, 1e-6)

    kept = np.where(np.concatenate(([False], keep))[labels], labels, 0).astype(np.int32)
    polygons: list[ChangePolygon] = []
    for geojson, value in shapes(kept, mask=kept > 0, connectivity=4, transform=transform or Affine.identity()):
        i = int(value) - 1
        polygons.append(
            ChangePolygon(
                geometry=shape(geojson),
                area_m2=None if gsd is None else float(area_px[i]) * gsd * gsd,
                area_px=int(area_px[i]),
                confidence=float(np.clip(confidence[i], 0.0, 1.0)),
                kind=_kind(float(d_structure[i]), float(d_brightness[i])),
            )
        )
    polygons.sort(key=lambda p: p.area_px, reverse=True)
    return polygons


def _kind(d_structure: float, d_brightness: float) -> ChangeKind:
    """The module docstring's rule: one vote each from structure and brightness."""
    vote = 0
    if abs(d_structure) >= STRUCTURE_VOTE:
        vote += 1 if d_structure > 0 else -1
    if abs(d_brightness) >= BRIGHTNESS_VOTE:
        vote += 1 if d_brightness > 0 else -1
    if vote > 0:
        return "appeared"
    if vote < 0:
        return "removed"
    return "modified"


def _normalised_luminance(image: np.ndarray) -> np.ndarray:
    """Mean over bands, minus its median, over its robust standard deviation (IQR / 1.349)."""
    import numpy as np

    lum = image.astype(np.float32) if image.ndim == 2 else image.mean(axis=0, dtype=np.float32)
    q25, q50, q75 = np.percentile(lum, [25, 50, 75])
    spread = float(q75 - q25) / 1.349
    centred: np.ndarray = lum - np.float32(q50)
    return centred / np.float32(spread) if spread > 0 else centred
