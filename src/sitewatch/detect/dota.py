"""The DOTA label format: images with ``labelTxt`` files of oriented boxes, as DOTA publishes them.

A label line is ``x1 y1 x2 y2 x3 y3 x4 y4 class difficulty`` (corners in image pixels, in order
around the box); full images start with ``imagesource:`` and ``gsd:`` header lines. Files written by
the devkit mix CRLF and LF and integer and float coordinates; patches cut by its splitter carry no
header, mark objects cut by the border with difficulty 2 and can hold zero-area boxes. All of that is
read as it is: degenerate boxes are dropped, a GSD header outside :data:`GSD_RANGE_M` is treated
as missing (one DOTA image says 2.7e-06 m).
"""

from __future__ import annotations

import logging
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from sitewatch.detect.boxes import Corners
from sitewatch.errors import InputError

log = logging.getLogger(__name__)

#: Image suffixes paired with label files.
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
#: Plausible GSD headers, metres per pixel; anything else is a broken header.
GSD_RANGE_M = (0.02, 5.0)
#: Typical car length in metres: the GSD of an image without a usable header is estimated from it.
CAR_LENGTH_M = 4.6
#: GSD assumed for an image with neither a usable header nor cars (DOTA's Google Earth images).
FALLBACK_GSD_M = 0.15
#: Largest label file read (a hostile file must not fill memory).
MAX_LABEL_BYTES = 20 * 1024 * 1024


@dataclass(frozen=True)
class LabelledObject:
    """One labelled object: corners (image pixels), class, and DOTA's difficulty (0 = scored)."""

    corners: Corners
    cls: str
    difficulty: int

    @property
    def difficult(self) -> bool:
        """Whether the object is neither a hit nor a miss when scoring (difficulty 1, or 2: cut)."""
        return self.difficulty != 0

    def size_px(self) -> tuple[float, float]:
        """(length, width) in pixels, length the longer side."""
        (x0, y0), (x1, y1), (x2, y2) = self.corners[:3]
        a, b = math.hypot(x1 - x0, y1 - y0), math.hypot(x2 - x1, y2 - y1)
        return (max(a, b), min(a, b))


@dataclass(frozen=True)
class LabelledImage:
    """An image with its labels. ``gsd`` is None when the header is missing or implausible."""

    image_id: str
    image_path: Path
    label_path: Path
    gsd: float | None
    objects: tuple[LabelledObject, ...]


def _area(corners: Corners) -> float:
    """Shoelace area of a polygon."""
    total = 0.0
    for (x0, y0), (x1, y1) in zip(corners, corners[1:] + corners[:1], strict=True):
        total += x0 * y1 - x1 * y0
    return abs(total) / 2


def read_labels(path: Path) -> tuple[float | None, tuple[LabelledObject, ...]]:
    """The GSD header (None when missing or implausible) and the objects of one ``labelTxt`` file.

    Raises:
        InputError: If the file is too large or a line is neither a header nor a label.
    """
    if path.stat().st_size > MAX_LABEL_BYTES:
        raise InputError(path, f"label file over {MAX_LABEL_BYTES // 1024 // 1024} MB")
    gsd: float | None = None
    objects: list[LabelledObject] = []
    text = path.read_text(encoding="utf-8", errors="replace")
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        key, _, value = line.partition(":")
        if _ and key in ("imagesource", "gsd"):
            if key == "gsd":
                try:
                    found = float(value)
                except ValueError:
                    found = math.nan
                gsd = found if GSD_RANGE_M[0] <= found <= GSD_RANGE_M[1] else None
            continue
        parts = line.split()
        try:
            numbers = [float(v) for v in parts[:8]]
            difficulty = int(float(parts[9])) if len(parts) > 9 else 0
        except (ValueError, IndexError):
            raise InputError(path, f"line {number} is not a DOTA label: {line[:60]!r}") from None
        if len(parts) < 9 or not all(math.isfinite(v) for v in numbers):
            raise InputError(path, f"line {number} is not a DOTA label: {line[:60]!r}")
        corners = tuple((numbers[i], numbers[i + 1]) for i in range(0, 8, 2))
        if _area(corners) <= 0:
            continue
        objects.append(LabelledObject(corners, parts[8], difficulty))
    return gsd, tuple(objects)


def find_images(root: Path) -> list[LabelledImage]:
    """Every image with a label file under ROOT (``images/NAME.*`` beside ``labelTxt/NAME.txt``, any depth).

    Raises:
        InputError: If ROOT is not a folder or holds no labelled image.
    """
    if not root.is_dir():
        raise InputError(root, "not a folder")
    found = []
    for label_dir in sorted(p for p in root.rglob("labelTxt") if p.is_dir()):
        image_dir = label_dir.parent / "images"
        if not image_dir.is_dir():
            continue
        images = {p.stem: p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()}
        for label in sorted(label_dir.glob("*.txt")):
            if label.stem in images:
                gsd, objects = read_labels(label)
                found.append(LabelledImage(label.stem, images[label.stem], label, gsd, objects))
    if not found:
        raise InputError(root, "no DOTA images with labels (images/NAME.png beside labelTxt/NAME.txt)")
    return found


def estimate_gsd(image: LabelledImage) -> float:
    """IMAGE's GSD: its header where plausible, else from the median car length, else the fallback."""
    if image.gsd is not None:
        return image.gsd
    cars = [o.size_px()[0] for o in image.objects if o.cls == "small-vehicle" and not o.difficult]
    if len(cars) >= 5:
        gsd = CAR_LENGTH_M / statistics.median(cars)
        log.info("%s: no usable GSD header; %.3f m estimated from %d cars", image.image_id, gsd, len(cars))
        return gsd
    log.info("%s: no usable GSD header and no cars; %.2f m assumed", image.image_id, FALLBACK_GSD_M)
    return FALLBACK_GSD_M
