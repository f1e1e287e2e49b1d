"""Measuring where REFERENCE's content lies in MOVING: one global shift, then windows (tie points).

Coordinates follow DESIGN.md's ``register`` contract: x is the column, y the row, the centre of the
top-left pixel is (0, 0), and a feature at reference pixel (x, y) appears in MOVING at the point a
:data:`PixelMap` gives for (x, y).

* The global shift is a phase correlation of the whole (downsampled) images, windowed by a Hann
  taper (without it the image borders, which do not wrap around, pull the peak towards zero).
* A tie point is one reference window matched in two steps: MOVING is first resampled around the
  window through the current estimate of the mapping, so only a small residual is left; phase
  correlation finds that residual to a fraction of a pixel, and ECC (OpenCV's enhanced correlation
  coefficient, which ignores gain and offset) refines it to about 0.02 px. Both must agree, and each
  window must have data, texture and a clear peak; the others are left out, not guessed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from sitewatch.align.represent import Representation, Stats, represent, robust_stats, texture

log = logging.getLogger(__name__)

#: Maps reference pixel coordinates (x, y arrays) to moving pixel coordinates.
PixelMap = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]

#: A window is measured only if at least this share of its pixels has data in both images.
MIN_WINDOW_VALID = 0.9
#: ... and both of its halves have at least this much texture (in noise units, see ``texture``).
MIN_TEXTURE = 3.0
#: Lowest phase-correlation peak (OpenCV's response, 0-1) taken as a match in a window.
MIN_RESPONSE = 0.05
#: Lowest ECC correlation coefficient taken as a match.
MIN_ECC = 0.3
#: Phase correlation and ECC must agree to this many pixels.
MAX_DISAGREEMENT_PX = 1.0
#: ECC stops after this many iterations, or when its correlation coefficient gains less than this.
ECC_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 1e-3)
#: Gaussian pre-smoothing of ECC (kernel size, px), which widens its basin and damps noise.
ECC_SMOOTHING = 5


@dataclass(frozen=True)
class Level:
    """One image at one scale: luminance, usable pixels (data and no cloud) and its statistics."""

    lum: np.ndarray  # float32 (rows, cols), invalid pixels at the median level
    valid: np.ndarray  # bool (rows, cols)
    mask: np.ndarray  # uint8 (rows, cols): 255 where valid, for resampling with OpenCV
    stats: Stats

    @classmethod
    def of(cls, lum: np.ndarray, valid: np.ndarray) -> Level:
        """LUM with its invalid pixels set to the median level (so that smoothing sees no spikes)."""
        stats = robust_stats(lum, valid)
        filled = lum if valid.all() else np.where(valid, lum, np.float32(stats.centre)).astype(np.float32)
        return cls(filled, valid, valid.astype(np.uint8) * np.uint8(255), stats)

    def downsampled(self, factor: int) -> Level:
        """Block averages of FACTOR x FACTOR pixels (a pixel is valid only if its whole block is).

        Coarse pixel i covers full pixels ``factor * i`` to ``factor * i + factor - 1``, so its
        centre is at ``factor * i + (factor - 1) / 2`` in full-resolution pixels.
        """
        rows, cols = (self.lum.shape[0] // factor), (self.lum.shape[1] // factor)
        size = (cols, rows)
        lum = cv2.resize(self.lum[: rows * factor, : cols * factor], size, interpolation=cv2.INTER_AREA)
        share = cv2.resize(
            self.valid[: rows * factor, : cols * factor].astype(np.float32), size, interpolation=cv2.INTER_AREA
        )
        return Level.of(lum, share > 0.999)


@dataclass(frozen=True)
class Measured:
    """Tie points found in one pass over the windows.

    Attributes:
        reference: ``(n, 2)`` window centres (x, y) in reference pixels.
        moving: ``(n, 2)`` where each centre's content lies in MOVING.
        quality: ``(n,)`` ECC correlation coefficients (0-1).
    """

    reference: np.ndarray
    moving: np.ndarray
    quality: np.ndarray

    @property
    def count(self) -> int:
        """Number of tie points."""
        return int(self.reference.shape[0])


def global_shift(reference: np.ndarray, moving: np.ndarray) -> tuple[float, float, float]:
    """``(dx, dy, peak)``: the translation of MOVING's content against REFERENCE's, and its peak.

    Both are representations (0 = median level); the smaller is padded with 0 to the larger's size.
    The peak is OpenCV's phase-correlation response (about 1 for identical content, near 0 for none).
    """
    rows = max(reference.shape[0], moving.shape[0])
    cols = max(reference.shape[1], moving.shape[1])
    a, b = _padded(reference, rows, cols), _padded(moving, rows, cols)
    (dx, dy), peak = cv2.phaseCorrelate(a, b, _hann(rows, cols))
    return float(dx), float(dy), float(peak)


def _padded(image: np.ndarray, rows: int, cols: int) -> np.ndarray:
    out = np.zeros((rows, cols), np.float32)
    out[: image.shape[0], : image.shape[1]] = image
    return out


@lru_cache(maxsize=16)
def _hann(rows: int, cols: int) -> np.ndarray:
    hann: np.ndarray = cv2.createHanningWindow((cols, rows), cv2.CV_32F)
    return hann


def window_origins(shape: tuple[int, int], size: int, per_axis: int) -> list[tuple[int, int]]:
    """Top-left corners ``(x0, y0)`` of a regular grid of SIZE windows over SHAPE (rows, cols).

    At most PER_AXIS windows along each axis, overlapping by at most half a window (neighbours
    then share pixels, and so errors: see :func:`sitewatch.align.fit.fit_model`'s SEPARATION);
    none when the image is smaller than one window.
    """
    rows, cols = shape
    if rows < size or cols < size:
        return []

    def starts(length: int) -> np.ndarray:
        count = min(per_axis, (length - size) // (size // 2) + 1)
        return np.unique(np.round(np.linspace(0, length - size, count)).astype(int))

    return [(int(x0), int(y0)) for y0 in starts(rows) for x0 in starts(cols)]


def measure(
    reference: Level,
    moving: Level,
    kind: Representation,
    mapping: PixelMap,
    origins: list[tuple[int, int]],
    size: int,
) -> Measured:
    """Match each window of REFERENCE in MOVING, starting from MAPPING; returns the tie points.

    Each window of MOVING is resampled through MAPPING less a constant offset φ (which puts its
    middle on whole pixels). The residual r found there means the feature at reference (x, y) lies
    at ``mapping(x + r_x, y + r_y) - φ`` in MOVING: that is the tie point of the window centre.
    """
    margin = size // 4
    span = np.arange(-margin, size + margin, dtype=np.float32)
    hann = _hann(size, size)
    ref_points: list[tuple[float, float]] = []
    mov_points: list[tuple[float, float]] = []
    quality: list[float] = []
    textured = 0
    for x0, y0 in origins:
        ref_ok = reference.valid[y0 : y0 + size, x0 : x0 + size]
        if ref_ok.mean() < MIN_WINDOW_VALID:
            continue
        ref_lum = reference.lum[y0 : y0 + size, x0 : x0 + size]
        # Shift the map so that it lands on whole pixels at the window's middle: where the estimate
        # is a translation, MOVING is then cut out rather than interpolated, and the interpolation
        # (whose error depends on the fractional offset) cannot bias the residual.
        mid_x, mid_y = mapping(np.array([x0 + size // 2], np.float64), np.array([y0 + size // 2], np.float64))
        frac_x, frac_y = float(mid_x[0] - np.round(mid_x[0])), float(mid_y[0] - np.round(mid_y[0]))
        grid_x, grid_y = np.meshgrid(span + x0, span + y0)
        map_x, map_y = mapping(grid_x, grid_y)
        map_x, map_y = (map_x - frac_x).astype(np.float32), (map_y - frac_y).astype(np.float32)
        mov_lum = cv2.remap(
            moving.lum, map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT, borderValue=moving.stats.centre
        )
        # 255 only where all four neighbours are valid: no pixel that borrowed from the fill
        mov_ok = cv2.remap(moving.mask, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT) == 255
        inner = (slice(margin, margin + size), slice(margin, margin + size))
        if mov_ok[inner].mean() < MIN_WINDOW_VALID:
            continue
        if min(texture(ref_lum, reference.stats), texture(mov_lum[inner], moving.stats)) < MIN_TEXTURE:
            continue
        textured += 1
        residual = _match(
            represent(ref_lum, ref_ok, reference.stats, kind),
            represent(mov_lum, mov_ok, moving.stats, kind),
            mov_ok,
            margin,
            hann,
        )
        if residual is None:
            continue
        rx, ry, cc = residual
        cx, cy = x0 + (size - 1) / 2, y0 + (size - 1) / 2
        mx, my = mapping(np.array([cx + rx]), np.array([cy + ry]))
        ref_points.append((cx, cy))
        mov_points.append((float(mx[0]) - frac_x, float(my[0]) - frac_y))
        quality.append(cc)
    log.debug("%d of %d windows textured, %d matched", textured, len(origins), len(ref_points))
    return Measured(
        np.array(ref_points, dtype=np.float64).reshape(-1, 2),
        np.array(mov_points, dtype=np.float64).reshape(-1, 2),
        np.array(quality, dtype=np.float64),
    )


def _match(
    ref: np.ndarray, mov: np.ndarray, mov_ok: np.ndarray, margin: int, hann: np.ndarray
) -> tuple[float, float, float] | None:
    """``(rx, ry, ecc)``: where REF's content lies in MOV (REF plus MARGIN on each side), or None."""
    size = ref.shape[0]
    inner = mov[margin : margin + size, margin : margin + size]
    (sx, sy), peak = cv2.phaseCorrelate(ref - ref.mean(), inner - inner.mean(), hann)
    if not peak >= MIN_RESPONSE or max(abs(sx), abs(sy)) > margin - 2:
        return None
    start = np.array([[1, 0, margin + sx], [0, 1, margin + sy]], dtype=np.float32)
    try:
        cc, warp = cv2.findTransformECC(
            ref, mov, start, cv2.MOTION_TRANSLATION, ECC_CRITERIA, mov_ok.astype(np.uint8), ECC_SMOOTHING
        )
    except cv2.error:  # ECC diverged (no correlation left): no tie point here
        return None
    rx, ry = float(warp[0, 2]) - margin, float(warp[1, 2]) - margin
    if cc < MIN_ECC or np.hypot(rx - sx, ry - sy) > MAX_DISAGREEMENT_PX or max(abs(rx), abs(ry)) > margin - 2:
        return None
    return rx, ry, float(cc)
