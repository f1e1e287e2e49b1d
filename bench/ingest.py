"""Ingest throughput: ``sitewatch`` ingest against a plain rasterio read of the same files.

A plain read is the floor any ingest pays (decode every pixel once). Ingest adds hashing, a copy into
the store, one warp onto the site grid and a COG with overviews and a mask, so the ratio of the two
times says what those cost. Each site here covers its scenes' whole footprint, so every pixel is
warped and written: the worst case. Scenes are ingested finest first, so no site grid is refined
and each scene is warped exactly once.

Both phases run in one fresh child process (so the parent's arrays do not count), alternating, each
repeated; times are medians. Peak memory is the child's peak resident set size (GDAL allocates in C,
which tracemalloc cannot see), taken after one untimed ingest that is the child's first work, so it
is the ingest's own peak on top of the imports; the child's peak after all runs is reported too.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.warp import transform_bounds
from scipy.ndimage import zoom
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from bench import add_source_options, print_result
from sitewatch.catalog.models import Site
from sitewatch.ingest.pipeline import ingest
from sitewatch.ingest.sources import SceneSource
from sitewatch.io.raster import georef_of, gsd_of, open_raster, require_georef
from sitewatch.sites import new_site
from sitewatch.workspace import Workspace

#: The real pair measured beside the generated scenes, inside the shared datasets.
JOPLIN_FILES = ("joplin_pre_nad83-utm15n_0.6m.tif", "joplin_post_wgs84.tif")
#: Generated scenes sit in UTM 15N away from the Joplin pair, so the two never share a site.
GENERATED_ORIGIN = (400_000.0, 4_150_000.0)
MB = 1e6


@dataclass(frozen=True)
class Phase:
    """One measured phase: medians over the repeats."""

    seconds: float
    cpu_seconds: float  # process CPU time, all threads (GDAL warps and writes on several)
    mb_per_s: float  # decoded pixel bytes of the input files per wall second
    mp_per_s: float  # input megapixels (width x height) per wall second


@dataclass(frozen=True)
class IngestBenchmark:
    """The result of :func:`measure`."""

    files: tuple[str, ...]
    megapixels: float
    megabytes: float  # decoded: width x height x bands x bytes per sample
    megabytes_on_disk: float
    repeats: int
    cpus: int
    baseline: Phase
    ingest: Phase
    rss_after_imports_bytes: int  # the child's resident size before any work (0 without /proc)
    ingest_peak_rss_bytes: int  # the child's peak after its first ingest (imports included)
    child_peak_rss_bytes: int  # the child's peak after every run

    @property
    def ratio(self) -> float:
        """Ingest time over plain-read time (medians)."""
        return self.ingest.seconds / self.baseline.seconds

    def to_dict(self) -> dict[str, object]:
        """Plain values for ``--json``."""
        return {**asdict(self), "ratio": self.ratio}


@dataclass
class _Samples:
    """Raw timings from the child process, one entry per repeat."""

    baseline_s: list[float] = field(default_factory=list)
    baseline_cpu_s: list[float] = field(default_factory=list)
    ingest_s: list[float] = field(default_factory=list)
    ingest_cpu_s: list[float] = field(default_factory=list)
    rss_after_imports: int = 0
    ingest_peak_rss: int = 0
    child_peak_rss: int = 0


def generate_scenes(folder: Path, *, count: int = 3, size: int = 2048, gsd: float = 0.5, seed: int = 0) -> list[Path]:
    """COUNT seeded RGB uint8 scenes of SIZE² px, stored as providers deliver them (tiled, DEFLATE).

    The pixels are smooth fields plus noise, so they compress and resample like imagery rather than
    like pure noise (which would make DEFLATE and the read unrealistically slow).
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    east, north = GENERATED_ORIGIN
    paths = []
    for number in range(count):
        coarse = rng.uniform(0, 255, (3, size // 32 + 2, size // 32 + 2))
        smooth = zoom(coarse, (1, size / coarse.shape[1], size / coarse.shape[2]), order=1)[:, :size, :size]
        data = np.clip(smooth + rng.normal(0, 12, smooth.shape), 0, 255).astype(np.uint8)
        path = folder / f"generated_{number}_{size}px.tif"
        profile = {
            "driver": "GTiff",
            "width": size,
            "height": size,
            "count": 3,
            "dtype": "uint8",
            "crs": "EPSG:32615",
            "transform": Affine(gsd, 0, east, 0, -gsd, north),
            "tiled": True,
            "blockxsize": 512,
            "blockysize": 512,
            "compress": "deflate",
            "predictor": 2,
        }
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data)
        paths.append(path)
    return paths


@dataclass(frozen=True)
class _Input:
    """What the benchmark needs to know of one input file before measuring."""

    path: Path
    gsd: float
    outline: BaseGeometry  # WGS84 bounding box
    pixels: int
    decoded_bytes: int


def _describe(path: Path) -> _Input:
    with open_raster(path) as src:
        georef = require_georef(path, georef_of(src, path))
        return _Input(
            path=path,
            gsd=gsd_of(georef, src.width, src.height),
            outline=box(*transform_bounds(src.crs, "EPSG:4326", *src.bounds)),
            pixels=src.width * src.height,
            decoded_bytes=src.width * src.height * src.count * np.dtype(src.dtypes[0]).itemsize,
        )


def plan_sites(outlines: Sequence[BaseGeometry]) -> list[Site]:
    """One site per group of overlapping footprints, covering the group's bounding box."""
    merged = unary_union(list(outlines))
    groups = getattr(merged, "geoms", [merged])
    return [new_site(f"bench-{number}", box(*group.bounds)) for number, group in enumerate(groups)]


def measure(files: Sequence[Path], *, repeats: int = 3, workdir: Path | None = None) -> IngestBenchmark:
    """Time a plain read and a sitewatch ingest of FILES, REPEATS times each, in one child process.

    Args:
        files: Georeferenced rasters (acquisition times are supplied, so they need none).
        repeats: Measurements per phase; medians are reported.
        workdir: Where the throwaway workspaces go (default: the system temp folder). Put it on the
            disk you care about: ingest copies every scene into the store.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    # finest first, so no site grid is refined mid-run and each scene is warped exactly once
    inputs = sorted((_describe(Path(f)) for f in files), key=lambda i: i.gsd)
    ordered = [i.path for i in inputs]
    sites = plan_sites([i.outline for i in inputs])
    pixels = sum(i.pixels for i in inputs)
    decoded = sum(i.decoded_bytes for i in inputs)
    on_disk = sum(p.stat().st_size for p in ordered)
    with tempfile.TemporaryDirectory(prefix="sitewatch-bench-", dir=workdir) as scratch:
        # spawn: a clean process (no copy of this one's memory), and no fork under GDAL's threads
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            samples = pool.submit(_measure_in_child, ordered, sites, repeats, Path(scratch)).result()

    def phase(seconds: list[float], cpu: list[float]) -> Phase:
        wall = statistics.median(seconds)
        return Phase(wall, statistics.median(cpu), decoded / MB / wall, pixels / 1e6 / wall)

    return IngestBenchmark(
        files=tuple(str(p) for p in ordered),
        megapixels=pixels / 1e6,
        megabytes=decoded / MB,
        megabytes_on_disk=on_disk / MB,
        repeats=repeats,
        cpus=os.cpu_count() or 1,
        baseline=phase(samples.baseline_s, samples.baseline_cpu_s),
        ingest=phase(samples.ingest_s, samples.ingest_cpu_s),
        rss_after_imports_bytes=samples.rss_after_imports,
        ingest_peak_rss_bytes=samples.ingest_peak_rss,
        child_peak_rss_bytes=samples.child_peak_rss,
    )


def _measure_in_child(files: list[Path], sites: list[Site], repeats: int, scratch: Path) -> _Samples:
    """Runs in the child: one untimed ingest for the memory peak (it also warms the page cache and
    GDAL), then the two phases alternating, so drift hits both alike."""
    samples = _Samples(rss_after_imports=_status_bytes("VmRSS"))
    start = datetime(2024, 1, 1, tzinfo=UTC)
    sources = [
        SceneSource(path=path, origin=str(path), acquired=start + timedelta(days=number))
        for number, path in enumerate(files)
    ]
    _timed_ingest(sources, sites, scratch / "workspace-first")
    samples.ingest_peak_rss = _peak_rss_bytes()
    for number in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        _read_all(files)
        samples.baseline_s.append(time.perf_counter() - wall)
        samples.baseline_cpu_s.append(time.process_time() - cpu)
        wall_s, cpu_s = _timed_ingest(sources, sites, scratch / f"workspace-{number}")
        samples.ingest_s.append(wall_s)
        samples.ingest_cpu_s.append(cpu_s)
    samples.child_peak_rss = _peak_rss_bytes()
    return samples


def _timed_ingest(sources: Sequence[SceneSource], sites: Sequence[Site], root: Path) -> tuple[float, float]:
    """Ingest SOURCES into a fresh workspace at ROOT (its setup untimed); (wall, CPU) seconds."""
    with Workspace.create(root) as ws:
        ws.catalog.add_sites(sites)
        wall, cpu = time.perf_counter(), time.process_time()
        outcomes = ingest(ws, sources)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    failed = [f"{o.source}: {o.status} {o.message}" for o in outcomes if o.status != "ingested"]
    if failed:
        raise RuntimeError("ingest did not ingest every file, so its time means nothing: " + "; ".join(failed))
    shutil.rmtree(root)
    return wall, cpu


def _read_all(files: Sequence[Path]) -> None:
    """The baseline: a plain rasterio read of every band of every file."""
    for path in files:
        with rasterio.open(path) as src:
            src.read()


def _peak_rss_bytes() -> int:
    """This process's peak resident set size so far."""
    peak = _status_bytes("VmHWM")
    if peak:
        return peak
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024  # bytes on macOS, KiB elsewhere


def _status_bytes(key: str) -> int:
    """A ``kB`` line of /proc/self/status in bytes (0 where there is no /proc)."""
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return 0
    for line in lines:
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) * 1024
    return 0


