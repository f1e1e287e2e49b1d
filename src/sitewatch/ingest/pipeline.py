"""Ingest: scene sources into scenes (hashed, copied into the store) and observations on site grids.

Each scene is atomic: its files are written beside their final names and renamed, and its catalog
rows (scene, observations, a refined site grid) are committed in one transaction; on any failure the
new files are removed. Writers hold the workspace lock while they touch the store, so a store file
that the catalog does not reference, seen under the lock, is left over from a killed run and is
removed. Re-running an ingest converges: scenes already in the catalog (same SHA-256) are skipped.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import shutil
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal
from uuid import uuid4

from affine import Affine
from pyproj import CRS
from rasterio.io import DatasetReader
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from sitewatch.catalog.models import Observation, Scene, Site
from sitewatch.errors import InputError, NoOverlapError, SitewatchError, WorkspaceError
from sitewatch.grid import SiteGrid, to_crs
from sitewatch.ingest.metadata import acquired_from_tags, provenance_from_tags
from sitewatch.ingest.observe import ObservationFile, observe
from sitewatch.ingest.sources import SceneSource
from sitewatch.io.raster import Georef, georef_of, gsd_of, open_raster, require_georef, transform_of
from sitewatch.workspace import Workspace

log = logging.getLogger(__name__)

Status = Literal["ingested", "duplicate", "no-site", "failed"]


@dataclass(frozen=True)
class IngestOutcome:
    """What happened to one source."""

    source: str
    status: Status
    message: str = ""
    scene_id: int | None = None
    sites: tuple[str, ...] = ()
    acquired: str | None = None


@dataclass(frozen=True)
class SceneDone:
    """Progress event: one more source handled."""

    outcome: IngestOutcome
    done: int
    total: int


@dataclass
class _Staged:
    """Files written for one scene, removed unless the transaction commits."""

    files: list[Path] = field(default_factory=list)
    replaced: list[Path] = field(default_factory=list)


def sha256_of(path: Path) -> str:
    """SHA-256 of a file, streamed."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def store_lock(ws: Workspace) -> Iterator[None]:
    """The workspace's writer lock (released by the OS if the process is killed)."""
    lock_path = ws.root / ".lock"
    with lock_path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def collect_garbage(ws: Workspace) -> list[Path]:
    """Remove store files no catalog row refers to (left by a killed run). Call under the lock."""
    scenes = ws.catalog.scenes()
    referenced = {str(s.path) for s in scenes} | {str(m) for s in scenes for _, m in s.masks}
    referenced |= ws.catalog.all_observation_paths()
    removed = []
    for folder in (ws.store / "scenes", ws.store / "observations"):
        for path in sorted(folder.rglob("*")):
            if path.is_file() and str(path.relative_to(ws.store)) not in referenced:
                path.unlink()
                removed.append(path)
    if removed:
        log.info("removed %d store files left by an interrupted run", len(removed))
    return removed


def ingest(
    ws: Workspace,
    sources: Sequence[SceneSource],
    *,
    site_names: Sequence[str] = (),
    copy: bool = True,
    on_progress: Callable[[SceneDone], None] | None = None,
) -> list[IngestOutcome]:
    """Ingest every source; one failing source is reported and does not stop the others."""
    sites = [ws.catalog.site(name) for name in site_names]
    outcomes = []
    with store_lock(ws):
        collect_garbage(ws)
    for number, source in enumerate(sources, start=1):
        try:
            outcome = ingest_one(ws, source, sites=sites, copy=copy)
        except SitewatchError as exc:
            outcome = IngestOutcome(source=source.origin, status="failed", message=str(exc))
        outcomes.append(outcome)
        if on_progress is not None:
            on_progress(SceneDone(outcome=outcome, done=number, total=len(sources)))
    return outcomes


