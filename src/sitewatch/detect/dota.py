"""The DOTA label format: images with ``labelTxt`` files of oriented boxes, as DOTA publishes them.

A label line is ``x1 y1 x2 y2 x3 y3 x4 y4 class difficulty`` (corners in image pixels, in order
around the box; a missing difficulty is 0); full images start with ``imagesource:`` and ``gsd:``
header lines (any case, spaces around the colon, ``gsd:null`` where unknown). Files written by the
devkit mix CRLF and LF and integer and float coordinates; patches cut by its splitter carry no
header, mark objects cut by the border with difficulty 2 and can hold zero-area boxes. All of that is
read as it is: degenerate boxes are dropped, a GSD header outside :data:`GSD_RANGE_M` is treated
as missing (one DOTA image says 2.7e-06 m) and :func:`gsd_from_cars` stands in for it.
"""

from __future__ import annotations

import logging
import math
import re
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
#: Fewest labelled cars a GSD is estimated from (fewer: their median says little).
MIN_CARS = 5
#: GSD assumed for an image with neither a usable header nor cars (DOTA's Google Earth images).
FALLBACK_GSD_M = 0.15
#: Largest label file read (a hostile file must not fill memory).
MAX_LABEL_BYTES = 20 * 1024 * 1024
#: A header line, in any case and with spaces around the colon (as hand-edited files have them).
_HEADER = re.compile(r"^\s*(imagesource|gsd)\s*:(.*)$", re.IGNORECASE)
#: ``gsd:`` values that say "unknown" (DOTA writes ``gsd:null``): no header rather than a broken one.
_NO_GSD = ("", "null", "none")


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
class Labels:
    """A label file's content: ``gsd`` is None when the header is missing or implausible, and
    ``gsd_header`` keeps what the header said (None without one) so a report can say why."""

    gsd: float | None
    gsd_header: str | None
    objects: tuple[LabelledObject, ...]


@dataclass(frozen=True)
class LabelledImage:
    """An image with its labels. ``gsd`` is None when the header is missing or implausible
    (``gsd_header`` is then what it said, None without one)."""

    image_id: str
    image_path: Path
    label_path: Path
    gsd: float | None
    objects: tuple[LabelledObject, ...]
    gsd_header: str | None = None


@dataclass(frozen=True)
class GsdEstimate:
    """A GSD estimated for an image whose header is missing or implausible, and what it rests on."""

    metres: float
    cars: int  # labelled cars measured; 0: fewer than MIN_CARS, FALLBACK_GSD_M assumed
    gsd_header: str | None  # what the unusable header said (None: there was none)

    def __str__(self) -> str:
        """Why and how, for a report: ``no gsd header; 0.131 m estimated from 255 labelled cars``."""
        low, high = GSD_RANGE_M
        why = (
            "no gsd header"
            if self.gsd_header is None
            else f"gsd header {self.gsd_header!r} is not a GSD in {low}-{high} m"
        )
        if self.cars:
            return f"{why}; {self.metres:.3f} m estimated from {self.cars} labelled cars"
        return f"{why} and fewer than {MIN_CARS} labelled cars; {self.metres:.2f} m assumed"


def _area(corners: Corners) -> float:
    """Shoelace area of a polygon."""
    total = 0.0
    for (x0, y0), (x1, y1) in zip(corners, corners[1:] + corners[:1], strict=True):
        total += x0 * y1 - x1 * y0
    return abs(total) / 2


def read_labels(path: Path) -> Labels:
    """The GSD header and the objects of one ``labelTxt`` file (see :func:`parse_labels`).

    Raises:
        InputError: If the file cannot be read, is too large or a line is neither a header nor a label.
    """
    try:
        if path.stat().st_size > MAX_LABEL_BYTES:
            raise InputError(path, f"label file over {MAX_LABEL_BYTES // 1024 // 1024} MB")
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as exc:
        raise InputError(path, f"cannot read the label file ({exc.__class__.__name__})") from exc
    return parse_labels(text, path)


def parse_labels(text: str, source: Path | str = "<labels>") -> Labels:
    """The GSD header and the objects of TEXT, a ``labelTxt`` file's content; SOURCE names it in errors.

    Raises:
        InputError: If a line is neither a header nor a label.
    """
    gsd: float | None = None
    gsd_header: str | None = None
    objects: list[LabelledObject] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        header = _HEADER.match(line)
        if header is not None:
            value = header.group(2).strip()
            if header.group(1).lower() == "gsd" and value.lower() not in _NO_GSD:
                try:
                    found = float(value)
                except ValueError:
                    found = math.nan
                plausible = GSD_RANGE_M[0] <= found <= GSD_RANGE_M[1]
                gsd, gsd_header = (found, None) if plausible else (None, value)
            continue
        parts = line.split()
        try:
            numbers = [float(v) for v in parts[:8]]
            difficulty = int(float(parts[9])) if len(parts) > 9 else 0
        except (ValueError, IndexError):
            raise InputError(source, f"line {number} is not a DOTA label: {line[:60]!r}") from None
        if len(parts) < 9 or not all(math.isfinite(v) for v in numbers):
            raise InputError(source, f"line {number} is not a DOTA label: {line[:60]!r}")
        corners = tuple((numbers[i], numbers[i + 1]) for i in range(0, 8, 2))
        if _area(corners) <= 0:
            continue
        objects.append(LabelledObject(corners, parts[8], difficulty))
    return Labels(gsd, gsd_header, tuple(objects))


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
                labels = read_labels(label)
                found.append(
                    LabelledImage(label.stem, images[label.stem], label, labels.gsd, labels.objects, labels.gsd_header)
                )
    if not found:
        raise InputError(root, "no DOTA images with labels (images/NAME.png beside labelTxt/NAME.txt)")
    return found


def estimate_gsd(image: LabelledImage) -> float:
    """IMAGE's GSD: its header where plausible, else :func:`gsd_from_cars`."""
    if image.gsd is not None:
        return image.gsd
    estimate = gsd_from_cars(image)
    log.info("%s: %s", image.image_id, estimate)
    return estimate.metres


def gsd_from_cars(image: LabelledImage) -> GsdEstimate:
    """IMAGE's GSD from the median length of its labelled cars, whatever its header says, else the fallback.

    For images whose header is missing or implausible: a property of the labels, so scoring a detector
    at it does not depend on what the detector finds.
    """
    cars = [o.size_px()[0] for o in image.objects if o.cls == "small-vehicle" and not o.difficult]
    if len(cars) >= MIN_CARS:
        return GsdEstimate(CAR_LENGTH_M / statistics.median(cars), len(cars), image.gsd_header)
    return GsdEstimate(FALLBACK_GSD_M, 0, image.gsd_header)
