"""Object detection speed: each installed detector through the sliced runner on a SIZE² scene at 0.5 m.

The scene (4096² px by default, so 1 km x 1 km at 0.5 m) is generated in memory, seeded: textured
ground (noise at several scales, a tint per band, a few roads) with many vehicles parked on it, cars
(about 4.5 x 1.8 m) and trucks (about 12 x 2.5 m) at random headings and colours, each with a
shadow cast to one side. Every detector runs :func:`sitewatch.detect.sliced.detect_array` on it in
this process: scaling, slicing, the detector and the merging, the way ``sitewatch detect`` runs it,
less the file reading. Each runs REPEATS times, alternating with the others so drift hits all alike;
times are medians. The classic detector always runs; the learned one where its model is
installed (its ONNX session is built on a small tile first, untimed).

The baseline, run in the same process on the same pixels, is a bare ONNX Runtime pass of the
shipped ``lite0-features`` encoder (EfficientNet-Lite0 to its stride-16 output) over 1024² tiles
(the sliced runner's slice size) without overlap: the least a learned detector on that encoder
costs. Without it (no ONNX Runtime, or the model missing) the classic detector is the baseline.

Memory: before each run, freed heap goes back to the system (glibc's ``malloc_trim``) and the
kernel's resident set size high-water mark is reset (``/proc/self/clear_refs``), so each run's
peak is its own on top of what the process already holds (the scene, the imports, an ONNX session);
where the mark cannot be reset, the figure is the process's peak so far (an upper bound).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import functools
import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from bench import print_result
from bench.ingest import _peak_rss_bytes, _status_bytes

if TYPE_CHECKING:
    from sitewatch.detect.base import ObjectDetector
    from sitewatch.detect.sliced import SlicedResult

GSD = 0.5
#: Vehicles per megapixel of scene (one megapixel is 500 m x 500 m at 0.5 m).
VEHICLES_PER_MP = 60
#: Fraction of vehicles that are trucks.
TRUCK_SHARE = 0.2
#: Shadow offset in metres (x, y): the sun in the south-west.
SHADOW_M = (0.8, 0.6)
#: Tile side of the encoder baseline (the sliced runner's slice size).
BASELINE_TILE = 1024
BASELINE_MODEL = "lite0-features"
BASELINE_NAME = "bare ONNX Runtime pass of the lite0-features encoder at stride 16"
#: A truth object counts as found by a detection of score >= MIN_SCORE overlapping it by IoU >= 0.5.
MIN_SCORE = 0.3
#: Fractional bits of the polygons OpenCV draws (sub-pixel vehicle outlines).
SUBPIXEL_BITS = 3


@dataclass(frozen=True)
class Run:
    """One pass over the scene, timed REPEATS times: median times, the highest memory peak."""

    name: str
    seconds: float
    cpu_seconds: float
    mp_per_s: float
    mp_per_s_per_core: float
    peak_rss_bytes: int  # the process's peak during the run (see rss_reset)
    peak_rss_above_start_bytes: int  # that peak less the resident set size before the run
    rss_reset: bool  # False: the high-water mark could not be reset, so the peak is the process's so far
    detections: int | None = None  # detections of any score (None for the baseline)
    recall: float | None = None  # truth objects found at IoU 0.5 with score >= MIN_SCORE
    ratio_to_baseline: float | None = None  # this run's time over the baseline's


@dataclass(frozen=True)
class DetectBenchmark:
    """The result of :func:`measure`."""

    size: int
    megapixels: float
    gsd: float
    cores: int
    repeats: int
    objects: int  # vehicles drawn in the scene
    baseline: Run
    runs: tuple[Run, ...]
    skipped: tuple[str, ...]  # one note per detector not run

    def to_dict(self) -> dict[str, object]:
        """Plain values for ``--json``."""
        return asdict(self)


def make_scene(size: int, seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    """``(image, boxes)``: a ``(3, size, size)`` uint8 scene at :data:`GSD` and each vehicle's four
    corners ``(4, 2)`` in pixels (pixel centres at whole numbers)."""
    rng = np.random.default_rng(seed)
    ground = np.zeros((size, size), np.float32)
    for cell, weight in ((256, 30.0), (48, 18.0), (8, 8.0)):
        small = rng.standard_normal((size // cell + 2, size // cell + 2)).astype(np.float32)
        ground += weight * cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
    ground += rng.normal(0.0, 3.0, (size, size)).astype(np.float32)
    image = np.empty((size, size, 3), np.uint8)
    for band, (gain, offset) in enumerate(((1.0, 105.0), (1.05, 115.0), (0.9, 100.0))):
        image[:, :, band] = np.clip(ground * gain + offset, 0, 255)
    del ground
    for _ in range(max(1, size // 1024)):
        cx, cy = rng.uniform(0, size, 2)
        road = _corners(cx, cy, 3 * size, 16 / GSD, rng.uniform(0, np.pi))
        cv2.fillPoly(image, [_fixed(road)], (95, 95, 100), lineType=cv2.LINE_AA, shift=SUBPIXEL_BITS)

    boxes = _place_vehicles(rng, size)
    shade = np.zeros((size, size), np.uint8)
    shift = np.array(SHADOW_M, np.float32) / GSD
    for box in boxes:  # shadows first, so vehicles are drawn over their own
        cv2.fillPoly(shade, [_fixed(box + shift)], 255, lineType=cv2.LINE_AA, shift=SUBPIXEL_BITS)
    for band in range(3):
        darkened = image[:, :, band] * (1.0 - 0.55 / 255 * shade.astype(np.float32))
        image[:, :, band] = np.clip(darkened, 0, 255)
    del shade
    for box in boxes:
        kind = rng.random()
        if kind < 0.4:
            colour = np.full(3, rng.uniform(200, 245))  # white and silver
        elif kind < 0.7:
            colour = np.full(3, rng.uniform(15, 45))  # black and dark grey
        else:
            colour = rng.uniform(30, 220, 3)  # coloured paint
        paint = tuple(int(c) for c in colour)
        cv2.fillPoly(image, [_fixed(box)], paint, lineType=cv2.LINE_AA, shift=SUBPIXEL_BITS)
    scene = image.transpose(2, 0, 1)
    return np.ascontiguousarray(scene), boxes


def _fixed(corners: np.ndarray) -> np.ndarray:
    """CORNERS (pixel centres at whole numbers) as OpenCV's fixed-point polygon of SUBPIXEL_BITS."""
    return np.round(corners * (1 << SUBPIXEL_BITS)).astype(np.int32)


