"""What every change detector takes and returns, and the scale rules they share.

A detector compares two co-registered images on one grid. It is a small named class (see
``registry.py``), so a new method is one new file.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

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
    """A change detection method, registered by ``name``; ``--detector`` lists them."""

    name: ClassVar[str]
    description: ClassVar[str]

    @abstractmethod
    def detect(
        self,
        before: np.ndarray,
        after: np.ndarray,
        valid: np.ndarray | None,
        gsd: float | None,
    ) -> ChangeResult:
        """Find what changed from BEFORE to AFTER.

        Args:
            before: float32 ``(bands, rows, cols)``.
            after: float32 ``(bands, rows, cols)``, same shape and grid as BEFORE.
            valid: bool ``(rows, cols)``, pixels both images cover; ``None`` means all.
            gsd: ground sample distance in metres, or ``None`` when unknown: the detector must
                then use GSD-free settings and say so with a ``GsdEstimatedWarning``.
        """
