"""Change-vector analysis (CVA): the classic, training-free change detector.

Steps, and why each is there:

1. Each band of each date is normalised by its own median and interquartile range, so a change of
   illumination, exposure or sensor gain between dates (a linear change of the whole band) does not
   read as change.
2. Both dates are smoothed with a Gaussian whose width follows the GSD, so residual
   misregistration and speckle at the scale of a pixel do not read as change.
3. The change magnitude is the length of the per-pixel difference vector (RMS over bands), which
   works the same for one band, RGB or 13 Sentinel-2 bands.
4. The threshold is a noise level: a pixel changes where its magnitude is well beyond the image's
   typical magnitude (median + k·MAD), and never below an absolute floor. Otsu's threshold may only
   raise it (where the magnitudes are clearly bimodal, as with a little change in a busy scene):
   alone, Otsu assumes a changed class exists and would mark half of an unchanged pair.
5. Opening then closing (a disk whose radius follows the GSD) removes specks and fills pinholes,
   and regions under the minimum mapping unit are dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from sitewatch.change.base import ChangeDetector
from sitewatch.change.registry import register
from sitewatch.change.stats import band_stats, magnitude_score, noise_threshold, smooth, standardise


@dataclass(frozen=True)
class CvaSettings:
    """Tuning of :class:`Cva`, in metres where the GSD is known and in pixels where it is not.

    Tuned on the shared LEVIR-CD, SZTAKI and OSCD samples (pixel F1); see ``sitewatch eval change``.
    Opening/closing follows :mod:`sitewatch.change.morphology`, as for every detector.
    """

    smooth_m: float = 1.5  # Gaussian sigma before differencing, in metres
    smooth_px_max: float = 3.0  # ... at most this many pixels
    smooth_px_free: float = 1.5  # ... and this many pixels when the GSD is unknown
    magnitude_smooth_px: float = 1.0  # sigma applied to the magnitude, to join fragments of a change
    k_mad: float = 2.5  # threshold: median + k_mad robust standard deviations of the magnitude
    floor: float = 1.4  # ... and never below this magnitude (robust standard deviations of a band)


@dataclass(frozen=True)
class _Fitted:
    """What :meth:`Cva.fit` learns: per-band centre and spread of each date, and the threshold."""

    before: np.ndarray  # (bands, 2): median, robust std
    after: np.ndarray
    threshold: float


@register
class Cva(ChangeDetector):
    """Change-vector analysis with robust normalisation and a noise-level threshold."""

    name: ClassVar[str] = "cva"
    description: ClassVar[str] = "change-vector analysis (training-free, any bands)"
    rank: ClassVar[int] = 10
    #: Three sigmas of both Gaussians at their widest (3 px before differencing, 1 px after).
    context_px: ClassVar[int] = 12

    def __init__(self, settings: CvaSettings | None = None) -> None:
        self.settings = settings or CvaSettings()
        self._fitted: _Fitted | None = None

    def fit(self, before: np.ndarray, after: np.ndarray, valid: np.ndarray, gsd: float | None) -> None:
        """Per-band robust statistics of each date, then the noise-level threshold of the magnitude."""
        self._fitted = _Fitted(band_stats(before, valid), band_stats(after, valid), math.inf)
        magnitude = self._magnitude(before, after, valid, gsd)
        self._fitted = _Fitted(
            self._fitted.before,
            self._fitted.after,
            noise_threshold(magnitude[valid], self.settings.k_mad, self.settings.floor),
        )

    def score(self, before: np.ndarray, after: np.ndarray, valid: np.ndarray, gsd: float | None) -> np.ndarray:
        """0.5 at the threshold, about 0.98 at twice it.

        A score that ranks pixels as the magnitude does and agrees with the mask, not a calibrated
        probability.
        """
        if self._fitted is None:
            raise RuntimeError("Cva.score called before fit")
        threshold = self._fitted.threshold
        magnitude = self._magnitude(before, after, valid, gsd)
        probability = magnitude_score(magnitude, threshold)
        probability[~valid] = 0.0
        return probability

    def _magnitude(self, before: np.ndarray, after: np.ndarray, valid: np.ndarray, gsd: float | None) -> np.ndarray:
        """Smoothed RMS over bands of the normalised difference."""
        assert self._fitted is not None
        sigma = self._smoothing(gsd)
        a = standardise(before, valid, self._fitted.before, sigma)
        b = standardise(after, valid, self._fitted.after, sigma)
        magnitude = np.sqrt(np.mean(np.square(a - b), axis=0))
        return smooth(magnitude, self.settings.magnitude_smooth_px)

    def _smoothing(self, gsd: float | None) -> float:
        """Smoothing sigma in pixels for GSD."""
        s = self.settings
        return s.smooth_px_free if gsd is None else min(s.smooth_m / gsd, s.smooth_px_max)
