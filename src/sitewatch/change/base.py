"""What every change detector takes and returns, and the scale rules they share.

A detector compares two co-registered images on one grid. It is a small named class (see
``registry.py``), so a new method is one new file.

A detection runs in three steps, so that one detector serves a 512-pixel chip and a 10,000-pixel
scene alike (``sitewatch.change.tiled`` streams the large ones):

1. :meth:`ChangeDetector.fit` learns what must be global: per-band statistics, a noise level. It
   sees the whole pair, or for a large scene a mosaic of full-resolution sample windows.
2. :meth:`ChangeDetector.score` maps a tile to a change probability, using only what ``fit``
   learnt and the tile itself (plus :attr:`ChangeDetector.context_px` pixels of margin).
3. :meth:`ChangeDetector.decide` turns probability into a mask with local operations only
   (threshold, opening, closing); regions under the minimum mapping unit are dropped last, by
   :meth:`ChangeDetector.detect` or, for tiled runs, when the regions are vectorised.
"""

from __future__ import annotations

import math
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from sitewatch.errors import GsdEstimatedWarning

if TYPE_CHECKING:
    import numpy as np  # annotations only: the CLI imports this module at start, for --help

#: Smallest change worth mapping where the GSD is known: about a shed or two parked cars.
MIN_MAPPING_UNIT_M2 = 20.0
#: A change must still span a few pixels, however coarse the GSD, or noise reads as change.
MIN_MAPPING_UNIT_PX = 2
#: Without a GSD the unit is set in pixels only (no way to know what a pixel covers).
GSD_FREE_MAPPING_UNIT_PX = 12


def min_mapping_unit_px(gsd: float | None) -> int:
    """The smallest change region, in pixels, at GSD metres (``None``: GSD unknown)."""
    if gsd is None:
        return GSD_FREE_MAPPING_UNIT_PX
    return max(MIN_MAPPING_UNIT_PX, math.ceil(MIN_MAPPING_UNIT_M2 / (gsd * gsd)))


@dataclass(frozen=True)
class ChangeResult:
    """A detector's answer on the pair's grid.

    Attributes:
        probability: float32 ``(rows, cols)`` in 0–1, the detector's belief that a pixel changed.
        mask: bool ``(rows, cols)``, the changed pixels after thresholding and clean-up.
    """

    probability: np.ndarray
    mask: np.ndarray


class ChangeDetector(ABC):
    """A change detection method, registered by ``name``; ``--detector`` lists them.

    The class attributes say where the method is valid, so the default pipeline can pick the best
    one for the data (:func:`sitewatch.change.registry.choose`).
    """

    name: ClassVar[str]
    description: ClassVar[str]
    #: Bands the method reads: ``"any"`` (every band given) or ``"rgb"`` (red, green, blue, in that
    #: order; callers reduce multispectral input first, see ``sitewatch.io.bands.rgb_indices``).
    bands: ClassVar[str] = "any"
    #: GSD range in metres where the method is valid (outside it, input is resampled or refused).
    gsd_range: ClassVar[tuple[float, float]] = (0.0, math.inf)
    #: Preference in the default choice: the valid detector with the highest rank wins.
    rank: ClassVar[int] = 0
    #: Pixels of margin a tile needs on every side for its scores to equal the untiled ones.
    context_px: ClassVar[int] = 16
    #: Terms the method's output carries (a trained model carries its training data's terms).
    terms: ClassVar[str] = "Apache-2.0 (sitewatch code; no training data)"

    @classmethod
    def available(cls) -> bool:
        """Whether the method can run in this install (a learned one needs its model file)."""
        return True

    def fit(self, before: np.ndarray, after: np.ndarray, valid: np.ndarray, gsd: float | None) -> None:  # noqa: B027
        """Learn the pair's global statistics; the default learns nothing.

        Args: as :meth:`score`; for a large scene the arrays are a mosaic of sample windows.
        """

    @abstractmethod
    def score(self, before: np.ndarray, after: np.ndarray, valid: np.ndarray, gsd: float | None) -> np.ndarray:
        """Change probability of each pixel of a tile, float32 ``(rows, cols)`` in 0–1.

        Args:
            before: float32 ``(bands, rows, cols)``.
            after: float32 ``(bands, rows, cols)``, same shape and grid as BEFORE.
            valid: bool ``(rows, cols)``, pixels both images cover (others score 0).
            gsd: ground sample distance in metres, or ``None`` when unknown.
        """

    def decide(self, probability: np.ndarray, valid: np.ndarray, gsd: float | None) -> np.ndarray:
        """Changed pixels: probability at least one half, opened and closed at the GSD's scale."""
        from sitewatch.change.morphology import clean_radius_px, open_close

        mask: np.ndarray = open_close(probability >= 0.5, clean_radius_px(gsd)) & valid
        return mask

    def detect(
        self,
        before: np.ndarray,
        after: np.ndarray,
        valid: np.ndarray | None,
        gsd: float | None,
    ) -> ChangeResult:
        """Find what changed from BEFORE to AFTER, whole pair in memory: fit, score, decide, MMU.

        Args:
            before: float32 ``(bands, rows, cols)``.
            after: float32 ``(bands, rows, cols)``, same shape and grid as BEFORE.
            valid: bool ``(rows, cols)``, pixels both images cover; ``None`` means all.
            gsd: ground sample distance in metres, or ``None`` when unknown: the detector then
                uses GSD-free settings and says so with a ``GsdEstimatedWarning``.
        """
        import numpy as np

        from sitewatch.change.morphology import drop_small

        if before.shape != after.shape:
            raise ValueError(f"before {before.shape} and after {after.shape} differ in shape")
        valid = np.ones(before.shape[1:], dtype=bool) if valid is None else valid
        warn_if_gsd_unknown(self.name, gsd)
        if not valid.any():
            zeros = np.zeros(before.shape[1:], dtype=np.float32)
            return ChangeResult(probability=zeros, mask=zeros.astype(bool))
        self.fit(before, after, valid, gsd)
        probability = np.where(valid, self.score(before, after, valid, gsd), 0.0).astype(np.float32)
        mask = drop_small(self.decide(probability, valid, gsd), min_mapping_unit_px(gsd))
        return ChangeResult(probability=probability, mask=mask)


def rgb_input(image: np.ndarray, detector: str) -> np.ndarray:
    """IMAGE as red, green, blue for an RGB detector: three bands as given (callers reduce
    multispectral data first, see :meth:`sitewatch.change.pair.ImagePair.as_rgb`), a full Sentinel-2
    stack's B04, B03, B02, or one band repeated (panchromatic).

    Raises:
        ValueError: For any other band count.
    """
    import numpy as np

    from sitewatch.io.bands import S2_BANDS

    if image.shape[0] == 3:
        return image
    if image.shape[0] == len(S2_BANDS):
        return image[[S2_BANDS.index(name) for name in ("B04", "B03", "B02")]]
    if image.shape[0] == 1:
        return np.repeat(image, 3, axis=0)
    raise ValueError(f"{detector} needs red, green and blue bands, got {image.shape[0]} band(s)")


def warn_if_gsd_unknown(detector: str, gsd: float | None) -> None:
    """Say, once per run, that DETECTOR works in pixels because the GSD is unknown."""
    if gsd is None:
        warnings.warn(
            f"GSD unknown (no georeference and no --gsd): {detector} used GSD-free settings "
            f"(minimum change {min_mapping_unit_px(None)} px)",
            GsdEstimatedWarning,
            stacklevel=3,
        )
