"""Quality masks shared by ingest (flags per observation) and analysis (pixels left out).

A first screen: thick cloud in 8-bit imagery is bright and grey in every visible band. The
alignment issue replaces this with spectral cloud, haze and shadow masks and sensor-provided masks.
"""

from __future__ import annotations

import numpy as np

#: Darkest band value of a thick cloud pixel in 8-bit imagery.
CLOUD_MIN_DN = 200
#: Largest spread between bands of a cloud pixel (clouds are grey or white).
CLOUD_MAX_SPREAD_DN = 30
#: An observation with more cloud-like pixels than this is flagged ``cloudy`` and left out.
CLOUDY_FRACTION = 0.3
#: Below this share of cloud-like pixels an image is taken as clear (bright roofs, not cloud).
CLOUD_PRESENT_FRACTION = 0.05


def cloud_like(pixels: np.ndarray, valid: np.ndarray, dtype: str) -> np.ndarray:
    """Bool ``(rows, cols)``: valid pixels of ``(bands, rows, cols)`` PIXELS that look like thick cloud.

    Only 8-bit imagery with at least three bands is screened; anything else gets an empty mask.
    """
    if dtype != "uint8" or pixels.shape[0] < 3:
        return np.zeros(valid.shape, bool)
    rgb = pixels[:3]
    bright = rgb.min(axis=0) > CLOUD_MIN_DN
    grey = (rgb.max(axis=0).astype(np.int16) - rgb.min(axis=0)) < CLOUD_MAX_SPREAD_DN
    result: np.ndarray = bright & grey & valid
    return result


def cloud_mask(pixels: np.ndarray, valid: np.ndarray, dtype: str) -> np.ndarray:
    """Cloud-like pixels to leave out of a comparison, only where the image holds real cloud.

    White roofs and bright concrete pass the bright-and-grey test too; a clear image has few such
    pixels, so the mask is applied only when they cover at least :data:`CLOUD_PRESENT_FRACTION`.
    """
    cloud = cloud_like(pixels, valid, dtype)
    if cloud.sum() < CLOUD_PRESENT_FRACTION * max(1, int(valid.sum())):
        return np.zeros(valid.shape, bool)
    return cloud


def cloud_fraction(pixels: np.ndarray, valid: np.ndarray, dtype: str) -> float:
    """Share of the valid pixels that look like thick cloud."""
    return float(cloud_like(pixels, valid, dtype).sum() / max(1, int(valid.sum())))
