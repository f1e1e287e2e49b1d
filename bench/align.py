"""Co-registration speed: sitewatch's ``register`` against a bare phase correlation of the same pair.

The pair is SIZE² px (4096 by default): real imagery where ``../shared/datasets`` has the Joplin
pre-event scene (2048² RGB, tiled with mirrored copies up to SIZE, so no tile repeats by a plain
translation), else a generated RGB texture. MOVING is REFERENCE with its content moved by a known
sub-pixel shift (cubic spline), so a feature at reference (x, y) lies at (x + dx, y + dy).

The floor is ``skimage.registration.phase_cross_correlation`` with its defaults on the pair's
luminance (the mean of the bands, computed beforehand): one FFT-based global shift, to the whole
pixel. sitewatch's ``register`` gets the RGB arrays and does everything it does in the pipeline
(luminance, a global shift on a downsampled level, coarse and full-resolution tie points, model
choice). Both run in this process on the same arrays, alternating, REPEATS times; times are medians.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage.registration import phase_cross_correlation

from bench import DEFAULT_DATASETS, add_source_options, print_result
from sitewatch.align import register
from sitewatch.align.represent import luminance
from sitewatch.io.raster import read_array

#: The real scene the pair is cut from, inside the shared datasets.
JOPLIN_PRE = Path("joplin-tornado") / "joplin_pre_nad83-utm15n_0.6m.tif"


@dataclass(frozen=True)
class AlignBenchmark:
    """The result of :func:`measure`: medians over the repeats."""

    source: str
    size: int
    megapixels: float
    repeats: int
    shift_px: tuple[float, float]  # the known shift
    found_px: tuple[float, float] | None  # sitewatch's answer
    floor_px: tuple[float, float]  # the bare phase correlation's answer
    status: str
    model: str
    tie_points: int
    register_s: float
    floor_s: float

    @property
    def s_per_megapixel(self) -> float:
        """sitewatch's seconds per megapixel of the pair's reference."""
        return self.register_s / self.megapixels

    @property
    def ratio(self) -> float:
        """sitewatch's time over the floor's."""
        return self.register_s / self.floor_s

    @property
    def error_px(self) -> float | None:
        """Distance between sitewatch's answer and the known shift."""
        if self.found_px is None:
            return None
        return float(np.hypot(self.found_px[0] - self.shift_px[0], self.found_px[1] - self.shift_px[1]))

    def to_dict(self) -> dict[str, object]:
        """Plain values for ``--json``."""
        return {
            **asdict(self),
            "s_per_megapixel": self.s_per_megapixel,
            "ratio": self.ratio,
            "error_px": self.error_px,
        }


def make_pair(
    size: int, shift: tuple[float, float], datasets: Path | None, seed: int = 0
) -> tuple[str, np.ndarray, np.ndarray]:
    """``(source, reference, moving)``: uint8 ``(3, size, size)`` arrays, MOVING's content moved by SHIFT."""
    path = None if datasets is None else datasets / JOPLIN_PRE
    if path is not None and path.is_file():
        tile, _ = read_array(path)
        source = str(path)
    else:
        tile = generated_texture(min(size, 2048), seed)
        source = "generated"
    reference = _mirrored_tiles(tile[:3], size)
    dx, dy = shift
    moving = np.stack(
        [
            np.clip(ndimage.shift(band.astype(np.float32), (dy, dx), order=3, mode="mirror"), 0, 255)
            for band in reference
        ]
    )
    return source, reference, np.rint(moving).astype(np.uint8)


def generated_texture(size: int, seed: int) -> np.ndarray:
    """A seeded RGB uint8 texture: smoothed noise at several scales (like fields, roofs and trees),
    shared by the bands with a little of each band's own, plus fine sensor noise."""
    rng = np.random.default_rng(seed)
    image = np.zeros((3, size, size), np.float32)
    for sigma, weight in ((1.5, 1.0), (4.0, 2.0), (12.0, 4.0), (40.0, 8.0)):
        shared = ndimage.gaussian_filter(rng.standard_normal((size, size)).astype(np.float32), sigma)
        own = ndimage.gaussian_filter(rng.standard_normal((3, size, size)).astype(np.float32), (0, sigma, sigma))
        layer = shared + 0.3 * own
        image += weight * layer / (layer.std() or 1.0)
    image += 0.05 * image.std() * rng.standard_normal(image.shape).astype(np.float32)
    image = (image - image.min()) / (np.ptp(image) or 1.0)
    return (image * 255).astype(np.uint8)


