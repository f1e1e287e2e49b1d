"""Score co-registration, as ``sitewatch eval align --dataset DIR`` promises.

Two parts:

* **Documented pair.** A folder holding ``ref_*.tif`` and ``tgt_*.tif`` (the s2-coregistration
  sample, AROSICS test case INTER1) goes through :func:`sitewatch.align.files.register_files`, the
  same path as ``sitewatch register``, and the shift is compared with the one its README documents.
* **Known synthetic transforms on real images.** Real images found under DIR (LEVIR-CD ``A/``
  images, SZTAKI ``im1``, the Joplin pre-event scene, the OSCD 10 m bands, the s2 reference), each
  cropped to at most ``MAX_SIDE_PX`` a side, are warped by a seeded transform (an integer or
  sub-pixel shift of up to ±20 px, or a shift with a rotation of up to 1° and a scale change of up to
  1 %, or a shift of one band of the image against all of them), given a different gain, offset and
  haze, and noise, and registered. The error is the distance between the recovered and the true
  map over a grid of points on the reference; a case succeeds when the status is ok and its RMSE is
  below ``SUCCESS_PX``.

The true map sends reference (x, y) to A·(x, y, 1), and MOVING is made as MOVING(q) =
REFERENCE(A⁻¹ q) with a cubic spline, so a feature at reference p lies at A·p in MOVING, as in
DESIGN.md's ``register`` contract.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy import ndimage

from sitewatch.align.files import read_raster, register_files
from sitewatch.align.register import Registration, register
from sitewatch.errors import InputError
from sitewatch.io.bands import S2_10M_BANDS, band_files
from sitewatch.settings import DEFAULT_LIMITS, Limits

Kind = Literal["integer", "subpixel", "affine", "band"]

#: Case kinds, taken in turn.
KINDS: tuple[Kind, ...] = ("integer", "subpixel", "affine", "band")
#: Largest shift along each axis (px), rotation (degrees) and scale change (fraction).
MAX_SHIFT_PX = 20.0
MAX_ROTATION_DEG = 1.0
MAX_SCALE = 0.01
#: A case succeeds when the status is ok and the recovered map is within this RMSE (px).
SUCCESS_PX = 0.5
#: Source images are cropped (centrally) to at most this many pixels a side.
MAX_SIDE_PX = 1024
#: The error is measured on a GRID_POINTS x GRID_POINTS grid over the reference.
GRID_POINTS = 16
#: The documented misregistration of the s2-coregistration pair in the ``register`` convention
#: (its README: dx +0.55 to +0.75, dy -1.6 to -1.9 px; the opposite signs of AROSICS's values).
DOCUMENTED_S2_SHIFT_PX = (0.65, -1.75)
#: Images at most per source (the first ones in a stable order).
MAX_IMAGES_PER_SOURCE = 3
#: Name of the summary row over all sources.
ALL = "all"


@dataclass(frozen=True)
class Source:
    """A real image to warp: ``(bands, rows, cols)`` in its own dtype, with its data mask."""

    source: str  # levir-cd, sztaki, joplin, oscd, s2
    name: str  # path relative to the dataset folder
    data: np.ndarray
    valid: np.ndarray


@dataclass(frozen=True)
class Case:
    """One synthetic registration and how it went."""

    source: str
    name: str
    kind: Kind
    truth: tuple[float, float, float, float, float, float]  # the true affine map (a, b, c, d, e, f)
    status: str
    reason: str | None
    model: str
    tie_points: int
    rmse_px: float | None  # of the recovered map over the grid; None when failed
    seconds: float

    @property
    def success(self) -> bool:
        """Status ok and the map within SUCCESS_PX."""
        return self.rmse_px is not None and self.rmse_px < SUCCESS_PX

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "source": self.source,
            "name": self.name,
            "kind": self.kind,
            "truth": [round(v, 6) for v in self.truth],
            "status": self.status,
            "reason": self.reason,
            "model": self.model,
            "tie_points": self.tie_points,
            "rmse_px": None if self.rmse_px is None else round(self.rmse_px, 4),
            "success": self.success,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class Summary:
    """Cases of one source (or all, or one kind): success rate and RMSE over the successful ones."""

    group: str
    cases: int
    successes: int
    rmse_px: float | None  # pooled over the grid points of every successful case
    worst_px: float | None  # largest RMSE of a successful case
    seconds: float  # mean registration time per case

    @property
    def success_rate(self) -> float:
        """Share of cases that succeeded."""
        return self.successes / self.cases if self.cases else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "group": self.group,
            "cases": self.cases,
            "successes": self.successes,
            "success_rate": round(self.success_rate, 4),
            "rmse_px": None if self.rmse_px is None else round(self.rmse_px, 4),
            "worst_px": None if self.worst_px is None else round(self.worst_px, 4),
            "seconds_per_case": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class Documented:
    """The documented pair: recovered shift against the documented one."""

    name: str
    registration: dict[str, Any]  # the register contract's JSON object
    documented_px: tuple[float, float]
    seconds: float

    @property
    def error_px(self) -> float | None:
        """Distance (px) between the recovered and the documented shift; None when it failed."""
        shift = self.registration.get("shift_px")
        if not shift:
            return None
        return math.hypot(shift[0] - self.documented_px[0], shift[1] - self.documented_px[1])

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        error = self.error_px
        return {
            "name": self.name,
            **self.registration,
            "documented_shift_px": list(self.documented_px),
            "error_px": None if error is None else round(error, 4),
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class CaseDone:
    """Progress event: one synthetic case registered."""

    case: Case
    done: int
    total: int


def find_documented(root: Path) -> list[tuple[Path, Path]]:
    """(reference, target) pairs: folders under ROOT holding one ``ref_*.tif`` and one ``tgt_*.tif``."""
    pairs = []
    for folder in _folders(root):
        refs, tgts = sorted(folder.glob("ref_*.tif")), sorted(folder.glob("tgt_*.tif"))
        if len(refs) == 1 and len(tgts) == 1:
            pairs.append((refs[0], tgts[0]))
    return pairs


def evaluate_documented(root: Path, limits: Limits = DEFAULT_LIMITS) -> list[Documented]:
    """Register every documented pair under ROOT (the s2-coregistration sample)."""
    results = []
    for reference, target in find_documented(root):
        start = time.perf_counter()
        found = register_files(reference, target, limits)
        results.append(
            Documented(
                str(reference.parent.relative_to(root)) if reference.parent != root else reference.parent.name,
                found.to_json(),
                DOCUMENTED_S2_SHIFT_PX,
                time.perf_counter() - start,
            )
        )
    return results


def _folders(root: Path) -> Iterable[Path]:
    for dirpath, dirnames, _ in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        yield Path(dirpath)


def find_sources(root: Path, limits: Limits = DEFAULT_LIMITS) -> list[Source]:
    """Real images under ROOT, by their layouts' files, each cropped to at most MAX_SIDE_PX a side.

    Raises:
        InputError: If ROOT is not a folder or holds no image of a known layout.
    """
    if not root.is_dir():
        raise InputError(root, "not a folder")
    found: dict[str, list[Path]] = {}
    for folder in _folders(root):
        names = {p.name for p in folder.iterdir()}
        if {"A", "B", "label"} <= names and (folder / "A").is_dir():
            found.setdefault("levir-cd", []).extend(sorted((folder / "A").glob("*.png")))
        found.setdefault("sztaki", []).extend(sorted(folder.glob("im1.*")))
        found.setdefault("joplin", []).extend(sorted(folder.glob("joplin_pre*.tif")))
        if folder.name == "imgs_1" and all(b in band_files(folder) for b in S2_10M_BANDS):
            found.setdefault("oscd", []).append(folder)
        refs, tgts = sorted(folder.glob("ref_*.tif")), sorted(folder.glob("tgt_*.tif"))
        if len(refs) == 1 and len(tgts) == 1:
            found.setdefault("s2", []).append(refs[0])
    sources = []
    for source, paths in found.items():
        for path in paths[:MAX_IMAGES_PER_SOURCE]:
            data, valid = _read(path, limits)
            rows, cols = _central(valid.shape)
            sources.append(Source(source, str(path.relative_to(root)), data[:, rows, cols], valid[rows, cols]))
    if not sources:
        raise InputError(
            root, "no images found (looked for LEVIR-CD A/, SZTAKI im1.*, joplin_pre*.tif, OSCD imgs_1/, ref_*.tif)"
        )
    return sources


def _read(path: Path, limits: Limits) -> tuple[np.ndarray, np.ndarray]:
    """An image file, or the 10 m bands of a Sentinel-2 band folder stacked (they share one grid)."""
    if path.is_dir():
        files = band_files(path)
        rasters = [read_raster(files[band], limits) for band in S2_10M_BANDS]
        shape = rasters[0].shape
        if any(r.shape != shape for r in rasters):
            raise InputError(path, "its 10 m bands differ in size")
        data = np.concatenate([r.data for r in rasters])
        return data, np.logical_and.reduce([r.valid for r in rasters])
    raster = read_raster(path, limits)
    return raster.data, raster.valid


def _central(shape: tuple[int, ...]) -> tuple[slice, slice]:
    rows, cols = shape
    top, left = max(0, (rows - MAX_SIDE_PX) // 2), max(0, (cols - MAX_SIDE_PX) // 2)
    return slice(top, top + min(rows, MAX_SIDE_PX)), slice(left, left + min(cols, MAX_SIDE_PX))


def synthetic_transform(kind: Kind, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """The 2x3 true map of a case: a shift, or for ``affine`` a rotation and scale about the centre."""
    if kind == "integer":
        dx, dy = rng.integers(-int(MAX_SHIFT_PX), int(MAX_SHIFT_PX) + 1, 2).astype(float)
    else:
        dx, dy = rng.uniform(-MAX_SHIFT_PX, MAX_SHIFT_PX, 2)
    if kind != "affine":
        return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])
    angle = math.radians(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG))
    scale = 1.0 + rng.uniform(-MAX_SCALE, MAX_SCALE)
    linear = scale * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    rows, cols = shape
    centre = np.array([(cols - 1) / 2, (rows - 1) / 2])
    offset = centre + np.array([dx, dy]) - linear @ centre
    return np.column_stack([linear, offset])


def warp(data: np.ndarray, valid: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(moving, moving_valid)``: MOVING(q) = DATA(truth⁻¹ q), cubic spline, float64; outside is invalid."""
    inverse = np.linalg.inv(np.vstack([truth, [0.0, 0.0, 1.0]]))
    # scipy indexes (row, col): swap x and y on both sides
    swap = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    in_rc = swap @ inverse @ swap
    matrix, offset = in_rc[:2, :2], in_rc[:2, 2]
    bands = [
        ndimage.affine_transform(band.astype(np.float64), matrix, offset=offset, order=3, mode="nearest")
        for band in data
    ]
    inside = ndimage.affine_transform(valid.astype(np.float64), matrix, offset=offset, order=1, cval=0.0)
    return np.stack(bands), inside > 0.999


