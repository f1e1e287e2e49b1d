"""Large-scene change detection: tiled, streamed detection of a SIZE² RGB pair with each detector.

The pair (10,000² px by default) is generated once and cached under ``build/bench``: real imagery
where ``../shared/datasets`` has the Joplin pre-event scene (2048² RGB, tiled with mirrored copies,
so no tile repeats by a plain translation), else a generated RGB texture. AFTER is BEFORE with a
change of gain and offset, sensor noise and pasted "buildings" (blocks of one colour); both are
written strip by strip as tiled, DEFLATE-compressed GeoTIFFs, so the benchmark itself stays bounded.

Each detector runs :func:`sitewatch.change.tiled.detect_rasters` on the pair in its own fresh child
process, so its peak resident set size is its own (imports included; GDAL allocates in C, where
tracemalloc cannot see). CVA, the classic baseline, runs first and every other detector's time is
given as a ratio to it, from the same run. Learned detectors whose model is not installed are
skipped with a note. Target for a learned detector: at least 2 MP/s per core and under 2 GB.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window

from bench import DEFAULT_DATASETS, add_source_options, print_result
from bench.align import JOPLIN_PRE, generated_texture
from bench.ingest import _peak_rss_bytes, _status_bytes
from sitewatch.change import registry
from sitewatch.change.tiled import detect_rasters
from sitewatch.errors import UnknownName
from sitewatch.io.raster import read_array

#: Where generated pairs are kept between runs (ignored by git).
DEFAULT_CACHE = Path(__file__).resolve().parents[1] / "build" / "bench"
#: CVA first: the baseline every ratio is taken against.
DETECTORS = ("cva", "siamese", "deepcva")
GSD = 0.5
STRIP = 1024
#: Pasted changes per megapixel.
CHANGES_PER_MP = 2.0


@dataclass(frozen=True)
class DetectorRun:
    """One detector's tiled run on the pair, measured in its own child process."""

    detector: str
    seconds: float
    cpu_seconds: float
    mp_per_s: float
    mp_per_s_per_core: float
    peak_rss_bytes: int  # the child's peak, imports included
    rss_after_imports_bytes: int
    changed_fraction: float
    regions: int
    ratio_to_cva: float | None  # this detector's time over CVA's (None without a CVA run)


@dataclass(frozen=True)
class ChangeBenchmark:
    """The result of :func:`measure`."""

    source: str
    size: int
    megapixels: float
    cores: int
    tile: int
    runs: tuple[DetectorRun, ...]
    skipped: tuple[str, ...]  # one note per detector not run

    def to_dict(self) -> dict[str, object]:
        """Plain values for ``--json``."""
        return asdict(self)


def make_pair(folder: Path, size: int, datasets: Path | None, seed: int = 0) -> tuple[str, Path, Path]:
    """``(source, before, after)``: the SIZE² pair in FOLDER, generated unless already there."""
    joplin = None if datasets is None else datasets / JOPLIN_PRE
    source = str(joplin) if joplin is not None and joplin.is_file() else "generated"
    name = f"change-{size}-{'joplin' if source != 'generated' else 'generated'}-{seed}"
    before, after = folder / f"{name}-before.tif", folder / f"{name}-after.tif"
    if before.is_file() and after.is_file():
        return source, before, after
    folder.mkdir(parents=True, exist_ok=True)
    tile = read_array(joplin)[0][:3] if joplin is not None and source != "generated" else generated_texture(2048, seed)
    rng = np.random.default_rng(seed)
    count = max(4, round(CHANGES_PER_MP * size * size / 1e6))
    sides = rng.integers(8, 60, (count, 2))
    boxes = np.column_stack([rng.integers(0, size - 60, (count, 2)), sides])  # row, col, height, width
    colours = rng.integers(0, 256, (count, 3))
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:32615",
        "transform": Affine(GSD, 0, 400_000.0, 0, -GSD, 4_150_000.0),
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
        "predictor": 2,
    }
    parts = [path.with_name(f".{path.name}.part") for path in (before, after)]
    with rasterio.open(parts[0], "w", **profile) as dst_before, rasterio.open(parts[1], "w", **profile) as dst_after:
        for top in range(0, size, STRIP):
            rows = min(STRIP, size - top)
            strip = _mirrored(tile, top, rows, size)
            changed = strip.astype(np.float32) * 0.9 + 12 + rng.normal(0, 3, strip.shape).astype(np.float32)
            for (row, col, height, width), colour in zip(boxes, colours, strict=True):
                r0, r1 = max(row, top), min(row + height, top + rows)
                if r0 < r1:
                    changed[:, r0 - top : r1 - top, col : col + width] = colour[:, None, None]
            window = Window(0, top, size, rows)
            dst_before.write(strip, window=window)
            dst_after.write(np.clip(changed, 0, 255).astype(np.uint8), window=window)
    for part, path in zip(parts, (before, after), strict=True):
        part.replace(path)
    return source, before, after


