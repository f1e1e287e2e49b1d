"""Tile latency: the web app's tile route over real HTTP against rio-tiler rendering the same tiles in-process.

The observation is real: the BEFORE image of ``python -m bench change`` (SIZE² RGB at 0.5 m, 10,000²
by default, cached under ``build/bench``: the Joplin scene tiled with mirrored copies where
``../shared/datasets`` has it, else a generated texture) ingested by sitewatch into a throwaway
workspace, so the COG is exactly what ingest writes (DEFLATE, 256 px blocks, average overviews, a mask).

The tile list is seeded and has no repeats (a tile cache would otherwise be measured): 256 px
WebMercatorQuad tiles at the zoom where a tile pixel matches the observation's (1:1) and the three
coarser zooms, which read overviews (40/30/20/10 % of the requests). Warm-up tiles come from the
same zooms but are not measured.

Served: the whole web app (:func:`sitewatch.web.app.create_app`: its security middleware included)
under ``python -m uvicorn`` on 127.0.0.1 and a free port, in its own process (its own interpreter
lock), stopped at the end; CLIENTS threads each keep one ``httpx.Client`` connection, as a browser
does, and take the next tile from the list. Baseline: rio-tiler in this process once the server is
gone, the same tiles, one open ``Reader`` per thread, ``tile`` + ``rescale`` to the observation's
stretch + ``render`` to PNG with its defaults, on one thread and on CLIENTS threads. Latencies are
per request; the ratio is the served median over the baseline's one-thread median. The number of
requests is fixed and every phase stops after :data:`MAX_PHASE_S`. The machine may be shared: the
load average before the run is printed with the results. Target: served p95 under 150 ms.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
from fastapi import FastAPI
from morecantile.commons import Tile
from rasterio.warp import transform_bounds
from rio_tiler.constants import WEB_MERCATOR_TMS
from rio_tiler.io import Reader
from shapely.geometry import box

from bench import DEFAULT_DATASETS, add_source_options, print_result
from bench.change import DEFAULT_CACHE, make_pair
from sitewatch.ingest.pipeline import ingest
from sitewatch.ingest.sources import SceneSource
from sitewatch.io.raster import open_raster
from sitewatch.sites import new_site
from sitewatch.web.app import create_app
from sitewatch.web.tiles import ObservationIndex, TileSource, style_of
from sitewatch.workspace import Workspace

SITE = "bench tiles"
REPOSITORY = Path(__file__).resolve().parents[1]
#: How the server process is told which workspace to serve.
ROOT_VARIABLE = "SITEWATCH_BENCH_TILES_ROOT"
TARGET_P95_MS = 150.0
#: Share of the requests at the 1:1 zoom and at each of the next three coarser ones.
ZOOM_SHARES = (0.4, 0.3, 0.2, 0.1)
#: How long the server may take to start, and the longest the measured requests may run.
START_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 60.0
#: No phase takes new tiles after this long (its figures are then over the tiles it did).
MAX_PHASE_S = 300.0


@dataclass(frozen=True)
class Latency:
    """One way of producing the tile list: per-request latencies and throughput."""

    name: str
    threads: int
    requests: int
    seconds: float  # wall time for all of them
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float

    @property
    def tiles_per_s(self) -> float:
        """Requests completed per wall second."""
        return self.requests / self.seconds

    @classmethod
    def of(cls, name: str, threads: int, latencies_s: Sequence[float], seconds: float) -> Latency:
        """Percentiles of LATENCIES_S (seconds)."""
        ms = np.asarray(latencies_s) * 1000
        p50, p95, p99 = (float(v) for v in np.percentile(ms, [50, 95, 99]))
        return cls(name, threads, len(ms), seconds, p50, p95, p99, float(ms.max()))


@dataclass(frozen=True)
class TilesBenchmark:
    """The result of :func:`measure`."""

    source: str
    size: int
    cores: int
    load_before: float  # 1-minute load average when the run started (0 where unknown)
    ingest_s: float
    zooms: tuple[int, ...]  # 1:1 first
    warmup: int
    statuses: dict[int, int]  # served responses by HTTP status
    served_kib: float  # mean PNG size served
    client_cpu_s: float  # this process's CPU (the clients) while the served tiles were measured
    server_cpu_s: float  # the server's, workers included (0 where there is no /proc)
    served: Latency
    direct: Latency  # rio-tiler in-process, one thread
    direct_threads: Latency  # rio-tiler in-process, as many threads as clients

    @property
    def ratio(self) -> float:
        """Served median latency over rio-tiler's one-thread median time per tile."""
        return self.served.p50_ms / self.direct.p50_ms

    @property
    def meets_target(self) -> bool:
        """Served p95 under :data:`TARGET_P95_MS`."""
        return self.served.p95_ms < TARGET_P95_MS

    def to_dict(self) -> dict[str, object]:
        """Plain values for ``--json``."""
        latencies = {
            name: {**asdict(run), "tiles_per_s": run.tiles_per_s}
            for name, run in (("served", self.served), ("direct", self.direct), ("direct_threads", self.direct_threads))
        }
        return {**asdict(self), **latencies, "ratio": self.ratio, "meets_target": self.meets_target}


