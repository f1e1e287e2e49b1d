"""Run an object detector over an image of any size: bands, radiometry, GSD, slices, merging.

Why each step is there:

1. RGB is found by band names (:func:`sitewatch.io.bands.rgb_indices`); a single band is repeated.
2. Radiometry is scaled once for the whole image (0.5th-99.5th percentile per band, from a
   decimated read), so every slice of a large scene is normalised alike.
3. Each slice is resampled from the image's GSD to the detector's working GSD (area averaging when
   finer, bilinear when coarser), so a model trained at 0.5 m sees 0.5 m whatever the sensor.
4. Slices overlap by the detector's context; an object is kept by the slice whose core holds its
   centre, and a final oriented non-maximum suppression removes what two slices still share.
5. Reading is windowed: memory is bounded by one slice, whatever the image size.

Coarser data than the detector's ``max_gsd`` gives no detections and a reason (:class:`SlicedResult`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from sitewatch.detect.base import ObjectDetector
from sitewatch.detect.boxes import Detection, suppress

#: Working pixels per slice side (plus the context margin on each side).
SLICE_PX = 1024
#: Pixels of the decimated image the radiometric scaling is measured on.
STATS_PIXELS = 1_000_000
#: Overlap (oriented IoU) above which two boxes from neighbouring slices are one object.
MERGE_IOU = 0.3

#: Reads the window (row0, col0, rows, cols) of the source image resampled to (out_rows, out_cols):
#: ``(bands, out_rows, out_cols)``. Resampling while reading keeps a slice of a very fine image
#: from ever being held at full resolution in float.
WindowReader = Callable[[int, int, int, int, int, int], np.ndarray]


@dataclass(frozen=True)
class SlicedResult:
    """Detections in source image pixels, and whether the GSD let the detector see anything."""

    detections: list[Detection]
    gsd: float
    resolvable: bool
    reason: str = ""
    slices: int = 0
    classes: tuple[str, ...] = field(default=())

    def counts(self) -> dict[str, int]:
        """Detections per class (every class the detector reports, zero included)."""
        counts = dict.fromkeys(self.classes, 0)
        for d in self.detections:
            counts[d.cls] = counts.get(d.cls, 0) + 1
        return counts


def scaling(sample: np.ndarray) -> np.ndarray:
    """Per band (low, high): the 0.5th and 99.5th percentiles of SAMPLE's finite non-zero pixels.

    Zero is no-data in most imagery, and a margin of it would stretch the rest into a narrow range.
    """
    out = np.zeros((sample.shape[0], 2), dtype=np.float32)
    for band in range(sample.shape[0]):
        values = sample[band].astype(np.float32)
        values = values[np.isfinite(values) & (values != 0)]
        if values.size == 0:
            out[band] = (0.0, 1.0)
            continue
        low, high = np.percentile(values, [0.5, 99.5])
        out[band] = (low, high if high > low else low + 1.0)
    return out


def _rgb_bands(count: int, rgb: tuple[int, int, int] | None) -> tuple[int, int, int]:
    if rgb is not None:
        return rgb
    return (0, 1, 2) if count >= 3 else (0, 0, 0)


def detect_array(
    image: np.ndarray,
    gsd: float,
    detector: ObjectDetector,
    rgb: tuple[int, int, int] | None = None,
    slice_px: int = SLICE_PX,
) -> SlicedResult:
    """Objects in an in-memory ``(bands, rows, cols)`` IMAGE of GSD metres per pixel.

    RGB: zero-based band indices of red, green and blue (default: the first three, or band 1 thrice).
    """
    if image.ndim == 2:
        image = image[np.newaxis]
    step = max(1, int(np.ceil(np.sqrt(image.shape[1] * image.shape[2] / STATS_PIXELS))))
    bands = _rgb_bands(image.shape[0], rgb)
    stats = scaling(image[list(bands), ::step, ::step])

    def read(row0: int, col0: int, rows: int, cols: int, out_rows: int, out_cols: int) -> np.ndarray:
        window = image[list(bands), row0 : row0 + rows, col0 : col0 + cols]
        if (out_rows, out_cols) == (rows, cols):
            return window
        method = cv2.INTER_AREA if out_rows < rows else cv2.INTER_LINEAR
        # One band at a time in float: integer resampling rounds, and would move edges at ties.
        return np.stack([cv2.resize(b.astype(np.float32), (out_cols, out_rows), interpolation=method) for b in window])

    return detect_windows(read, (image.shape[1], image.shape[2]), gsd, detector, stats, slice_px)


def detect_file(
    path: Path,
    gsd: float | None,
    detector: ObjectDetector,
    slice_px: int = SLICE_PX,
) -> SlicedResult:
    """Objects in the raster at PATH, read window by window (bounded memory).

    GSD: metres per pixel; None takes it from the georeference.

    Raises:
        GeoreferenceError: If GSD is None and the file has no georeference.
    """
    from rasterio.enums import Resampling
    from rasterio.windows import Window

    from sitewatch.errors import GeoreferenceError
    from sitewatch.io.bands import rgb_indices
    from sitewatch.io.raster import georef_of, gsd_of, open_raster

    with open_raster(path) as src:
        if gsd is None:
            georef = georef_of(src, path)
            if georef is None:
                raise GeoreferenceError(path, "no georeference, so the GSD is unknown; give --gsd METRES")
            gsd = gsd_of(georef, src.width, src.height)
        found = rgb_indices(src.descriptions, src.colorinterp, src.count) if src.count >= 3 else None
        bands = [b + 1 for b in _rgb_bands(src.count, found)]
        step = max(1, int(np.ceil(np.sqrt(src.width * src.height / STATS_PIXELS))))
        shape = (len(bands), max(1, src.height // step), max(1, src.width // step))
        sample = src.read(bands, out_shape=shape, resampling=Resampling.nearest)
        stats = scaling(sample)

        def read(row0: int, col0: int, rows: int, cols: int, out_rows: int, out_cols: int) -> np.ndarray:
            method = Resampling.average if out_rows < rows else Resampling.bilinear
            shape = (len(bands), out_rows, out_cols)
            window: np.ndarray = src.read(
                bands, window=Window(col0, row0, cols, rows), out_shape=shape, resampling=method
            )
            return window

        return detect_windows(read, (src.height, src.width), gsd, detector, stats, slice_px)


def _inside(detection: Detection, rows: int, cols: int) -> Detection:
    """DETECTION with its corners moved onto the image's edge where they overhang it: only what the
    image shows of an object at its border can be outlined (DOTA clips such labels too)."""
    corners = tuple((min(max(x, -0.5), cols - 0.5), min(max(y, -0.5), rows - 0.5)) for x, y in detection.corners)
    return Detection(corners, detection.cls, detection.score)


def detect_windows(
    read: WindowReader,
    shape: tuple[int, int],
    gsd: float,
    detector: ObjectDetector,
    stats: np.ndarray,
    slice_px: int = SLICE_PX,
) -> SlicedResult:
    """Objects in a source image of SHAPE (rows, cols) read through READ (RGB bands, in order).

    STATS: per band (low, high) radiometric scaling from :func:`scaling`.
    """
    classes = detector.classes
    if not detector.resolvable(gsd):
        reason = (
            f"GSD {gsd:.2f} m is coarser than {detector.max_gsd} m: {detector.name} cannot resolve {', '.join(classes)}"
        )
        return SlicedResult([], gsd, False, reason, 0, classes)
    rows, cols = shape
    factor = gsd / detector.work_gsd  # working pixels per source pixel
    core = max(1, round(slice_px / factor))
    margin = int(np.ceil(detector.context_px / factor))
    low = stats[:, 0, None, None]
    span = stats[:, 1, None, None] - low
    found: list[Detection] = []
    count = 0
    for row0 in range(0, rows, core):
        for col0 in range(0, cols, core):
            r0, c0 = max(0, row0 - margin), max(0, col0 - margin)
            r1, c1 = min(rows, row0 + core + margin), min(cols, col0 + core + margin)
            out_rows, out_cols = max(1, round((r1 - r0) * factor)), max(1, round((c1 - c0) * factor))
            tile = read(r0, c0, r1 - r0, c1 - c0, out_rows, out_cols).astype(np.float32)
            tile -= low
            tile /= span
            np.clip(tile, 0.0, 1.0, out=tile)
            count += 1
            sx, sy = (c1 - c0) / out_cols, (r1 - r0) / out_rows
            for detection in detector.detect_tile(np.ascontiguousarray(tile, dtype=np.float32)):
                moved = detection.moved(c0, r0, sx, sy)
                cx, cy = moved.centre
                if row0 <= cy + 0.5 < row0 + core and col0 <= cx + 0.5 < col0 + core:
                    found.append(_inside(moved, rows, cols))
    merged = suppress(found, MERGE_IOU)
    return SlicedResult(merged, gsd, True, "", count, classes)