def _mirrored(tile: np.ndarray, top: int, rows: int, size: int) -> np.ndarray:
    """Rows TOP..TOP+ROWS of TILE repeated over SIZE² with alternate copies mirrored."""

    def index(start: int, count: int, length: int) -> np.ndarray:
        i = np.arange(start, start + count)
        within = i % length
        return np.where((i // length) % 2 == 0, within, length - 1 - within)

    return np.ascontiguousarray(tile[:, index(top, rows, tile.shape[1])][:, :, index(0, size, tile.shape[2])])


def measure(
    size: int = 10_000,
    *,
    detectors: tuple[str, ...] = DETECTORS,
    tile: int = 1024,
    cache: Path = DEFAULT_CACHE,
    datasets: Path | None = DEFAULT_DATASETS,
) -> ChangeBenchmark:
    """Run each available detector of DETECTORS on the SIZE² pair, each in a fresh child process."""
    source, before, after = make_pair(cache, size, datasets)
    cores = os.cpu_count() or 1
    runs: list[DetectorRun] = []
    skipped: list[str] = []
    baseline: float | None = None
    for name in detectors:
        try:
            cls = registry.get(name)
        except (UnknownName, ImportError) as exc:
            skipped.append(f"{name}: not in this install ({exc})")
            continue
        if not cls.available():
            skipped.append(f"{name}: its model is not installed")
            continue
        with tempfile.TemporaryDirectory(prefix="sitewatch-bench-change-") as scratch:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
                child = pool.submit(_run_in_child, name, before, after, Path(scratch), tile).result()
        seconds = child["seconds"]
        baseline = seconds if name == "cva" else baseline
        mp_per_s = size * size / 1e6 / seconds
        runs.append(
            DetectorRun(
                detector=name,
                seconds=seconds,
                cpu_seconds=child["cpu_seconds"],
                mp_per_s=mp_per_s,
                mp_per_s_per_core=mp_per_s / cores,
                peak_rss_bytes=int(child["peak_rss"]),
                rss_after_imports_bytes=int(child["rss_after_imports"]),
                changed_fraction=child["changed_fraction"],
                regions=int(child["regions"]),
                ratio_to_cva=None if baseline is None else seconds / baseline,
            )
        )
    return ChangeBenchmark(source, size, size * size / 1e6, cores, tile, tuple(runs), tuple(skipped))


def _run_in_child(name: str, before: Path, after: Path, scratch: Path, tile: int) -> dict[str, float]:
    """Runs in the child: one tiled detection, timed, with the child's memory."""
    rss_after_imports = _status_bytes("VmRSS")
    detector = registry.get(name)()
    wall, cpu = time.perf_counter(), time.process_time()
    result = detect_rasters(before, after, detector, scratch / "probability.tif", scratch / "mask.tif", tile=tile)
    return {
        "seconds": time.perf_counter() - wall,
        "cpu_seconds": time.process_time() - cpu,
        "peak_rss": _peak_rss_bytes(),
        "rss_after_imports": rss_after_imports,
        "changed_fraction": result.changed_fraction,
        "regions": len(result.regions),
    }


def format_table(result: ChangeBenchmark) -> str:
    """A short plain-text table, one row per detector."""
    mib = 1024**2
    lines = [
        f"{result.size}x{result.size} RGB pair ({result.megapixels:.0f} MP) from {result.source}; "
        f"tile {result.tile}; {result.cores} cores",
        f"{'detector':<12}{'wall s':>8}{'CPU s':>8}{'MP/s':>8}{'/core':>8}{'peak MiB':>10}{'x cva':>7}{'changed':>9}",
    ]
    for run in result.runs:
        ratio = "" if run.ratio_to_cva is None else f"{run.ratio_to_cva:.2f}"
        lines.append(
            f"{run.detector:<12}{run.seconds:>8.1f}{run.cpu_seconds:>8.1f}{run.mp_per_s:>8.2f}"
            f"{run.mp_per_s_per_core:>8.2f}{run.peak_rss_bytes / mib:>10.0f}{ratio:>7}{run.changed_fraction:>9.2%}"
        )
    lines += [f"skipped {note}" for note in result.skipped]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m bench change``."""
    parser.add_argument("--size", type=int, default=10_000, help="Width and height of the pair in px (10000).")
    parser.add_argument("--tile", type=int, default=1024, help="Tile width and height in px (1024).")
    parser.add_argument(
        "--detector", action="append", help=f"Detector to run (repeat; default: {', '.join(DETECTORS)})."
    )
    parser.add_argument(
        "--cache", type=Path, default=DEFAULT_CACHE, help="Folder for the generated pair (default: build/bench)."
    )
    add_source_options(parser, "A generated texture")


def run(args: argparse.Namespace) -> int:
    """Build or reuse the pair, measure, print; a refused input is one line on stderr."""
    return print_result(
        lambda: measure(
            args.size,
            detectors=tuple(args.detector or DETECTORS),
            tile=args.tile,
            cache=args.cache,
            datasets=None if args.no_datasets else args.datasets,
        ),
        args.json,
        format_table,
    )
