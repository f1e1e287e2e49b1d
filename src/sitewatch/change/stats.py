"""Robust statistics the training-free detectors share: per-band scaling, smoothing, noise thresholds.

Each detector standardises a date by its own median and spread (so a change of gain or exposure
between dates is not change), and calls a pixel changed where its magnitude stands well beyond the
image's typical magnitude. One implementation here keeps the detectors comparable.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from scipy.special import expit
from skimage.filters import threshold_otsu

#: IQR of a standard normal: dividing by it makes the robust spread comparable to a std.
IQR_TO_STD = 1.349
#: MAD of a standard normal, for the same reason.
MAD_TO_STD = 1.4826


def band_stats(image: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per band of IMAGE ``(bands, rows, cols)``: median and robust std (IQR-based) over VALID.

    A flat band gets spread 0 (it carries no information on change).
    """
    stats = np.zeros((image.shape[0], 2), dtype=np.float64)
    for i, band in enumerate(image):
        q25, q50, q75 = np.percentile(band[valid], [25, 50, 75])
        spread = (q75 - q25) / IQR_TO_STD
        stats[i] = (q50, spread if math.isfinite(spread) and spread > 0 else 0.0)
    return stats


def standardise(image: np.ndarray, valid: np.ndarray, stats: np.ndarray, sigma: float) -> np.ndarray:
    """Per band: subtract the median, divide by the robust std (STATS), smooth by SIGMA px.

    Invalid pixels and flat bands come out 0.
    """
    out = np.zeros(image.shape, dtype=np.float32)
    for i, band in enumerate(image):
        centre, spread = stats[i]
        if spread <= 0:
            continue
        z = np.where(valid, (band - centre) / spread, 0.0).astype(np.float32)
        out[i] = smooth(z, sigma)
    return out


def smooth(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of SIGMA px, per band for a stack (OpenCV: several times faster than SciPy's)."""
    if sigma <= 0:
        return image
    if image.ndim == 3:
        return np.stack([smooth(band, sigma) for band in image])
    blurred: np.ndarray = cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT)
    return blurred


def noise_threshold(values: np.ndarray, k_mad: float, floor: float) -> float:
    """Noise level (median + K_MAD robust stds), FLOOR, or Otsu's threshold of VALUES: the highest.

    Otsu may only raise the noise level (where the magnitudes are clearly bimodal): alone, it
    assumes a changed class exists and would mark half of an unchanged pair.
    """
    median = float(np.median(values))
    spread = MAD_TO_STD * float(np.median(np.abs(values - median)))
    return max(median + k_mad * spread, floor, float(threshold_otsu(values)))


def magnitude_score(magnitude: np.ndarray, threshold: float, softness: float = 0.25) -> np.ndarray:
    """A 0–1 score from a change magnitude: 0.5 at THRESHOLD, about 0.98 at twice it (SOFTNESS 0.25).

    It ranks pixels as the magnitude does and agrees with the mask; it is not a calibrated probability.
    """
    score: np.ndarray = expit((magnitude - threshold) / (softness * threshold)).astype(np.float32)
    return score
