"""Mask clean-up shared by every detector: opening/closing at the GSD's scale, minimum mapping unit."""

from __future__ import annotations

import cv2
import numpy as np

#: Opening/closing disk radius in metres where the GSD is known ...
CLEAN_RADIUS_M = 3.0
#: ... clipped to this many pixels (a wider disk erases small buildings at 0.3 m) ...
CLEAN_RADIUS_PX = (1, 3)
#: ... and this many pixels when the GSD is unknown.
CLEAN_RADIUS_PX_FREE = 2


def clean_radius_px(gsd: float | None) -> int:
    """Opening/closing radius in pixels at GSD metres (``None``: unknown)."""
    if gsd is None:
        return CLEAN_RADIUS_PX_FREE
    return min(max(round(CLEAN_RADIUS_M / gsd), CLEAN_RADIUS_PX[0]), CLEAN_RADIUS_PX[1])


def open_close(mask: np.ndarray, radius: int) -> np.ndarray:
    """Opening then closing with a disk of RADIUS px: specks go, pinholes fill."""
    m: np.ndarray = mask.astype(np.uint8)
    if radius > 0:
        disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        m = cv2.morphologyEx(m, cv2.MORPH_OPEN, disk)
        m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, disk)
    return m.astype(bool)


def drop_small(mask: np.ndarray, min_pixels: int) -> np.ndarray:
    """MASK without its 8-connected regions under MIN_PIXELS."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros(mask.shape, dtype=bool)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_pixels
    keep[0] = False  # background
    result: np.ndarray = keep[labels]
    return result
