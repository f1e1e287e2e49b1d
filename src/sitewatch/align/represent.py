"""One band that two images of one place share, so that they can be matched.

Phase correlation and ECC compare one band with one band, but images of one site differ in bands,
sensor, dtype, gain and haze. Each image is therefore reduced to a common representation first:

* ``luminance``: the mean of the bands, robustly standardised (median 0, scaled by the MAD). Enough
  when both images have the same bands: gain, offset and haze (an additive offset with a loss of
  contrast) change only the level and the scale, which standardisation and the matchers' own
  normalisation remove.
* ``gradient``: the gradient magnitude of the smoothed, standardised luminance. Across sensors a band
  can invert its contrast (vegetation is dark in red, bright in near infrared) or mix other bands;
  edges stay where they are, so their magnitude matches where brightness does not.

No-data must not make a peak of its own: invalid pixels get the image's median level (0 after
standardisation), and the valid area is tapered to that level over a few pixels, so the border of
the data does not dominate a correlation that is meant to match content.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

Representation = Literal["luminance", "gradient"]

#: Standardisation statistics come from at most this many pixels (a regular subsample).
STATS_SAMPLE_PX = 1_000_000
#: The MAD of a Gaussian is this fraction of its standard deviation.
MAD_TO_SIGMA = 1.4826
#: Gaussian smoothing (px) before the gradient, so that noise does not dominate the edges.
GRADIENT_SIGMA = 1.0
#: Texture is measured as the spread of a difference of Gaussians with these sigmas (px): it keeps
#: structure a few pixels across and drops both noise and smooth ramps (which fix no position).
TEXTURE_SIGMAS = (1.0, 3.0)
#: Spread of the difference of Gaussians of unit white noise (so texture can be given in noise units).
DOG_NOISE_GAIN = 0.238


@dataclass(frozen=True)
class Stats:
    """Robust level, scale and noise of one image's luminance, in its own units.

    Attributes:
        centre: median of the valid pixels.
        scale: MAD of the valid pixels as a standard deviation (never 0: at least ``tiny``).
        noise: standard deviation of the pixel noise, from the finest diagonal Haar detail (the
            estimate of Donoho and Johnstone, which edges barely disturb); 0 for noise-free images.
        tiny: a level below which differences are rounding, not signal.
    """

    centre: float
    scale: float
    noise: float
    tiny: float


def luminance(image: np.ndarray) -> np.ndarray:
    """float32 ``(rows, cols)``: the mean of the bands of ``(bands, rows, cols)`` IMAGE (2-D as is)."""
    if image.ndim == 2:
        return np.asarray(image, dtype=np.float32)
    if image.ndim != 3:
        raise ValueError(f"expected (rows, cols) or (bands, rows, cols), got shape {image.shape}")
    if image.shape[0] == 1:
        return np.asarray(image[0], dtype=np.float32)
    mean: np.ndarray = image.mean(axis=0, dtype=np.float32)
    return mean


def choose(reference: np.ndarray, moving: np.ndarray) -> Representation:
    """``luminance`` when both images have the same bands and dtype, else ``gradient``.

    The same band count and dtype is taken to mean the same sensor (or at least the same kind of
    product); anything else (one band against RGB, 16-bit against 8-bit) may differ in contrast.
    """
    bands = (reference.shape[0] if reference.ndim == 3 else 1, moving.shape[0] if moving.ndim == 3 else 1)
    same = bands[0] == bands[1] and reference.dtype == moving.dtype
    return "luminance" if same else "gradient"


def robust_stats(lum: np.ndarray, valid: np.ndarray) -> Stats:
    """Median, MAD and noise of the valid pixels of LUM, from a regular subsample of large images."""
    step = max(1, int(np.sqrt(lum.size / STATS_SAMPLE_PX)))
    sample = lum[::step, ::step][valid[::step, ::step]]
    if sample.size == 0:
        return Stats(0.0, 1.0, 0.0, 1e-6)
    centre = float(np.median(sample))
    tiny = 1e-6 * max(1.0, abs(centre), float(np.max(np.abs(sample))))
    scale = max(MAD_TO_SIGMA * float(np.median(np.abs(sample - centre))), tiny)
    return Stats(centre, scale, _noise(lum, valid, STATS_SAMPLE_PX), tiny)


def _noise(lum: np.ndarray, valid: np.ndarray, budget: int) -> float:
    """Noise sigma from the diagonal Haar detail of a central crop of about BUDGET pixels."""
    side = int(np.sqrt(budget))
    rows, cols = lum.shape
    top, left = max(0, (rows - side) // 2), max(0, (cols - side) // 2)
    crop = lum[top : top + side, left : left + side]
    ok = valid[top : top + side, left : left + side]
    rows, cols = (crop.shape[0] // 2) * 2, (crop.shape[1] // 2) * 2
    if rows == 0 or cols == 0:
        return 0.0
    a, b = crop[0:rows:2, 0:cols:2], crop[0:rows:2, 1:cols:2]
    c, d = crop[1:rows:2, 0:cols:2], crop[1:rows:2, 1:cols:2]
    blocks = ok[0:rows:2, 0:cols:2] & ok[0:rows:2, 1:cols:2] & ok[1:rows:2, 0:cols:2] & ok[1:rows:2, 1:cols:2]
    detail = ((a - b - c + d) / 2)[blocks]
    if detail.size == 0:
        return 0.0
    return float(np.median(np.abs(detail)) * MAD_TO_SIGMA)


def texture(lum: np.ndarray, stats: Stats) -> float:
    """Structure in LUM (a window of one image) in units of its noise; 0 for a flat or ramp window.

    The spread of a difference of Gaussians, over what white noise of the image's level would give.
    Water, haze-flat desert and constant fill score below 1; anything a matcher can lock on to scores
    several times more.
    """
    fine = cv2.GaussianBlur(lum, (0, 0), TEXTURE_SIGMAS[0])
    coarse = cv2.GaussianBlur(lum, (0, 0), TEXTURE_SIGMAS[1])
    # the blurs reflect at the window's edges, which bends a ramp: only the interior counts
    edge = int(np.ceil(3 * TEXTURE_SIGMAS[1]))
    inner = (slice(edge, -edge), slice(edge, -edge)) if min(lum.shape) > 4 * edge else (slice(None), slice(None))
    spread = float(np.std((fine - coarse)[inner]))
    floor = max(DOG_NOISE_GAIN * stats.noise, stats.tiny)
    return spread / floor


def represent(
    lum: np.ndarray,
    valid: np.ndarray,
    stats: Stats,
    kind: Representation,
    *,
    taper_px: float = 0.0,
) -> np.ndarray:
    """float32 LUM in the common representation, invalid pixels at 0 (the median level).

    Args:
        lum: luminance of one image, or of a window of it.
        valid: bool, same shape: pixels with data (and not cloud).
        stats: the whole image's statistics (so every window of it is scaled alike).
        kind: ``luminance`` or ``gradient``.
        taper_px: when positive and some pixels are invalid, values fade to 0 over this many pixels
            inside the valid area, so the edge of the data is not an edge in the representation.
    """
    out = np.where(valid, (lum - np.float32(stats.centre)) / np.float32(stats.scale), np.float32(0.0))
    out = out.astype(np.float32, copy=False)
    some_invalid = not bool(valid.all())
    if kind == "gradient":
        smooth = cv2.GaussianBlur(out, (0, 0), GRADIENT_SIGMA)
        gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1, ksize=3)
        out = cv2.magnitude(gx, gy)
        inside = valid
        if some_invalid:
            # the smoothing and the Sobel reach 3 px: gradients that near the fill see the fill
            inside = cv2.erode(valid.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
        values = out[inside]
        level = np.float32(np.median(values)) if values.size else np.float32(0.0)
        out = np.where(inside, out - level, np.float32(0.0)).astype(np.float32)
        valid = inside
    if some_invalid and taper_px > 0:
        distance = cv2.distanceTransform(valid.astype(np.uint8), cv2.DIST_L2, 3)
        out *= np.minimum(distance / np.float32(taper_px), np.float32(1.0))
    return out
