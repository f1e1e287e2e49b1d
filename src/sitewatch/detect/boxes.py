"""Oriented boxes: the one representation every object detector in sitewatch reports.

A box is four corners ``(x, y)`` in image pixel coordinates, in order around the box (the DOTA
label convention). Overlap between boxes is the area of intersection over union of the polygons
(shapely), so rotated boxes are compared as they are, never as their axis-aligned hulls.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from shapely.geometry import Polygon
from shapely.strtree import STRtree

Corners = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Detection:
    """One object: oriented box CORNERS (image pixels, in order around the box), class CLS, SCORE in [0, 1]."""

    corners: Corners
    cls: str
    score: float

    @property
    def polygon(self) -> Polygon:
        """The box as a shapely polygon (pixel coordinates)."""
        return Polygon(self.corners)

    @property
    def centre(self) -> tuple[float, float]:
        """Mean of the corners."""
        xs, ys = zip(*self.corners, strict=True)
        return (sum(xs) / len(xs), sum(ys) / len(ys))

    def size_px(self) -> tuple[float, float]:
        """(length, width) of the box in pixels, length the longer side."""
        (x0, y0), (x1, y1), (x2, y2) = self.corners[:3]
        a, b = math.hypot(x1 - x0, y1 - y0), math.hypot(x2 - x1, y2 - y1)
        return (max(a, b), min(a, b))

    def moved(self, dx: float, dy: float, scale_x: float = 1.0, scale_y: float = 1.0) -> Detection:
        """The detection with corners scaled (about the origin's pixel edge) then shifted by (DX, DY).

        Pixel centres sit at +0.5, so scaling maps pixel edges, not centres, onto each other.
        """
        corners = tuple(((x + 0.5) * scale_x - 0.5 + dx, (y + 0.5) * scale_y - 0.5 + dy) for x, y in self.corners)
        return Detection(corners, self.cls, self.score)


def box_corners(cx: float, cy: float, length: float, width: float, angle: float) -> Corners:
    """Corners of a LENGTH x WIDTH box centred on (CX, CY), its long axis at ANGLE radians from +x."""
    c, s = math.cos(angle), math.sin(angle)
    hl, hw = length / 2, width / 2
    offsets = ((hl, hw), (-hl, hw), (-hl, -hw), (hl, -hw))
    return tuple((cx + c * u - s * v, cy + s * u + c * v) for u, v in offsets)


def oriented_iou(a: Sequence[tuple[float, float]], b: Sequence[tuple[float, float]]) -> float:
    """Intersection over union of two polygons given by their corners (0 for degenerate ones)."""
    pa, pb = Polygon(a), Polygon(b)
    if not pa.is_valid:
        pa = pa.buffer(0)
    if not pb.is_valid:
        pb = pb.buffer(0)
    if pa.area <= 0 or pb.area <= 0:
        return 0.0
    inter = pa.intersection(pb).area
    union = pa.area + pb.area - inter
    return float(inter / union) if union > 0 else 0.0


def suppress(detections: Sequence[Detection], iou: float = 0.3, per_class: bool = False) -> list[Detection]:
    """Greedy non-maximum suppression on oriented IoU, best score first.

    With PER_CLASS false a box suppresses overlapping boxes of every class: one vehicle is one
    object, whichever class scored it best.
    """
    order = sorted(detections, key=lambda d: -d.score)
    if not order:
        return []
    polygons = [d.polygon for d in order]
    tree = STRtree(polygons)
    removed = np.zeros(len(order), dtype=bool)
    kept: list[Detection] = []
    for i, detection in enumerate(order):
        if removed[i]:
            continue
        kept.append(detection)
        for hit in tree.query(polygons[i]):
            j = int(hit)
            if j <= i or removed[j] or (per_class and order[j].cls != detection.cls):
                continue
            if oriented_iou(detection.corners, order[j].corners) > iou:
                removed[j] = True
    return kept