def _mirrored_tiles(tile: np.ndarray, size: int) -> np.ndarray:
    """TILE repeated with alternate tiles mirrored, cropped to SIZE²."""
    rows, cols = tile.shape[1:]
    across = np.concatenate([tile if i % 2 == 0 else tile[:, :, ::-1] for i in range(-(-size // cols))], axis=2)
    down = np.concatenate([across if i % 2 == 0 else across[:, ::-1] for i in range(-(-size // rows))], axis=1)
    return np.ascontiguousarray(down[:, :size, :size])


def measure(
    size: int = 4096,
    shift: tuple[float, float] = (7.3, -4.6),
    *,
    repeats: int = 3,
    datasets: Path | None = DEFAULT_DATASETS,
) -> AlignBenchmark:
    """Time sitewatch's ``register`` and the bare phase correlation on one SIZE² pair, REPEATS times each."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    source, reference, moving = make_pair(size, shift, datasets)
    ref_lum, mov_lum = luminance(reference), luminance(moving)
    register_s, floor_s = [], []
    registration, floor = None, np.zeros(2)
    for _ in range(repeats):
        start = time.perf_counter()
        registration = register(reference, moving)
        register_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        floor = phase_cross_correlation(ref_lum, mov_lum)[0]
        floor_s.append(time.perf_counter() - start)
    assert registration is not None
    return AlignBenchmark(
        source=source,
        size=size,
        megapixels=size * size / 1e6,
        repeats=repeats,
        shift_px=shift,
        found_px=registration.shift_px,
        # scikit-image gives (row, col) shifts that move MOVING back onto REFERENCE
        floor_px=(-float(floor[1]), -float(floor[0])),
        status=registration.status,
        model=registration.model,
        tie_points=registration.tie_points,
        register_s=statistics.median(register_s),
        floor_s=statistics.median(floor_s),
    )


def format_table(result: AlignBenchmark) -> str:
    """A short plain-text report of the medians."""
    found = "failed" if result.found_px is None else f"({result.found_px[0]:+.3f}, {result.found_px[1]:+.3f})"
    return "\n".join(
        [
            f"{result.size}x{result.size} pair ({result.megapixels:.1f} MP) from {result.source}; "
            f"median of {result.repeats}",
            f"known shift ({result.shift_px[0]:+.3f}, {result.shift_px[1]:+.3f}) px; sitewatch {found} "
            f"[{result.status}, {result.model}, {result.tie_points} tie points]; "
            f"floor ({result.floor_px[0]:+.0f}, {result.floor_px[1]:+.0f})",
            f"sitewatch register: {result.register_s:.2f} s ({result.s_per_megapixel:.3f} s/MP)",
            f"bare phase_cross_correlation: {result.floor_s:.2f} s ({result.floor_s / result.megapixels:.3f} s/MP)",
            f"register / floor time: {result.ratio:.2f}x",
        ]
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m bench align``."""
    parser.add_argument("--size", type=int, default=4096, help="Width and height of the pair in px (4096).")
    parser.add_argument(
        "--shift", type=float, nargs=2, default=(7.3, -4.6), metavar=("DX", "DY"), help="Known shift (7.3 -4.6)."
    )
    parser.add_argument("--repeats", type=int, default=3, help="Measurements of each; medians reported (3).")
    add_source_options(parser, "A generated texture")


def run(args: argparse.Namespace) -> int:
    """Build the pair, measure, print; a refused input file is one line on stderr."""
    return print_result(
        lambda: measure(
            args.size,
            tuple(args.shift),
            repeats=args.repeats,
            datasets=None if args.no_datasets else args.datasets,
        ),
        args.json,
        format_table,
    )
