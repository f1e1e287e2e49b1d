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
import warnings
from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np
from scipy.special import expit
from skimage.filters import threshold_otsu

from sitewatch.change.base import ChangeDetector, ChangeResult, min_mapping_unit_px
from sitewatch.change.registry import register
from sitewatch.errors import GsdEstimatedWarning

#: IQR of a standard normal: dividing by it makes the robust spread comparable to a std.
_IQR_TO_STD = 1.349
#: MAD of a standard normal, for the same reason.
_MAD_TO_STD = 1.4826


@dataclass(frozen=True)
class CvaSettings:
    """Tuning of :class:`Cva`, in metres where the GSD is known and in pixels where it is not.

    Tuned on the shared LEVIR-CD, SZTAKI and OSCD samples (pixel F1); see ``sitewatch eval change``.
    """

    smooth_m: float = 1.5  # Gaussian sigma before differencing, in metres
    smooth_px_max: float = 3.0  # ... at most this many pixels
    smooth_px_free: float = 1.5  # ... and this many pixels when the GSD is unknown
    magnitude_smooth_px: float = 1.0  # sigma applied to the magnitude, to join fragments of a change
    k_mad: float = 2.5  # threshold: median + k_mad robust standard deviations of the magnitude
    floor: float = 1.4  # ... and never below this magnitude (robust standard deviations of a band)
    morph_m: float = 3.0  # opening/closing disk radius in metres
    morph_px_range: tuple[int, int] = (1, 3)  # ... clipped to this many pixels
    morph_px_free: int = 2  # ... and this many pixels when the GSD is unknown


@register
class Cva(ChangeDetector):
    """Change-vector analysis with robust normalisation and a noise-level threshold."""

    name: ClassVar[str] = "cva"
    description: ClassVar[str] = "change-vector analysis (training-free, any bands)"

    def __init__(self, settings: CvaSettings | None = None) -> None:
        self.settings = settings or CvaSettings()

    def detect(
        self,
        before: np.ndarray,
        after: np.ndarray,
        valid: np.ndarray | None,
        gsd: float | None,
    ) -> ChangeResult:
        """Find what changed from BEFORE to AFTER (see the module docstring for the steps)."""
        if before.shape != after.shape:
            raise ValueError(f"before {before.shape} and after {after.shape} differ in shape")
        s = self.settings
        valid = np.ones(before.shape[1:], dtype=bool) if valid is None else valid
        smooth, radius = self._scales(gsd)
        mmu = min_mapping_unit_px(gsd)
        if gsd is None:
            warnings.warn(
                f"GSD unknown (no georeference and no --gsd): {self.name} used GSD-free settings "
                f"(smoothing {smooth:g} px, clean-up radius {radius} px, minimum change {mmu} px)",
                GsdEstimatedWarning,
                stacklevel=2,
            )
        if not valid.any():
            zeros = np.zeros(before.shape[1:], dtype=np.float32)
            return ChangeResult(probability=zeros, mask=zeros.astype(bool))

        a = _normalise(before, valid, smooth)
        b = _normalise(after, valid, smooth)
        magnitude = np.sqrt(np.mean(np.square(a - b), axis=0))
        magnitude = _smooth(magnitude, s.magnitude_smooth_px)
        threshold = self._threshold(magnitude[valid])
        # 0.5 at the threshold, about 0.98 at twice it: a score that ranks pixels as the magnitude
        # does and agrees with the mask, not a calibrated probability.
        probability = expit((magnitude - threshold) / (0.25 * threshold)).astype(np.float32)
        probability[~valid] = 0.0
        mask = _clean(probability >= 0.5, radius, mmu) & valid
        return ChangeResult(probability=probability, mask=mask)

    def _scales(self, gsd: float | None) -> tuple[float, int]:
        """Smoothing sigma and morphology radius in pixels for GSD."""
        s = self.settings
        if gsd is None:
            return s.smooth_px_free, s.morph_px_free
        smooth = min(s.smooth_m / gsd, s.smooth_px_max)
        radius = min(max(round(s.morph_m / gsd), s.morph_px_range[0]), s.morph_px_range[1])
        return smooth, radius

    def _threshold(self, values: np.ndarray) -> float:
        """Noise level (median + k·MAD), the absolute floor, or Otsu's threshold: the highest."""
        median = float(np.median(values))
        spread = _MAD_TO_STD * float(np.median(np.abs(values - median)))
        return max(median + self.settings.k_mad * spread, self.settings.floor, float(threshold_otsu(values)))


def _normalise(image: np.ndarray, valid: np.ndarray, sigma: float) -> np.ndarray:
    """Per band: subtract the median, divide by the robust std (over VALID), smooth by SIGMA px."""
    out = np.zeros(image.shape, dtype=np.float32)
    for i, band in enumerate(image):
        q25, q50, q75 = np.percentile(band[valid], [25, 50, 75])
        spread = (q75 - q25) / _IQR_TO_STD
        if not math.isfinite(spread) or spread <= 0:
            continue  # a flat band carries no information on change
        z = np.where(valid, (band - q50) / spread, 0.0).astype(np.float32)
        out[i] = _smooth(z, sigma)
    return out


def _smooth(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of SIGMA px (OpenCV: several times faster than SciPy's on large images)."""
    if sigma <= 0:
        return image
    blurred: np.ndarray = cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT)
    return blurred


def _clean(mask: np.ndarray, radius: int, min_pixels: int) -> np.ndarray:
    """Opening then closing with a disk of RADIUS px; drop regions under MIN_PIXELS (8-connected)."""
    m: np.ndarray = mask.astype(np.uint8)
    if radius > 0:
        disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        m = cv2.morphologyEx(m, cv2.MORPH_OPEN, disk)
        m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, disk)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_pixels
    keep[0] = False  # background
    result: np.ndarray = keep[labels] if count > 1 else np.zeros(mask.shape, dtype=bool)
    return result