def _corners(cx: float, cy: float, length: float, width: float, angle: float) -> np.ndarray:
    """``(4, 2)`` corners of a LENGTH x WIDTH box (pixels) centred on (CX, CY) at ANGLE radians."""
    c, s = math.cos(angle), math.sin(angle)
    u = np.array([1, -1, -1, 1]) * length / 2
    v = np.array([1, 1, -1, -1]) * width / 2
    return np.column_stack([cx + c * u - s * v, cy + s * u + c * v]).astype(np.float32)


def _place_vehicles(rng: np.random.Generator, size: int) -> list[np.ndarray]:
    """Vehicles on a jittered grid of 32 px (16 m) cells, one per cell at most, so none overlap."""
    cell = 32
    cells = [(r, c) for r in range(size // cell) for c in range(size // cell)]
    count = min(len(cells), max(1, round(VEHICLES_PER_MP * size * size / 1e6)))
    boxes = []
    for index in rng.choice(len(cells), count, replace=False):
        row, col = cells[int(index)]
        truck = rng.random() < TRUCK_SHARE
        length = (rng.uniform(10.0, 14.0) if truck else rng.uniform(4.0, 5.2)) / GSD
        width = (rng.uniform(2.4, 2.6) if truck else rng.uniform(1.7, 2.0)) / GSD
        angle = rng.uniform(0, np.pi)
        reach = length / 2 + 2
        cx = col * cell + cell / 2 + rng.uniform(-1, 1) * max(0.0, cell / 2 - reach)
        cy = row * cell + cell / 2 + rng.uniform(-1, 1) * max(0.0, cell / 2 - reach)
        boxes.append(_corners(cx, cy, length, width, angle))
    return boxes


def measure(
    size: int = 4096,
    *,
    detectors: tuple[str, ...] | None = None,
    seed: int = 0,
    repeats: int = 3,
    encoder_baseline: bool = True,
) -> DetectBenchmark:
    """Time the baseline and each available detector of DETECTORS (default: every registered one)
    on one generated SIZE² scene, alternating, REPEATS times each; times are medians."""
    from sitewatch.detect import base
    from sitewatch.errors import SitewatchError

    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    image, boxes = make_scene(size, seed)
    chosen: list[ObjectDetector] = []
    skipped: list[str] = []
    for name in detectors or tuple(base.names()):
        try:
            chosen.append(base.get(name))
        except SitewatchError as exc:
            skipped.append(f"{name}: {exc}")
    work: list[tuple[str, Callable[[], object]]] = []
    if encoder_baseline:
        try:
            work.append((BASELINE_NAME, _encoder_pass(image)))
        except (ImportError, SitewatchError) as exc:
            skipped.append(f"baseline encoder: {exc}; the classic detector is the baseline")
    if not work and not any(d.name == "classic" for d in chosen):
        chosen.append(base.get("classic"))
    results: dict[str, SlicedResult] = {}
    for detector in sorted(chosen, key=lambda d: d.name != "classic"):
        detector.detect_tile(np.zeros((3, 64, 64), np.float32))  # loads a model, if any: untimed
        work.append((detector.name, functools.partial(_detect_into, results, image, detector)))
    samples: dict[str, list[_Sample]] = {name: [] for name, _ in work}
    for _ in range(repeats):
        for name, job in work:
            samples[name].append(_timed(job))
    megapixels = size * size / 1e6
    cores = os.cpu_count() or 1
    baseline_s = statistics.median(s.seconds for s in samples[work[0][0]])
    runs = []
    for name, _ in work:
        result = results.get(name)
        kept = [] if result is None else [np.array(d.corners) for d in result.detections if d.score >= MIN_SCORE]
        runs.append(
            _summarise(
                name,
                samples[name],
                megapixels,
                cores,
                baseline_s,
                None if result is None else len(result.detections),
                None if result is None else _recall(boxes, kept),
            )
        )
    return DetectBenchmark(
        size=size,
        megapixels=megapixels,
        gsd=GSD,
        cores=cores,
        repeats=repeats,
        objects=len(boxes),
        baseline=runs[0],
        runs=tuple(run for run in runs if run.name != BASELINE_NAME),
        skipped=tuple(skipped),
    )


def _detect_into(results: dict[str, SlicedResult], image: np.ndarray, detector: ObjectDetector) -> None:
    """One :func:`detect_array` of IMAGE at GSD with DETECTOR, its result kept in RESULTS."""
    from sitewatch.detect.sliced import detect_array

    results[detector.name] = detect_array(image, GSD, detector)


@dataclass(frozen=True)
class _Sample:
    seconds: float
    cpu_seconds: float
    peak_rss: int
    peak_above_start: int
    reset: bool


def _summarise(
    name: str,
    samples: list[_Sample],
    megapixels: float,
    cores: int,
    baseline_s: float,
    detections: int | None,
    recall: float | None,
) -> Run:
    """A Run from NAME's SAMPLES: median times, the highest peak."""
    seconds = statistics.median(s.seconds for s in samples)
    mp_per_s = megapixels / seconds
    return Run(
        name=name,
        seconds=seconds,
        cpu_seconds=statistics.median(s.cpu_seconds for s in samples),
        mp_per_s=mp_per_s,
        mp_per_s_per_core=mp_per_s / cores,
        peak_rss_bytes=max(s.peak_rss for s in samples),
        peak_rss_above_start_bytes=max(s.peak_above_start for s in samples),
        rss_reset=all(s.reset for s in samples),
        detections=detections,
        recall=recall,
        ratio_to_baseline=seconds / baseline_s,
    )


def _encoder_pass(image: np.ndarray) -> Callable[[], None]:
    """The baseline as a callable: the encoder over IMAGE's BASELINE_TILE² tiles (session built now).

    Raises:
        ImportError: Without ONNX Runtime.
        NotFound: If the encoder is not shipped.
    """
    from sitewatch.detect.model import normalise
    from sitewatch.detect.sliced import scaling
    from sitewatch.models import find, load_session

    session = load_session(find(BASELINE_MODEL))
    multiple = 16
    stats = scaling(image[:, :: max(1, image.shape[1] // 1000), :: max(1, image.shape[2] // 1000)])
    low, span = stats[:, 0, None, None], stats[:, 1, None, None] - stats[:, 0, None, None]
    session.run(["s16"], {"image": np.zeros((1, 3, 64, 64), np.float32)})  # first run allocates

    def run() -> None:
        rows, cols = image.shape[1:]
        for row0 in range(0, rows, BASELINE_TILE):
            for col0 in range(0, cols, BASELINE_TILE):
                window = image[:, row0 : row0 + BASELINE_TILE, col0 : col0 + BASELINE_TILE].astype(np.float32)
                tile = normalise(np.clip((window - low) / span, 0.0, 1.0))
                pad = ((0, 0), (0, -tile.shape[1] % multiple), (0, -tile.shape[2] % multiple))
                session.run(["s16"], {"image": np.pad(tile, pad, mode="reflect")[np.newaxis]})

    return run


def _timed(work: Callable[[], object]) -> _Sample:
    """Run WORK once: wall and CPU time, and its peak resident set size."""
    reset = _reset_peak_rss()
    start_rss = _status_bytes("VmRSS")
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    seconds, cpu_seconds = time.perf_counter() - wall, time.process_time() - cpu
    peak = _peak_rss_bytes()
    return _Sample(seconds, cpu_seconds, peak, max(0, peak - start_rss), reset)


def _reset_peak_rss() -> bool:
    """Return freed heap to the system (glibc), then reset this process's resident set size
    high-water mark (Linux 4.0+); whether the reset worked."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: the figure above start may be low
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _recall(truth: list[np.ndarray], found: list[np.ndarray]) -> float:
    """Fraction of TRUTH boxes some box of FOUND overlaps by oriented IoU >= 0.5."""
    from shapely.geometry import Polygon
    from shapely.strtree import STRtree

    from sitewatch.detect.boxes import oriented_iou

    if not truth:
        return 1.0
    if not found:
        return 0.0
    tree = STRtree([Polygon(box) for box in found])
    hits = 0
    for box in truth:
        candidates = tree.query(Polygon(box))
        if any(oriented_iou(box.tolist(), found[int(i)].tolist()) >= 0.5 for i in candidates):
            hits += 1
    return hits / len(truth)


def format_table(result: DetectBenchmark) -> str:
    """A short plain-text table: the baseline, then one row per detector."""
    mib = 1024**2
    lines = [
        f"{result.size}x{result.size} RGB scene at {result.gsd} m ({result.megapixels:.1f} MP), "
        f"{result.objects} vehicles; {result.cores} cores; median of {result.repeats}",
        f"{'run':<22}{'wall s':>8}{'CPU s':>8}{'MP/s':>8}{'/core':>8}{'peak MiB':>10}{'+MiB':>7}{'x base':>8}"
        f"{'found':>7}{'recall':>8}",
    ]
    rows = result.runs if result.baseline in result.runs else (result.baseline, *result.runs)
    for run in rows:
        name = run.name if run in result.runs else "baseline"
        ratio = "" if run.ratio_to_baseline is None else f"{run.ratio_to_baseline:.2f}"
        found = "" if run.detections is None else str(run.detections)
        recall = "" if run.recall is None else f"{run.recall:.0%}"
        peak = f"{run.peak_rss_bytes / mib:.0f}" + ("" if run.rss_reset else "*")
        lines.append(
            f"{name:<22}{run.seconds:>8.2f}{run.cpu_seconds:>8.2f}{run.mp_per_s:>8.2f}{run.mp_per_s_per_core:>8.2f}"
            f"{peak:>10}{run.peak_rss_above_start_bytes / mib:>7.0f}{ratio:>8}{found:>7}{recall:>8}"
        )
    lines.append(f"baseline: {result.baseline.name}")
    if not all(run.rss_reset for run in (result.baseline, *result.runs)):
        lines.append("* the process's peak so far: the high-water mark could not be reset")
    lines += [f"skipped {note}" for note in result.skipped]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m bench detect``."""
    parser.add_argument("--size", type=int, default=4096, help="Width and height of the scene in px (4096).")
    parser.add_argument("--detector", action="append", help="Detector to run (repeat; default: every installed one).")
    parser.add_argument("--repeats", type=int, default=3, help="Timed passes of each; medians reported (3).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the generated scene (0).")
    parser.add_argument(
        "--classic-baseline", action="store_true", help="Take the classic detector as the baseline, not the encoder."
    )
    parser.add_argument("--json", action="store_true", help="Print one JSON object instead of the table.")


def run(args: argparse.Namespace) -> int:
    """Generate the scene, measure, print; an unknown detector is a note, not an error."""
    return print_result(
        lambda: measure(
            args.size,
            detectors=tuple(args.detector) if args.detector else None,
            seed=args.seed,
            repeats=args.repeats,
            encoder_baseline=not args.classic_baseline,
        ),
        args.json,
        format_table,
    )
