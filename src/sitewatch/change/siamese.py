"""A learned siamese change detector: one shared encoder for both dates, the difference decoded.

The network (``sitewatch.train.model``) is trained on the labelled pairs under ``shared/datasets``
plus changes synthesised into their imagery, and ships as ONNX (``models/siamese-change.onnx``), so
this module needs ONNX Runtime only, never PyTorch.

Why each step of :meth:`Siamese.score` is there:

1. Each date is standardised per band by :func:`date_stats`, learnt by :meth:`Siamese.fit` over the
   whole pair: a tile of a large scene must be normalised as the whole scene is, and a global gain
   or offset between dates (exposure, sensor) must not read as change. Training uses the same
   :func:`normalise`, so the network sees exactly what it was trained on.
2. Data much finer than the training GSD is downsampled first (a 0.3 m scene to the 0.5 m the
   network learnt buildings at) and the probability upsampled back.
3. The network needs sizes that are multiples of its stride: tiles are mirror-padded and cropped
   back; large inputs run in overlapping tiles so memory stays bounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from sitewatch.change.base import ChangeDetector, rgb_input
from sitewatch.change.registry import register
from sitewatch.errors import InputError, NotFound

if TYPE_CHECKING:
    import onnxruntime

    from sitewatch.models import ModelCard

#: Name of the shipped model (``sitewatch.models.find`` finds it by this name).
MODEL_NAME = "siamese-change"
#: The network's output must line up with its input: sizes are padded to a multiple of this.
STRIDE = 16
#: Normalised values are clipped to ±CLIP robust standard deviations (specular roofs, clouds).
CLIP = 6.0
#: IQR of a standard normal: dividing by it makes the robust spread comparable to a std.
_IQR_TO_STD = 1.349
#: A band's spread is at least this fraction of its median, so a flat band is not blown up to noise.
_MIN_RELATIVE_SPREAD = 0.01
#: Largest side run in one piece; larger inputs are tiled with :attr:`Siamese.context_px` of overlap.
_TILE = 1024
#: Finer data than the training GSD by more than this factor is downsampled before the network.
_RESAMPLE_TOLERANCE = 1.25
#: Terms of the shipped model: those of its most restrictive training data (see its model card).
TERMS = (
    "non-commercial research use only (trained on LEVIR-CD: academic/research use only; "
    "SZTAKI AirChange: free for scientific use; OSCD labels: CC BY-NC-SA 4.0)"
)


def date_stats(image: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Per band: median and robust std (IQR-based) of one date over VALID, ``(bands, 2)`` float64."""
    pixels = image.reshape(image.shape[0], -1) if valid is None else image[:, valid]
    stats = np.zeros((image.shape[0], 2), dtype=np.float64)
    if pixels.shape[1] == 0:
        stats[:, 1] = 1.0
        return stats
    q25, q50, q75 = np.percentile(pixels, [25, 50, 75], axis=1)
    spread = np.maximum((q75 - q25) / _IQR_TO_STD, _MIN_RELATIVE_SPREAD * np.abs(q50))
    stats[:, 0] = q50
    stats[:, 1] = np.where(np.isfinite(spread) & (spread > 0), spread, 1.0)
    return stats


def normalise(image: np.ndarray, stats: np.ndarray) -> np.ndarray:
    """IMAGE standardised per band by STATS (from :func:`date_stats`), clipped to ±:data:`CLIP`.

    The one normalisation the network is trained and run with.
    """
    centre = stats[:, 0, np.newaxis, np.newaxis]
    spread = stats[:, 1, np.newaxis, np.newaxis]
    out: np.ndarray = np.clip((image - centre) / spread, -CLIP, CLIP).astype(np.float32)
    return out


@dataclass(frozen=True)
class _Fitted:
    """What :meth:`Siamese.fit` learns: per-band statistics of each date (RGB)."""

    before: np.ndarray
    after: np.ndarray


