"""Structural change: where the local pattern of edges differs between dates, not the brightness.

Steps, and why each is there:

1. Each band of each date is standardised by its median and interquartile range (as in CVA), so a
   global change of gain or offset between dates does not read as change.
2. Gradients of each band are taken at a scale that follows the GSD (Gaussian derivative): edges of
   roofs, roads and walls, with pixel noise and sub-pixel misregistration smoothed away. A gradient
   ignores any offset, so a haze or exposure change that is locally uniform does not read either.
3. Over a Gaussian window, also set in metres, the dissimilarity of the two gradient fields is
   ``Σ|g₁ − g₂|² / (Σ|g₁|² + Σ|g₂|² + c)``, summed over bands: 0 where the same edges are there on
   both dates, 1 where they are unrelated, 2 where they are reversed. It is the contrast-structure
   term of SSIM applied to gradients, so a local change of contrast by a factor k only scores
   ``(1 − k)² / (1 + k²)`` (0.03 for 30 %). The constant ``c``, learnt in ``fit`` (the median edge
   energy), keeps flat ground on both dates at 0 instead of dividing noise by noise.
4. A window says whether the structure changed, not where: its response spreads a window's width
   beyond the changed object. So each pixel's dissimilarity is gated by its own difference between
   the standardised dates (full from :attr:`StructuralSettings.gate` times its median, less below):
   the gate only places the change; a change of illumination alone passes it but not step 3.
5. The threshold is a noise level of the dissimilarity (median + k·MAD), learnt in ``fit``, never
   below an absolute floor (a pair that differs only by noise has no scale of its own); Otsu's
   threshold may only raise it, as in CVA.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np

from sitewatch.change.base import ChangeDetector

# CVA's per-date standardisation and smoothing, shared so that both detectors see the same input.
from sitewatch.change.registry import register
from sitewatch.change.stats import band_stats, magnitude_score, noise_threshold, smooth


@dataclass(frozen=True)
class StructuralSettings:
    """Tuning of :class:`Structural`, in metres where the GSD is known and in pixels where it is not.

    Tuned on the shared LEVIR-CD, SZTAKI and OSCD samples (pixel F1, in-sample for these values):
    0.20, 0.37 and 0.24 against CVA's 0.18, 0.44 and 0.18: better on two, worse on one, so it ranks
    below CVA until a larger sample says otherwise.
    """

    gradient_m: float = 1.0  # Gaussian sigma of the derivative, in metres
    gradient_px: tuple[float, float] = (0.7, 2.0)  # ... clipped to this many pixels
    gradient_px_free: float = 2.0  # ... and this many pixels when the GSD is unknown
    window_m: float = 3.0  # Gaussian sigma of the comparison window, in metres
    window_px: tuple[float, float] = (1.5, 4.0)  # ... clipped to this many pixels
    window_px_free: float = 4.0  # ... and this many pixels when the GSD is unknown
    k_mad: float = 1.5  # threshold: median + k_mad robust standard deviations of the dissimilarity
    gate: float = 3.0  # the pixel's own difference passes in full from this many times its median
    floor: float = 0.3  # ... and never below this (1 is unrelated edges; binds on quiet pairs)


@dataclass(frozen=True)
class _Fitted:
    """What :meth:`Structural.fit` learns: per-band centre and spread of each date, the energy
    constant and the threshold of the dissimilarity."""

    before: np.ndarray  # (bands, 2): median, robust std
    after: np.ndarray
    energy: float
    difference: float  # median per-pixel difference of the standardised dates
    threshold: float


@register
class Structural(ChangeDetector):
    """Gradient-structure dissimilarity at the GSD's scale, with a noise-level threshold."""

    name: ClassVar[str] = "structural"
    description: ClassVar[str] = "gradient-structure difference (training-free, illumination-robust)"
    rank: ClassVar[int] = 5
    #: Three sigmas of the derivative and of the window at their widest, and the Sobel kernel.
    context_px: ClassVar[int] = 20

    def __init__(self, settings: StructuralSettings | None = None) -> None:
        self.settings = settings or StructuralSettings()
        self._fitted: _Fitted | None = None

    def fit(self, before: np.ndarray, after: np.ndarray, valid: np.ndarray, gsd: float | None) -> None:
        """Standardisation of each date, the median edge energy, then the threshold."""
        fitted = _Fitted(band_stats(before, valid), band_stats(after, valid), 0.0, 0.0, math.inf)
        difference, energy, change = self._sums(before, after, valid, gsd, fitted)
        constant = max(float(np.median(smooth(energy, self._scales(gsd)[1])[valid])), 1e-6)
        level = max(float(np.median(change[valid])), 1e-6)
        fitted = _Fitted(fitted.before, fitted.after, constant, level, math.inf)
        dissimilarity = self._dissimilarity(difference, energy, change, fitted, gsd)[valid]
        self._fitted = _Fitted(
            fitted.before,
            fitted.after,
            constant,
            level,
            noise_threshold(dissimilarity, self.settings.k_mad, self.settings.floor),
        )

    def score(self, before: np.ndarray, after: np.ndarray, valid: np.ndarray, gsd: float | None) -> np.ndarray:
        """0.5 at the threshold, about 0.98 at twice it (a ranking score that agrees with the mask)."""
        if self._fitted is None:
            raise RuntimeError("Structural.score called before fit")
        difference, energy, change = self._sums(before, after, valid, gsd, self._fitted)
        threshold = self._fitted.threshold
        dissimilarity = self._dissimilarity(difference, energy, change, self._fitted, gsd)
        probability = magnitude_score(dissimilarity, threshold)
        probability[~valid] = 0.0
        return probability

    def _sums(
        self, before: np.ndarray, after: np.ndarray, valid: np.ndarray, gsd: float | None, fitted: _Fitted
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per pixel, summed over the bands: ``|g₁ − g₂|²``, ``|g₁|² + |g₂|²`` and the standardised
        difference of the values (float32 ``(rows, cols)``)."""
        gradient = self._scales(gsd)[0]
        difference = np.zeros(before.shape[1:], np.float32)
        energy = np.zeros(before.shape[1:], np.float32)
        change = np.zeros(before.shape[1:], np.float32)
        for band in range(before.shape[0]):
            z1, z2 = (
                _standardised(before[band], valid, fitted.before[band]),
                _standardised(after[band], valid, fitted.after[band]),
            )
            gx1, gy1 = _gradient(z1, gradient)
            gx2, gy2 = _gradient(z2, gradient)
            difference += np.square(gx1 - gx2) + np.square(gy1 - gy2)
            energy += np.square(gx1) + np.square(gy1) + np.square(gx2) + np.square(gy2)
            change += np.square(z1 - z2)
        return difference, energy, np.sqrt(change)

    def _dissimilarity(
        self, difference: np.ndarray, energy: np.ndarray, change: np.ndarray, fitted: _Fitted, gsd: float | None
    ) -> np.ndarray:
        """The window's dissimilarity (whether), gated by the pixel's own difference (where)."""
        wide = smooth(difference, self._scales(gsd)[1]) / (smooth(energy, self._scales(gsd)[1]) + fitted.energy)
        gate = np.clip(change / (self.settings.gate * fitted.difference), 0.0, 1.0)
        result: np.ndarray = wide * gate
        return result

    def _scales(self, gsd: float | None) -> tuple[float, float]:
        """Derivative and window sigmas in pixels for GSD."""
        s = self.settings
        if gsd is None:
            return s.gradient_px_free, s.window_px_free
        gradient = min(max(s.gradient_m / gsd, s.gradient_px[0]), s.gradient_px[1])
        window = min(max(s.window_m / gsd, s.window_px[0]), s.window_px[1])
        return gradient, window


def _standardised(band: np.ndarray, valid: np.ndarray, stats: np.ndarray) -> np.ndarray:
    """BAND minus its median over its robust std (STATS); invalid pixels and flat bands are 0."""
    centre, spread = stats
    if spread <= 0:
        return np.zeros(band.shape, np.float32)
    z: np.ndarray = np.where(valid, (band - centre) / spread, 0.0).astype(np.float32)
    return z


def _gradient(z: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian-derivative gradient (x, y) of Z at SIGMA px."""
    z = smooth(z, sigma)
    gx: np.ndarray = cv2.Sobel(z, cv2.CV_32F, 1, 0, ksize=3, scale=0.125, borderType=cv2.BORDER_REFLECT)
    gy: np.ndarray = cv2.Sobel(z, cv2.CV_32F, 0, 1, ksize=3, scale=0.125, borderType=cv2.BORDER_REFLECT)
    return gx, gy