def ingest_one(ws: Workspace, source: SceneSource, *, sites: Sequence[Site] = (), copy: bool = True) -> IngestOutcome:
    """Ingest one source: scene row, stored copy and one observation per intersecting site."""
    limits = ws.settings.limits
    path = source.path
    with open_raster(path, limits) as src:
        georef = _georef(src, source)
        tags = src.tags()
        width, height, count, dtype = src.width, src.height, src.count, src.dtypes[0]
        sha = sha256_of(path)
        if (existing := ws.catalog.scene_by_hash(sha)) is not None:
            return IngestOutcome(source.origin, "duplicate", f"same content as scene {existing.id}", existing.id)
        acquired = source.acquired or acquired_from_tags(tags, str(path))
        if acquired is None:
            raise InputError(path, "no acquisition time in its metadata; give --datetime")
        footprint = _footprint(georef, width, height, path)
        gsd = source.gsd or gsd_of(georef, width, height)
        targets = _target_sites(ws, sites, footprint, path)
        if not targets:
            return IngestOutcome(source.origin, "no-site", "intersects no site (add one with `sitewatch site add`)")
        provenance = provenance_from_tags(tags)
        scene = Scene(
            sha256=sha,
            path=Path("scenes") / f"{sha}{path.suffix.lower()}",
            source=source.origin,
            acquired=acquired,
            footprint=footprint,
            gsd=gsd,
            width=width,
            height=height,
            bands=count,
            dtype=dtype,
            crs=georef.crs.to_wkt(),
            provider=source.provider or provenance["provider"],
            sensor=source.sensor or provenance["sensor"],
            licence=source.licence or provenance["licence"],
            attribution=source.attribution or provenance["attribution"],
            band_names=source.band_names or tuple(d or f"b{i + 1}" for i, d in enumerate(src.descriptions)),
            transform=tuple(georef.transform)[:6] if georef.transform != src.transform or src.crs is None else None,
            masks=tuple(
                (kind, Path("scenes") / f"{sha}.mask-{kind}{mask.suffix.lower()}") for kind, mask in source.masks
            ),
        )
        if not copy:
            scene = replace(scene, path=path.resolve(), masks=tuple((k, m.resolve()) for k, m in source.masks))
        with store_lock(ws):
            return _commit_scene(ws, scene, source, georef, targets)


def _commit_scene(
    ws: Workspace, scene: Scene, source: SceneSource, georef: Georef, targets: Sequence[Site]
) -> IngestOutcome:
    """Write the scene's files and rows. Call under the store lock: what was read before may be stale."""
    if (existing := ws.catalog.scene_by_hash(scene.sha256)) is not None:
        return IngestOutcome(source.origin, "duplicate", f"same content as scene {existing.id}", existing.id)
    targets = [ws.catalog.site_by_id(site.id or 0) for site in targets]
    staged = _Staged()
    try:
        if not scene.path.is_absolute():
            stored = ws.store / scene.path
            if not stored.exists():  # else an orphan of a killed run, with the same content
                _copy_into_store(source.path, stored)
                staged.files.append(stored)
            for (_, given), (_, kept) in zip(source.masks, scene.masks, strict=True):
                _copy_into_store(given, ws.store / kept)
                staged.files.append(ws.store / kept)
        plans = [_plan_site(ws, site, scene.gsd) for site in targets]
        observed: list[tuple[Site, Observation | None, ObservationFile]] = []
        for site, grid, rebuild in plans:
            if rebuild:
                observed.extend(_rebuild_site(ws, site, grid, staged))
            observed.append((site, None, _observe_file(ws, site, grid, scene, georef, source.path, staged)))
        with ws.catalog.transaction() as conn:
            scene_id = ws.catalog.insert_scene(conn, scene)
            for site, grid, rebuild in plans:
                if rebuild or site.base_gsd is None:
                    ws.catalog.set_base_gsd(conn, site, grid.base_gsd)
            for site, old, obs_file in observed:
                _insert_observation(ws, conn, site, old.scene_id if old else scene_id, old, scene, obs_file)
    except sqlite3.IntegrityError as exc:
        _discard(staged.files)
        raise WorkspaceError(f"{source.path}: the catalog changed during ingest ({exc}); run it again") from exc
    except BaseException:
        _discard(staged.files)
        raise
    _discard(staged.replaced)
    return IngestOutcome(
        source.origin,
        "ingested",
        scene_id=scene_id,
        sites=tuple(site.name for site in targets),
        acquired=scene.acquired.isoformat(),
    )


def _insert_observation(
    ws: Workspace,
    conn: sqlite3.Connection,
    site: Site,
    scene_id: int,
    old: Observation | None,
    scene: Scene,
    obs_file: ObservationFile,
) -> None:
    ws.catalog.insert_observation(
        conn,
        Observation(
            site_id=site.id or 0,
            scene_id=scene_id,
            level=obs_file.level,
            gsd=obs_file.gsd,
            path=obs_file.path.relative_to(ws.store),
            width=obs_file.width,
            height=obs_file.height,
            acquired=old.acquired if old else scene.acquired,
            valid_fraction=obs_file.valid_fraction,
            flags=obs_file.flags,
            masked_fraction=obs_file.masked_fraction,
        ),
    )


def _plan_site(ws: Workspace, site: Site, gsd: float) -> tuple[Site, SiteGrid, bool]:
    """The grid to use for SITE, and whether its observations must be rebuilt on a finer base."""
    if site.base_gsd is None:
        return site, SiteGrid.of(site, gsd), False
    if gsd < site.base_gsd * 0.999 and not site.gsd_pinned:
        log.info("site %s: base GSD refined from %.3f to %.3f m", site.name, site.base_gsd, gsd)
        return site, SiteGrid.of(site, gsd), bool(ws.catalog.observations(site))
    return site, SiteGrid.of(site), False


