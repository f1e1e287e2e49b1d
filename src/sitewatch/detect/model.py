"""The learned object detector: oriented vehicles and containers from one RGB tile, via ONNX Runtime.

The network (``sitewatch.train.detect``) is CenterNet in spirit (Zhou et al., 2019, "Objects as
Points") on the EfficientNet-Lite0 encoder: a heatmap per class whose peaks are object centres, and
at each centre the sub-cell offset, log length and width, and the heading as (cos 2θ, sin 2θ), so a
box and the same box turned by 180° are one target. Everything is predicted at stride 2 of a
0.5 m working grid (1 m cells): cars parked side by side are about 2.5 m apart.

Decoding is a 3x3 maximum filter on the heatmap (no anchors, no learned NMS); the sliced runner
removes what neighbouring slices both report.
"""

from __future__ import annotations

import math
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from sitewatch.detect.base import CONTAINER, LARGE, SMALL, ObjectDetector, register
from sitewatch.detect.boxes import Detection, box_corners

if TYPE_CHECKING:
    from sitewatch.models import ModelCard

#: Name of the shipped model (``sitewatch.models.find`` finds it by this name).
MODEL_NAME = "vehicle-detector"
#: Classes in the order of the heatmap's channels.
MODEL_CLASSES: tuple[str, ...] = (SMALL, LARGE, CONTAINER)
#: Metres per pixel the network was trained at.
MODEL_GSD = 0.5
#: Output stride of the heatmap and box maps.
OUTPUT_STRIDE = 2
#: Input sides must be multiples of this (the encoder's deepest stride).
INPUT_MULTIPLE = 16
#: Peaks under this heatmap score are not decoded: below it the heatmap is texture, not objects.
DECODE_FLOOR = 0.1
#: At most this many objects a tile (a 1024² tile at 0.5 m is 26 ha; a full car park holds ~40 a
#: hectare), so a pathological tile cannot flood the merge.
MAX_PEAKS = 4000
#: ImageNet statistics the encoder was trained with, per RGB channel on 0-1 data.
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)[:, None, None]
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)[:, None, None]
#: Terms of the shipped model: those of its most restrictive training data (see its model card).
TERMS = "academic research only, no commercial use (trained on DOTA samples: academic use only)"


def normalise(rgb: np.ndarray) -> np.ndarray:
    """``(3, H, W)`` RGB on 0-1 to the encoder's ImageNet standardisation (training uses this too)."""
    out: np.ndarray = ((rgb - MEAN) / STD).astype(np.float32)
    return out


def decode(
    heatmap: np.ndarray, boxes: np.ndarray, floor: float = DECODE_FLOOR, limit: int = MAX_PEAKS
) -> list[Detection]:
    """Detections from one tile's ``(C, h, w)`` HEATMAP (probabilities) and ``(6, h, w)`` BOXES.

    Peaks are taken on the best class of each cell (one object, one class: a truck is not also
    reported as a car), at most LIMIT of them, best first. Box channels: offset x, offset y (within
    the cell, 0-1), log length, log width (working pixels), cos 2θ, sin 2θ. Corners come out in
    working pixels of the tile.
    """
    best = heatmap.max(axis=0)
    classes = heatmap.argmax(axis=0)
    peaks = (best >= floor) & (best >= cv2.dilate(best, np.ones((3, 3), np.uint8)))
    ys, xs = np.nonzero(peaks)
    order = np.argsort(-best[ys, xs], kind="stable")[:limit]
    found: list[Detection] = []
    for y, x in zip(ys[order], xs[order], strict=True):
        dx, dy, log_l, log_w, c2, s2 = (float(v) for v in boxes[:, y, x])
        u = (x + dx) * OUTPUT_STRIDE - 0.5
        v = (y + dy) * OUTPUT_STRIDE - 0.5
        length, width = math.exp(min(log_l, 6.0)), math.exp(min(log_w, 6.0))
        angle = 0.5 * math.atan2(s2, c2)
        corners = box_corners(u, v, max(length, width), min(length, width), angle)
        found.append(Detection(corners, MODEL_CLASSES[int(classes[y, x])], round(float(best[y, x]), 4)))
    return found


@register
class LearnedDetector(ObjectDetector):
    """The shipped network (``--detector learned``): small and large vehicles, and containers."""

    name = "learned"
    classes = MODEL_CLASSES
    work_gsd = MODEL_GSD
    max_gsd = 1.2
    context_px = 48
    terms = TERMS

    @classmethod
    def available(cls, models: Path | None = None) -> bool:
        """Whether the model file is installed (in MODELS, else in the package)."""
        from sitewatch.errors import SitewatchError
        from sitewatch.models import find

        try:
            find(MODEL_NAME, models)
        except SitewatchError:  # missing, or its metadata unreadable: not usable
            return False
        return True

    @cached_property
    def card(self) -> ModelCard:
        """The model file and its metadata."""
        from sitewatch.models import find

        return find(MODEL_NAME, self.models)

    def operating_score(self) -> float:
        """The score chosen on held-out images when the model was trained (best F1), else the default."""
        return float(self.card.metadata.get("operating_score", super().operating_score()))

    @cached_property
    def _session(self) -> Any:
        from sitewatch.models import load_session

        return load_session(self.card)

    def detect_tile(self, rgb: np.ndarray) -> list[Detection]:
        """Objects in one tile of RGB (0-1) at the working GSD, in the tile's pixels."""
        _, rows, cols = rgb.shape
        pad_rows, pad_cols = -rows % INPUT_MULTIPLE, -cols % INPUT_MULTIPLE
        image = normalise(rgb)
        if pad_rows or pad_cols:
            image = np.pad(image, ((0, 0), (0, pad_rows), (0, pad_cols)), mode="reflect")
        heatmap, boxes = self._session.run(None, {"image": image[np.newaxis]})
        found = decode(heatmap[0], boxes[0])
        return [d for d in found if d.centre[0] < cols and d.centre[1] < rows]
