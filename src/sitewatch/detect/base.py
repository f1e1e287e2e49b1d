"""What an object detector is to sitewatch, and the registry that names them.

A detector sees RGB scaled to 0-1 at its own working GSD (:attr:`ObjectDetector.work_gsd`) in tiles
of any size, and returns oriented boxes in that tile's pixels. Everything around it (choosing bands,
scaling radiometry over the whole image, resampling to the working GSD, slicing large images and
merging across tiles, saying "not resolvable" for coarse data) is :mod:`sitewatch.detect.sliced`'s
job, so a classic baseline and a learned model are run, evaluated and benchmarked the same way.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import numpy as np

from sitewatch.detect.boxes import Detection
from sitewatch.errors import NotFound

#: Score from which a detection is reported and counted, unless the detector's model says otherwise.
OPERATING_SCORE = 0.3

SMALL = "small-vehicle"
LARGE = "large-vehicle"
CONTAINER = "container"


class ObjectDetector(ABC):
    """Finds objects in one tile of RGB at :attr:`work_gsd`.

    Class attributes say what the detector is and where it is valid:

    - ``name``: the registry name (``--detector NAME``);
    - ``classes``: the classes it reports, named as in DOTA (plus sitewatch's ``container``);
    - ``work_gsd``: the metres per pixel it runs at (input is resampled to it);
    - ``max_gsd``: coarser input than this cannot resolve its objects: no counts, a reason instead;
    - ``context_px``: working pixels of overlap tiles need so no object is cut at a tile edge;
    - ``terms``: the terms of its training data ("" for training-free detectors).
    """

    name: ClassVar[str]
    classes: ClassVar[tuple[str, ...]]
    work_gsd: ClassVar[float]
    max_gsd: ClassVar[float] = 1.2
    context_px: ClassVar[int] = 32
    terms: ClassVar[str] = ""

    def __init__(self, models: Path | None = None) -> None:
        """MODELS: a folder to load model files from instead of the package's (learned detectors)."""
        self.models = models

    @abstractmethod
    def detect_tile(self, rgb: np.ndarray) -> list[Detection]:
        """Objects in ``(3, rows, cols)`` float32 RGB scaled to 0-1 at :attr:`work_gsd`, tile pixels."""

    def operating_score(self) -> float:
        """The score from which detections are reported and counted (a learned model's card may set it)."""
        return OPERATING_SCORE

    @classmethod
    def available(cls, models: Path | None = None) -> bool:
        """Whether the detector can run here (a learned one needs its model file in MODELS or the package)."""
        return True

    def resolvable(self, gsd: float) -> bool:
        """Whether objects can be resolved at GSD metres per pixel."""
        return 0 < gsd <= self.max_gsd


_REGISTRY: dict[str, type[ObjectDetector]] = {}
#: Let the registry choose: the learned detector where its model is installed, else the classic one.
AUTO = "auto"


def register(cls: type[ObjectDetector]) -> type[ObjectDetector]:
    """Class decorator: make CLS available by its ``name``."""
    _REGISTRY[cls.name] = cls
    return cls


#: Modules whose import registers the built-in detectors.
_BUILTIN_MODULES = ("sitewatch.detect.model", "sitewatch.detect.vehicles")


def _load_builtins() -> None:
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)


def names() -> list[str]:
    """Registered detector names, the preferred first."""
    _load_builtins()
    return sorted(_REGISTRY, key=lambda n: (n == "classic", n))


def get(name: str = AUTO, models: Path | None = None) -> ObjectDetector:
    """A detector by NAME, or (``auto``) the learned one when its model is installed, else the classic.

    MODELS: a folder of model files to use instead of the shipped ones (k-fold evaluation).

    Raises:
        NotFound: If no detector has that name, or it cannot run here.
    """
    _load_builtins()
    if name == AUTO:
        name = next(n for n in names() if _REGISTRY[n].available(models))
    if name not in _REGISTRY:
        raise NotFound(f"no object detector {name!r} (known: {', '.join(names())})")
    cls = _REGISTRY[name]
    if not cls.available(models):
        raise NotFound(f"object detector {name!r} is not installed (its model file is missing)")
    return cls(models)
