"""A classic, training-free vehicle detector: the baseline for ``sitewatch detect``.

Vehicles seen from above are compact blobs that differ from the ground around them. The luminance
is resampled to about 0.5 m (``INTER_AREA``, only when the image is finer), the local background
is a median over a window a few vehicle lengths wide, and pixels whose difference from it exceeds
a robust noise level (MAD) form bright and dark candidate masks, kept apart so that a car and its
shadow do not merge. Each connected component gets an oriented box (``cv2.minAreaRect``) and a
class from its size in metres: ``small-vehicle`` (3-7 m x 1.4-2.8 m) or ``large-vehicle``
(7-20 m x 2-4 m). The score combines contrast and how well the blob fills its box.

No model, no training data: it carries no dataset licence terms. It is a baseline, not a
state-of-the-art detector; expect false alarms on roofs, road markings and street furniture.
"""

from __future__ import annotations

import cv2
import numpy as np

from sitewatch.detect.base import LARGE, SMALL, ObjectDetector, register
from sitewatch.detect.boxes import Detection

#: Working resolution in metres per pixel.
WORK_GSD_M = 0.5
#: Coarser than this, a car is under ~1.5 pixels wide: not resolvable.
MAX_GSD_M = 1.2
#: Background median window, in metres (a few vehicle lengths).
BACKGROUND_M = 25.0
#: Threshold on |luminance - background|, in robust noise sigmas.
THRESHOLD_SIGMAS = 3.0
#: Blobs that fit no vehicle are thresholded again this many times higher, this many times.
SPLIT_FACTOR = 1.6
SPLIT_LEVELS = 2

CLASSES: tuple[str, ...] = (SMALL, LARGE)

#: (class, (min length, max length), (min width, max width)) in metres.
SIZE_RULES: tuple[tuple[str, tuple[float, float], tuple[float, float]], ...] = (
    (SMALL, (3.0, 7.0), (1.4, 2.8)),
    (LARGE, (7.0, 20.0), (2.0, 4.0)),
)


@register
class ClassicVehicles(ObjectDetector):
    """The training-free baseline as a registered detector (``--detector classic``)."""

    name = "classic"
    classes = CLASSES
    work_gsd = WORK_GSD_M
    max_gsd = MAX_GSD_M
    context_px = 32

    def detect_tile(self, rgb: np.ndarray) -> list[Detection]:
        """Vehicles in one tile at the working GSD."""
        return detect_vehicles(rgb, self.work_gsd)


def resolvable(gsd: float) -> bool:
    """Whether vehicles can be resolved at GSD metres per pixel."""
    return 0 < gsd <= MAX_GSD_M


def luminance(image: np.ndarray) -> np.ndarray:
    """``(rows, cols)`` float32 luminance of ``(bands, rows, cols)`` IMAGE (RGB mean, else band 1)."""
    if image.ndim == 2:
        image = image[None]
    bands = image[:3] if image.shape[0] >= 3 else image[:1]
    return np.asarray(np.asarray(bands, dtype=np.float32).mean(axis=0), dtype=np.float32)


def _to_uint8(lum: np.ndarray) -> np.ndarray:
    finite = lum[np.isfinite(lum)]
    if finite.size == 0:
        return np.zeros(lum.shape, np.uint8)
    lo, hi = np.percentile(finite, [0.5, 99.5])
    scale = 255.0 / max(float(hi - lo), 1e-6)
    out = np.clip((np.nan_to_num(lum, nan=float(lo)) - lo) * scale, 0, 255)
    return np.asarray(out.round(), dtype=np.uint8)


def classify(length_m: float, width_m: float) -> str | None:
    """The class for an oriented box of LENGTH x WIDTH metres, or None if it fits no vehicle."""
    for cls, (lmin, lmax), (wmin, wmax) in SIZE_RULES:
        if lmin <= length_m <= lmax and wmin <= width_m <= wmax:
            return cls
    return None