def radiometry(moving: np.ndarray, rng: np.random.Generator, dtype: np.dtype[Any]) -> np.ndarray:
    """MOVING with a new gain, offset, haze (a bright veil that also lowers contrast) and noise,
    back in DTYPE (integers rounded and clipped, as a sensor would store them)."""
    top = float(np.percentile(moving, 99.5)) or 1.0
    gain = rng.uniform(0.7, 1.3, (moving.shape[0], 1, 1))
    offset = rng.uniform(-0.05, 0.05) * top
    haze = rng.uniform(0.0, 0.3)
    noise = rng.uniform(0.0, 0.01) * top
    out = (1 - haze) * (moving * gain + offset) + haze * 0.8 * top + rng.normal(0.0, noise, moving.shape)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(dtype)
    return out.astype(dtype)


def map_rmse(registration: Registration, truth: np.ndarray, shape: tuple[int, int]) -> float | None:
    """RMS distance (px) between the recovered and the true map over a grid on the reference."""
    if not registration.ok:
        return None
    rows, cols = shape
    xs, ys = np.meshgrid(np.linspace(0, cols - 1, GRID_POINTS), np.linspace(0, rows - 1, GRID_POINTS))
    got_x, got_y = registration.map(xs, ys)
    (a, b, c), (d, e, f) = truth
    return float(np.sqrt(np.mean((got_x - (a * xs + b * ys + c)) ** 2 + (got_y - (d * xs + e * ys + f)) ** 2)))