def make_observation(root: Path, scene: Path) -> tuple[float, TileSource]:
    """Ingest SCENE into a new workspace at ROOT with one site around it; (seconds, its tile source)."""
    with open_raster(scene) as src:
        outline = box(*transform_bounds(src.crs, "EPSG:4326", *src.bounds))
    with Workspace.create(root) as ws:
        ws.catalog.add_site(new_site(SITE, outline))
        start = time.perf_counter()
        acquired = datetime(2024, 5, 1, tzinfo=UTC)
        (outcome,) = ingest(ws, [SceneSource(path=scene, origin=str(scene), acquired=acquired)], copy=False)
        seconds = time.perf_counter() - start
        if outcome.status != "ingested":
            raise RuntimeError(f"ingest of {scene} failed, so there is nothing to serve: {outcome.message}")
        (obs,) = ws.catalog.observations(ws.catalog.site(SITE))
    assert obs.id is not None
    source = ObservationIndex(root).lookup(SITE, obs.id)
    assert source is not None
    return seconds, source


def tile_list(path: Path, requests: int, warmup: int, seed: int) -> tuple[tuple[int, ...], list[Tile], list[Tile]]:
    """``(zooms, warm-up tiles, measured tiles)``: distinct tiles that rio-tiler says touch the image."""
    rng = np.random.default_rng(seed)
    with Reader(str(path)) as reader:
        finest = reader.maxzoom
        zooms = tuple(z for z in range(finest, finest - len(ZOOM_SHARES), -1) if z >= reader.minzoom)
        west, south, east, north = reader.get_geographic_bounds("EPSG:4326")
        pools = []
        for z in zooms:
            tiles = [t for t in WEB_MERCATOR_TMS.tiles(west, south, east, north, [z]) if reader.tile_exists(*t)]
            pools.append([tiles[i] for i in rng.permutation(len(tiles))])
    warm = [pool.pop() for pool in pools for _ in range(min(len(pool) // 4, -(-warmup // len(pools))))][:warmup]
    wanted = [round(requests * share) for share in ZOOM_SHARES[: len(pools)]]
    taken = [pool[:n] for pool, n in zip(pools, wanted, strict=True)]
    spare = pools[0][len(taken[0]) :]  # the 1:1 zoom makes up for coarser zooms with too few tiles
    measured = [t for part in taken for t in part] + spare[: max(0, requests - sum(map(len, taken)))]
    return zooms, warm, [measured[i] for i in rng.permutation(len(measured))]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def bench_app() -> FastAPI:
    """The app uvicorn serves (``--factory``): the whole web app, as ``sitewatch serve`` builds it."""
    return create_app(Path(os.environ[ROOT_VARIABLE]))


def _start_server(root: Path, port: int, workers: int) -> subprocess.Popen[bytes]:
    """uvicorn as ``sitewatch serve`` would run it, in its own process (its own interpreter lock)."""
    command = [sys.executable, "-m", "uvicorn", f"{__name__}:bench_app", "--factory", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", str(workers), "--log-level", "warning", "--no-access-log"]
    return subprocess.Popen(command, cwd=REPOSITORY, env={**os.environ, ROOT_VARIABLE: str(root)})


def _stop(server: subprocess.Popen[bytes]) -> None:
    server.terminate()  # uvicorn shuts down gracefully, workers included
    try:
        server.wait(10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def _cpu_seconds(pid: int) -> float:
    """CPU time of process PID and its children so far (0 where there is no /proc)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):  # the process, or a child (parent pid)
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


Fetch = Callable[[Tile], tuple[int, int]]  # a tile -> (HTTP status, bytes)


def _run_clients(
    connect: Callable[[], AbstractContextManager[Fetch]], tiles: Sequence[Tile], clients: int
) -> tuple[list[float], Counter[int], int, float]:
    """Fetch every tile from CLIENTS threads, each with its own CONNECT()ion, opened and closed in
    the thread (GDAL's environment is per thread); (latencies, statuses, bytes, wall seconds)."""
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    sizes = [0]
    lock = threading.Lock()
    queue = iter(tiles)
    errors: list[BaseException] = []

    def client() -> None:
        try:
            with connect() as fetch:
                while not errors and time.monotonic() < deadline:
                    with lock:
                        tile = next(queue, None)
                    if tile is None:
                        return
                    start = time.perf_counter()
                    status, size = fetch(tile)
                    elapsed = time.perf_counter() - start
                    with lock:
                        latencies.append(elapsed)
                        statuses[status] += 1
                        sizes[0] += size
        except BaseException as exc:
            errors.append(exc)

    deadline = time.monotonic() + MAX_PHASE_S
    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return latencies, statuses, sizes[0], time.perf_counter() - start


@dataclass(frozen=True)
class _Served:
    latency: Latency
    statuses: Counter[int]
    kib: float  # mean size of a PNG
    client_cpu_s: float
    server_cpu_s: float


def _measure_served(
    root: Path, source: TileSource, warm: Sequence[Tile], tiles: Sequence[Tile], clients: int, workers: int
) -> _Served:
    """Start the server, warm it up, measure TILES, stop it."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    url = f"/tiles/{SITE}/{source.observation_id}/{{z}}/{{x}}/{{y}}.png"

    @contextmanager
    def connect() -> Iterator[Fetch]:
        with httpx.Client(base_url=base, timeout=REQUEST_TIMEOUT_S) as client:

            def fetch(tile: Tile) -> tuple[int, int]:
                response = client.get(url.format(z=tile.z, x=tile.x, y=tile.y))
                if response.status_code not in (200, 204):
                    raise RuntimeError(f"tile {tile}: HTTP {response.status_code} {response.text[:200]}")
                return response.status_code, len(response.content)

            yield fetch

    server = _start_server(root, port, workers)
    try:
        _wait_for(base, server)
        _run_clients(connect, warm, clients)
        cpu, server_cpu = time.process_time(), _cpu_seconds(server.pid)
        latencies, statuses, size, seconds = _run_clients(connect, tiles, clients)
        cpu, server_cpu = time.process_time() - cpu, _cpu_seconds(server.pid) - server_cpu
    finally:
        _stop(server)
    name = f"served, {workers} process{'es' if workers > 1 else ''}"
    latency = Latency.of(name, clients, latencies, seconds)
    return _Served(latency, statuses, size / max(1, statuses[200]) / 1024, cpu, server_cpu)


def _wait_for(base: str, server: subprocess.Popen[bytes]) -> None:
    """Until the server answers (any status), or it died, or :data:`START_TIMEOUT_S` passed."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the tile server exited with status {server.returncode} before answering")
        try:
            httpx.get(f"{base}/tiles/-/0/0/0/0.png", timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"the tile server did not answer within {START_TIMEOUT_S:.0f} s")


def _measure_direct(source: TileSource, tiles: Sequence[Tile], threads: int) -> Latency:
    """rio-tiler in this process: one open Reader per thread, tile + rescale + PNG with its defaults."""
    stretch = style_of(source.file_key, source.band_names).stretch
    in_range = tuple(zip(stretch.low, stretch.high, strict=True))

    @contextmanager
    def connect() -> Iterator[Fetch]:
        with Reader(str(source.path)) as reader:

            def fetch(tile: Tile) -> tuple[int, int]:
                image = reader.tile(tile.x, tile.y, tile.z, indexes=stretch.bands)
                image.rescale(in_range=in_range)
                return 200, len(image.render(img_format="PNG"))

            yield fetch

    latencies, _, _, seconds = _run_clients(connect, tiles, threads)
    return Latency.of(f"rio-tiler, {threads} thread{'s' if threads > 1 else ''}", threads, latencies, seconds)


def measure(
    size: int = 10_000,
    *,
    requests: int = 600,
    clients: int = 20,
    workers: int = 1,
    warmup: int = 60,
    seed: int = 0,
    cache: Path = DEFAULT_CACHE,
    datasets: Path | None = DEFAULT_DATASETS,
    workdir: Path | None = None,
) -> TilesBenchmark:
    """Serve the ingested SIZE² observation and time REQUESTS distinct tiles from CLIENTS clients,
    then rio-tiler on the same tiles in-process."""
    if requests < 1 or clients < 1:
        raise ValueError(f"requests and clients must be at least 1, got {requests} and {clients}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    source_name, scene, _ = make_pair(cache, size, datasets, seed)
    with tempfile.TemporaryDirectory(prefix="sitewatch-bench-tiles-", dir=workdir) as scratch:
        root = Path(scratch) / "workspace"
        ingest_s, source = make_observation(root, scene)
        zooms, warm, tiles = tile_list(source.path, requests, warmup, seed)
        served = _measure_served(root, source, warm, tiles, clients, workers)
        _measure_direct(source, warm, 1)
        direct = _measure_direct(source, tiles, 1)
        direct_threads = _measure_direct(source, tiles, clients)
    return TilesBenchmark(
        source=source_name,
        size=size,
        cores=os.cpu_count() or 1,
        load_before=load,
        ingest_s=ingest_s,
        zooms=zooms,
        warmup=len(warm),
        statuses=dict(sorted(served.statuses.items())),
        served_kib=served.kib,
        client_cpu_s=served.client_cpu_s,
        server_cpu_s=served.server_cpu_s,
        served=served.latency,
        direct=direct,
        direct_threads=direct_threads,
    )


def format_table(result: TilesBenchmark) -> str:
    """A short plain-text table, one row per way of producing the tiles."""
    lines = [
        f"{result.size}x{result.size} RGB observation at 0.5 m from {result.source} (ingest {result.ingest_s:.1f} s); "
        f"zooms {', '.join(map(str, result.zooms))}; {result.served.requests} tiles after {result.warmup} warm-up; "
        f"{result.cores} cores, load {result.load_before:.2f} before",
        f"{'':<22}{'threads':>8}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}{'max ms':>8}{'tiles/s':>9}",
    ]
    for run in (result.served, result.direct, result.direct_threads):
        lines.append(
            f"{run.name:<22}{run.threads:>8}{run.p50_ms:>8.1f}{run.p95_ms:>8.1f}{run.p99_ms:>8.1f}"
            f"{run.max_ms:>8.1f}{run.tiles_per_s:>9.1f}"
        )
    statuses = ", ".join(f"{count} x {status}" for status, count in result.statuses.items())
    verdict = "meets" if result.meets_target else "misses"
    n = result.served.requests
    lines += [
        f"served: {statuses}; {result.served_kib:.0f} KiB a PNG; CPU ms a tile: server "
        f"{1000 * result.server_cpu_s / n:.1f}, clients {1000 * result.client_cpu_s / n:.1f}",
        f"served p50 / rio-tiler one-thread p50: {result.ratio:.2f}x",
        f"served p95 {result.served.p95_ms:.0f} ms {verdict} the {TARGET_P95_MS:.0f} ms target",
    ]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m bench tiles``."""
    parser.add_argument("--size", type=int, default=10_000, help="Width and height of the observation in px (10000).")
    parser.add_argument("--requests", type=int, default=600, help="Distinct tiles measured (600).")
    parser.add_argument("--clients", type=int, default=20, help="Concurrent clients, and baseline threads (20).")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (1).")
    parser.add_argument("--warmup", type=int, default=60, help="Warm-up requests before measuring (60).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the tile list and of a generated image (0).")
    parser.add_argument(
        "--quick", action="store_true", help="A 2048² observation, 120 tiles, 20 warm-up: a check, not a figure."
    )
    parser.add_argument(
        "--cache", type=Path, default=DEFAULT_CACHE, help="Folder for the generated image (default: build/bench)."
    )
    parser.add_argument("--workdir", type=Path, help="Folder for the throwaway workspace (default: temp).")
    add_source_options(parser, "A generated texture")


def run(args: argparse.Namespace) -> int:
    """Build or reuse the image, measure, print; a refused input is one line on stderr."""
    size, requests, warmup = (2048, 120, 20) if args.quick else (args.size, args.requests, args.warmup)
    return print_result(
        lambda: measure(
            size,
            requests=requests,
            clients=args.clients,
            workers=args.workers,
            warmup=warmup,
            seed=args.seed,
            cache=args.cache,
            datasets=None if args.no_datasets else args.datasets,
            workdir=args.workdir,
        ),
        args.json,
        format_table,
    )