def default_files(folder: Path, datasets: Path | None, *, count: int, size: int, seed: int) -> list[Path]:
    """Generated scenes in FOLDER, plus the Joplin pair when the shared datasets are there."""
    files = generate_scenes(folder, count=count, size=size, seed=seed)
    joplin = None if datasets is None else datasets / "joplin-tornado"
    if joplin is not None and all((joplin / name).is_file() for name in JOPLIN_FILES):
        files += [joplin / name for name in JOPLIN_FILES]
    return files


def format_table(result: IngestBenchmark) -> str:
    """A short plain-text table of the medians."""
    mib = 1024**2
    lines = [
        f"{len(result.files)} files, {result.megapixels:.1f} MP, {result.megabytes:.1f} MB decoded "
        f"({result.megabytes_on_disk:.1f} MB on disk); median of {result.repeats}; {result.cpus} CPUs",
        f"{'phase':<8}{'wall s':>8}{'CPU s':>8}{'MB/s':>8}{'MP/s':>8}",
    ]
    for name, phase in (("read", result.baseline), ("ingest", result.ingest)):
        lines.append(
            f"{name:<8}{phase.seconds:>8.2f}{phase.cpu_seconds:>8.2f}{phase.mb_per_s:>8.1f}{phase.mp_per_s:>8.1f}"
        )
    lines += [
        f"ingest / read time: {result.ratio:.1f}x",
        f"peak RSS: {result.ingest_peak_rss_bytes / mib:.0f} MiB after one ingest "
        f"({result.rss_after_imports_bytes / mib:.0f} MiB after imports), "
        f"{result.child_peak_rss_bytes / mib:.0f} MiB after all runs",
    ]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m bench ingest``."""
    parser.add_argument("--files", nargs="+", type=Path, help="Georeferenced rasters to use instead of the defaults.")
    parser.add_argument("--count", type=int, default=3, help="Scenes to generate (default 3).")
    parser.add_argument("--size", type=int, default=2048, help="Generated scene width and height in px (2048).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the generated scenes (0).")
    parser.add_argument("--repeats", type=int, default=3, help="Measurements per phase; medians reported (3).")
    add_source_options(parser, "Generated scenes")
    parser.add_argument("--workdir", type=Path, help="Folder for generated scenes and workspaces (default: temp).")


def run(args: argparse.Namespace) -> int:
    """Generate or take the files, measure, print; a refused input file is one line on stderr."""
    with tempfile.TemporaryDirectory(prefix="sitewatch-bench-scenes-", dir=args.workdir) as scenes:
        if args.files:
            files = list(args.files)
        else:
            datasets = None if args.no_datasets else args.datasets
            files = default_files(Path(scenes), datasets, count=args.count, size=args.size, seed=args.seed)
        return print_result(lambda: measure(files, repeats=args.repeats, workdir=args.workdir), args.json, format_table)