def run_case(source: Source, kind: Kind, rng: np.random.Generator) -> Case:
    """Warp SOURCE by a KIND transform drawn from RNG, change its radiometry, register, score."""
    shape = (int(source.valid.shape[0]), int(source.valid.shape[1]))
    truth = synthetic_transform(kind, rng, shape)
    moving, moving_valid = warp(source.data, source.valid, truth)
    if kind == "band":
        moving = moving[-1:]  # one band (NIR for OSCD, blue for RGB) against all of them
    moving = radiometry(moving, rng, source.data.dtype)
    start = time.perf_counter()
    registration = register(source.data, moving, ref_valid=source.valid, mov_valid=moving_valid)
    seconds = time.perf_counter() - start
    (a, b, c), (d, e, f) = truth
    return Case(
        source.source,
        source.name,
        kind,
        (float(a), float(b), float(c), float(d), float(e), float(f)),
        registration.status,
        registration.reason,
        registration.model,
        registration.tie_points,
        map_rmse(registration, truth, shape),
        seconds,
    )


def evaluate_synthetic(
    sources: Sequence[Source],
    *,
    cases_per_source: int = 8,
    seed: int = 0,
    on_progress: Callable[[CaseDone], None] | None = None,
) -> list[Case]:
    """CASES_PER_SOURCE cases per source (kinds in turn, images in turn), seeded by SEED."""
    by_source: dict[str, list[Source]] = {}
    for source in sources:
        by_source.setdefault(source.source, []).append(source)
    plan = [
        (images[number % len(images)], KINDS[number % len(KINDS)], index, number)
        for index, (_, images) in enumerate(sorted(by_source.items()))
        for number in range(cases_per_source)
    ]
    cases = []
    for done, (source, kind, index, number) in enumerate(plan, start=1):
        case = run_case(source, kind, np.random.default_rng([seed, index, number]))
        cases.append(case)
        if on_progress is not None:
            on_progress(CaseDone(case, done, len(plan)))
    return cases


def summarise(cases: Sequence[Case], key: Callable[[Case], str]) -> list[Summary]:
    """One summary per group of CASES (by KEY), then one over all of them."""
    groups: dict[str, list[Case]] = {}
    for case in cases:
        groups.setdefault(key(case), []).append(case)
    rows = [_summary(name, items) for name, items in sorted(groups.items())]
    return [*rows, _summary(ALL, list(cases))]


def _summary(group: str, cases: list[Case]) -> Summary:
    good = [c.rmse_px for c in cases if c.success and c.rmse_px is not None]
    return Summary(
        group,
        len(cases),
        len(good),
        float(np.sqrt(np.mean(np.square(good)))) if good else None,
        max(good) if good else None,
        float(np.mean([c.seconds for c in cases])) if cases else 0.0,
    )