def detect_vehicles(image: np.ndarray, gsd: float) -> list[Detection]:
    """Vehicles in ``(bands, rows, cols)`` IMAGE of GSD metres per pixel, best score first.

    Returns an empty list when the GSD is too coarse to resolve vehicles (see :func:`resolvable`).
    """
    if not resolvable(gsd):
        return []
    lum = luminance(image)
    rows, cols = lum.shape
    work_gsd = gsd
    if gsd < WORK_GSD_M:
        new_cols = max(1, round(cols * gsd / WORK_GSD_M))
        new_rows = max(1, round(rows * gsd / WORK_GSD_M))
        lum = cv2.resize(lum, (new_cols, new_rows), interpolation=cv2.INTER_AREA)
        work_gsd = gsd * cols / new_cols
    fx = cols / lum.shape[1]
    fy = rows / lum.shape[0]
    grey = _to_uint8(lum)
    ksize = max(3, round(BACKGROUND_M / work_gsd) | 1)
    ksize = min(ksize, (min(grey.shape) // 2) * 2 + 1) if min(grey.shape) >= 3 else 1
    background = cv2.medianBlur(grey, ksize) if ksize >= 3 else grey
    diff = grey.astype(np.float32) - background.astype(np.float32)
    mad = float(np.median(np.abs(diff - np.median(diff))))
    noise = max(1.4826 * mad, 2.0)
    threshold = THRESHOLD_SIGMAS * noise
    detections: list[Detection] = []
    for sign in (1.0, -1.0):
        mask = np.asarray(diff * sign > threshold, dtype=np.uint8)
        detections.extend(_components(mask, diff * sign, noise, threshold, work_gsd, (fx, fy)))
    detections.sort(key=lambda d: -d.score)
    return detections


def _moment_box(
    sub: np.ndarray, values: np.ndarray, x0: int, y0: int
) -> tuple[tuple[float, float], tuple[float, float], float] | None:
    """Oriented box of a blob from its contrast-weighted second moments.

    Weights are the contrast over the blob's 90th percentile, clipped to [0, 1] (about the fraction
    of each pixel the vehicle covers), taken over the blob grown by one pixel so that partly covered
    edge pixels count by their share. A uniform L x W rectangle has variances L^2/12 and W^2/12.
    """
    grown = cv2.dilate(sub.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    peak = float(np.percentile(values[sub], 90))
    if peak <= 0:
        return None
    ys, xs = np.nonzero(grown)
    weights = np.clip(values[ys, xs] / peak, 0.0, 1.0)
    total = float(weights.sum())
    if total <= 0:
        return None
    mx, my = float((weights * xs).sum() / total), float((weights * ys).sum() / total)
    dx, dy = xs - mx, ys - my
    cov = (
        np.array(
            [
                [(weights * dx * dx).sum(), (weights * dx * dy).sum()],
                [(weights * dx * dy).sum(), (weights * dy * dy).sum()],
            ]
        )
        / total
    )
    evals, evecs = np.linalg.eigh(cov)
    length = float(np.sqrt(12.0 * max(evals[1], 0.0)))
    width = float(np.sqrt(12.0 * max(evals[0], 0.0)))
    angle = float(np.degrees(np.arctan2(evecs[1, 1], evecs[0, 1])))
    return (mx + x0, my + y0), (length, width), angle


def _components(
    mask: np.ndarray,
    contrast: np.ndarray,
    noise: float,
    threshold: float,
    work_gsd: float,
    scale: tuple[float, float],
    offset: tuple[int, int] = (0, 0),
    depth: int = 0,
) -> list[Detection]:
    """Vehicles among MASK's blobs; a blob that fits no vehicle (touching cars, a car beside a
    kerb) is split by thresholding it again higher, up to SPLIT_LEVELS times."""
    fx, fy = scale
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    px_area = work_gsd * work_gsd
    min_area = 3.0 * 1.4 * 0.5 / px_area
    max_area = 20.0 * 4.0 / px_area
    out: list[Detection] = []
    for label in range(1, count):
        area = int(stats[label, cv2.CC_STAT_AREA])
        if area < min_area or area > 6 * max_area:
            continue
        x0, y0 = int(stats[label, cv2.CC_STAT_LEFT]), int(stats[label, cv2.CC_STAT_TOP])
        w, h = int(stats[label, cv2.CC_STAT_WIDTH]), int(stats[label, cv2.CC_STAT_HEIGHT])
        x0, y0 = max(x0 - 1, 0), max(y0 - 1, 0)  # a one-pixel margin for partly covered edge pixels
        sub = labels[y0 : y0 + h + 2, x0 : x0 + w + 2] == label
        values = contrast[y0 : y0 + h + 2, x0 : x0 + w + 2]
        box = _moment_box(sub, values, x0, y0) if area <= max_area else None
        cls = None if box is None else classify(box[1][0] * work_gsd, box[1][1] * work_gsd)
        if box is None or cls is None:
            if depth < SPLIT_LEVELS:
                higher = threshold * SPLIT_FACTOR
                local = np.asarray(sub & (values > higher), dtype=np.uint8)
                origin = (offset[0] + x0, offset[1] + y0)
                out.extend(_components(local, values, noise, higher, work_gsd, scale, origin, depth + 1))
            continue
        (cx, cy), (length, width), angle = box
        cx, cy = cx + offset[0], cy + offset[1]
        peak = float(np.percentile(values[sub], 90))
        fill = min(1.0, float(np.clip(values[sub] / peak, 0, 1).sum()) / max(length * width, 1e-6))
        strength = min(1.0, max(0.0, (peak - threshold) / (3.0 * noise)))
        score = float(np.clip(0.2 + 0.5 * strength + 0.3 * fill, 0.0, 1.0) * min(1.0, fill / 0.5))
        points = cv2.boxPoints(((cx, cy), (length, width), angle))
        corners = tuple(((float(x) + 0.5) * fx - 0.5, (float(y) + 0.5) * fy - 0.5) for x, y in points)
        out.append(Detection(corners=corners, cls=cls, score=round(score, 4)))
    return out