def _rebuild_site(
    ws: Workspace, site: Site, grid: SiteGrid, staged: _Staged
) -> list[tuple[Site, Observation | None, ObservationFile]]:
    """Rebuild a site's observations from their scenes on a refined grid: new files, for rows that are
    then updated in place, so the observations keep their ids (rules have seen them already)."""
    rebuilt: list[tuple[Site, Observation | None, ObservationFile]] = []
    for obs in ws.catalog.observations(site):
        scene = ws.catalog.scene(obs.scene_id)
        scene_path = scene_file(ws, scene)
        with open_raster(scene_path, ws.settings.limits) as src:
            georef = stored_georef(scene, src, scene_path)
            obs_file = _observe_file(ws, site, grid, scene, georef, scene_path, staged)
        staged.replaced.append(ws.store / obs.path)
        rebuilt.append((site, obs, obs_file))
    return rebuilt


def _observe_file(
    ws: Workspace,
    site: Site,
    grid: SiteGrid,
    scene: Scene,
    georef: Georef,
    scene_path: Path,
    staged: _Staged,
) -> ObservationFile:
    final = new_observation_path(ws, site, scene, grid.level_for(scene.gsd))
    tmp = final.with_name(f".{final.name}.part")
    try:
        with open_raster(scene_path, ws.settings.limits) as reader:
            result = observe(
                reader,
                georef,
                scene.gsd,
                grid,
                tmp,
                limits=ws.settings.limits,
                band_names=scene.band_names,
                sensor_masks=scene_masks(ws, scene),
            )
        tmp.replace(final)
    finally:
        tmp.unlink(missing_ok=True)
    staged.files.append(final)
    return replace(result, path=final)


def scene_file(ws: Workspace, scene: Scene) -> Path:
    """Where a scene's pixels are: in the store, or referenced in place (``--no-copy``)."""
    return scene.path if scene.path.is_absolute() else ws.store / scene.path


def new_observation_path(ws: Workspace, site: Site, scene: Scene, level: int) -> Path:
    """A fresh store path for an observation of SCENE on SITE's grid at LEVEL (its folder exists)."""
    final = ws.store / "observations" / str(site.id) / f"{scene.sha256[:16]}_L{level}_{uuid4().hex[:8]}.tif"
    final.parent.mkdir(parents=True, exist_ok=True)
    return final


def scene_masks(ws: Workspace, scene: Scene) -> tuple[tuple[str, Path], ...]:
    """A scene's sensor-provided masks as (kind, file) with their files resolved in the store."""
    return tuple((kind, path if path.is_absolute() else ws.store / path) for kind, path in scene.masks)


def stored_georef(scene: Scene, src: DatasetReader, path: Path) -> Georef:
    """A stored scene's georeference: the one given at ingest (world file, --bounds), else the file's."""
    if scene.transform is not None:
        return Georef(crs=CRS.from_user_input(scene.crs), transform=Affine(*scene.transform))
    return require_georef(path, georef_of(src, path))


def _georef(src: DatasetReader, source: SceneSource) -> Georef:
    """The file's georeference, with what the user gave (--crs, --bounds) taking precedence."""
    if source.transform is None and source.crs is None:
        return require_georef(source.path, georef_of(src, source.path))
    own = georef_of(src, source.path) if src.crs is not None else None
    transform = source.transform or transform_of(src, source.path)
    crs = source.crs or (own.crs if own else None)
    if transform is None or crs is None:
        raise InputError(source.path, "give both --bounds and --crs for an image without a georeference")
    return Georef(crs=crs, transform=transform)


def _footprint(georef: Georef, width: int, height: int, path: Path) -> BaseGeometry:
    left, top = georef.transform @ (0, 0)
    right, bottom = georef.transform @ (width, height)
    outline = box(min(left, right), min(top, bottom), max(left, right), max(top, bottom))
    try:
        footprint = to_crs(outline, georef.crs, "EPSG:4326")
    except Exception as exc:  # pyproj raises several types for CRSs it cannot transform
        raise InputError(path, f"cannot place its CRS on Earth ({exc})") from exc
    west, south, east, north = footprint.bounds
    if not footprint.is_valid or west < -180 or east > 180 or south < -90 or north > 90:
        raise InputError(path, "footprint is not on Earth: wrong CRS or bounds?")
    return footprint


def _target_sites(ws: Workspace, named: Sequence[Site], footprint: BaseGeometry, path: Path) -> list[Site]:
    if named:
        for site in named:
            if not site.geometry.intersects(footprint):
                raise NoOverlapError(path, f"does not intersect site {site.name!r}")
        return list(named)
    return [site for site in ws.catalog.sites() if site.geometry.intersects(footprint)]


def _copy_into_store(source: Path, stored: Path) -> None:
    stored.parent.mkdir(parents=True, exist_ok=True)
    tmp = stored.with_name(f".{stored.name}.{uuid4().hex}.part")
    try:
        shutil.copyfile(source, tmp)
        tmp.replace(stored)
    finally:
        tmp.unlink(missing_ok=True)


def _discard(paths: Sequence[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