@register
class Siamese(ChangeDetector):
    """Siamese EfficientNet-Lite0 network with a difference decoder, run with ONNX Runtime."""

    name: ClassVar[str] = "siamese"
    description: ClassVar[str] = "learned siamese network (EfficientNet-Lite0 encoder, RGB, ONNX)"
    bands: ClassVar[str] = "rgb"
    #: Where it beats CVA on pairs it never saw: sub-metre to aerial imagery. At 10 m (OSCD) CVA on
    #: all 13 bands does better (held-out F1 0.03 against 0.18), so ``auto`` keeps CVA there.
    gsd_range: ClassVar[tuple[float, float]] = (0.2, 3.0)
    rank: ClassVar[int] = 30
    #: The encoder's stride-16 stage sees about 100 px around a pixel; most of its weight lies within 48.
    context_px: ClassVar[int] = 48
    terms: ClassVar[str] = TERMS

    @classmethod
    def available(cls) -> bool:
        """Whether the shipped model file is installed."""
        from sitewatch.models import find

        try:
            find(MODEL_NAME)
        except (NotFound, InputError):
            return False
        return True

    def __init__(self, model_dir: Path | None = None, threads: int | None = None) -> None:
        """Use the model in MODEL_DIR (a folder the user names), else the shipped one.

        Raises:
            NotFound: If there is no ``siamese-change.onnx`` there.
            InputError: If its metadata is missing or unreadable.
        """
        from sitewatch.models import find

        self.card: ModelCard = find(MODEL_NAME, model_dir)
        self.threads = threads
        low, _ = self.card.metadata.get("input", {}).get("gsd_m", [0.5, 10.0])
        #: The finest GSD the network was trained at; finer data is downsampled to it.
        self.train_gsd = float(low)
        self._fitted: _Fitted | None = None

    def fit(self, before: np.ndarray, after: np.ndarray, valid: np.ndarray, gsd: float | None) -> None:
        """Per-band statistics of each date over the pair's valid pixels."""
        self._fitted = _Fitted(
            date_stats(rgb_input(before, self.name), valid), date_stats(rgb_input(after, self.name), valid)
        )

    def score(self, before: np.ndarray, after: np.ndarray, valid: np.ndarray, gsd: float | None) -> np.ndarray:
        """The network's sigmoid output: a change probability, 0 where VALID is false."""
        import cv2

        if self._fitted is None:
            raise RuntimeError("Siamese.score called before fit")
        a = normalise(rgb_input(before, self.name), self._fitted.before)
        b = normalise(rgb_input(after, self.name), self._fitted.after)
        a[:, ~valid] = 0.0
        b[:, ~valid] = 0.0
        rows, cols = valid.shape
        factor = self._downsample_factor(gsd)
        if factor > 1.0:
            size = (max(1, round(cols / factor)), max(1, round(rows / factor)))
            a, b = (np.stack([cv2.resize(band, size, interpolation=cv2.INTER_AREA) for band in x]) for x in (a, b))
        probability = self._run_tiled(a, b)
        if factor > 1.0:
            probability = cv2.resize(probability, (cols, rows), interpolation=cv2.INTER_LINEAR)
        probability[~valid] = 0.0
        return probability

    def _downsample_factor(self, gsd: float | None) -> float:
        """How much to shrink data at GSD to the training GSD (1: not at all; unknown GSD: not at all)."""
        if gsd is None or gsd * _RESAMPLE_TOLERANCE >= self.train_gsd:
            return 1.0
        return self.train_gsd / gsd

    def _run_tiled(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Probability of normalised A and B, in overlapping tiles of at most :data:`_TILE` px a side."""
        rows, cols = a.shape[1:]
        if rows <= _TILE and cols <= _TILE:
            return self._run(a, b)
        margin, core = self.context_px, _TILE - 2 * self.context_px
        out = np.zeros((rows, cols), dtype=np.float32)
        for top in range(0, rows, core):
            for left in range(0, cols, core):
                y0, x0 = max(0, top - margin), max(0, left - margin)
                y1, x1 = min(rows, top + core + margin), min(cols, left + core + margin)
                tile = self._run(a[:, y0:y1, x0:x1], b[:, y0:y1, x0:x1])
                bottom, right = min(rows, top + core), min(cols, left + core)
                out[top:bottom, left:right] = tile[top - y0 : bottom - y0, left - x0 : right - x0]
        return out

    def _run(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """One network run: mirror-pad to a multiple of :data:`STRIDE`, sigmoid, crop back."""
        rows, cols = a.shape[1:]
        pad = ((0, 0), (0, -rows % STRIDE), (0, -cols % STRIDE))
        feeds = {
            "before": np.pad(a, pad, mode="symmetric")[np.newaxis],
            "after": np.pad(b, pad, mode="symmetric")[np.newaxis],
        }
        (logit,) = self._session().run(["logit"], feeds)
        logit = np.clip(logit[0, 0, :rows, :cols], -30.0, 30.0)
        probability: np.ndarray = (1.0 / (1.0 + np.exp(-logit))).astype(np.float32)
        return probability

    def _session(self) -> onnxruntime.InferenceSession:
        from sitewatch.models import load_session

        return load_session(self.card, self.threads)
