"""The site's alignment stage: every observation put on its reference observation, in geometry.

Pure work happens in :mod:`sitewatch.align.register` (arrays in, a registration out); this module
is the edge that picks the reference, reads observations, re-renders each aligned observation from
its scene (grid warp and alignment composed into one resampling) and stores the figures.

Re-running is idempotent: the misregistration is measured on the observation as it is stored and
composed with the displacement already applied, so corrections never compound or get lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from sitewatch.align.register import Registration
from sitewatch.catalog.models import Observation, Site
from sitewatch.errors import NotFound
from sitewatch.grid import SiteGrid
from sitewatch.ingest.pipeline import new_observation_path, scene_file, store_lock, stored_georef
from sitewatch.ingest.render import DisplacementGrid, render_displaced
from sitewatch.io.raster import open_raster
from sitewatch.masks import cloud_mask
from sitewatch.observations import Layer, read_layer
from sitewatch.workspace import Workspace

log = logging.getLogger(__name__)

#: An observation with less of the site covered than this cannot be a reference or be aligned.
MIN_VALID_FRACTION = 0.5
#: A measured misregistration smaller than this everywhere is left alone: resampling would blur
#: more than it corrects, and a re-run of ``align`` leaves the store as it is.
MIN_CORRECTION_PX = 0.1


@dataclass(frozen=True)
class ObservationAligned:
    """Progress event and result row: one observation handled."""

    observation: Observation
    done: int
    total: int


@dataclass(frozen=True)
class AlignmentResult:
    """What ``align`` did for one site."""

    site: str
    reference: Observation | None
    observations: list[Observation]

    @property
    def failed(self) -> list[Observation]:
        """Observations that could not be aligned (with their reasons)."""
        return [o for o in self.observations if o.align_status == "failed"]


def choose_reference(site: Site, observations: Sequence[Observation]) -> Observation | None:
    """The pinned reference, else the current one, else the clearest and finest (earliest on a tie).

    Keeping the current reference keeps the site stable as scenes arrive: a new, clearer scene does
    not move every observation already aligned.
    """
    if site.reference_scene_id is not None:
        for obs in observations:
            if obs.scene_id == site.reference_scene_id:
                return obs
    for obs in observations:
        if obs.align_status == "reference":
            return obs
    candidates = [o for o in observations if o.valid_fraction >= MIN_VALID_FRACTION and "cloudy" not in o.flags]
    if not candidates:
        return None
    return min(candidates, key=lambda o: (o.level, -round(o.valid_fraction * (1 - o.masked_fraction), 2), o.acquired))


def align_site(
    ws: Workspace,
    site_name: str,
    *,
    only_new: bool = False,
    on_progress: Callable[[ObservationAligned], None] | None = None,
) -> AlignmentResult:
    """Align every observation of a site to its reference; store the figures and re-rendered files.

    With ONLY_NEW, observations already aligned to the same reference are left as they are (what
    ``analyze`` does, so analysing twice gives the same answer); ``sitewatch align`` measures all.
    """
    site = ws.catalog.site(site_name)
    observations = ws.catalog.observations(site)
    if site.base_gsd is None or not observations:
        return AlignmentResult(site.name, None, observations)
    grid = SiteGrid.of(site)
    reference = choose_reference(site, observations)
    done: list[Observation] = []
    for number, obs in enumerate(observations, start=1):
        if reference is None:
            result = replace(obs, align_status="failed", align_reason="no usable reference observation")
            _store(ws, result)
        elif obs.id == reference.id:
            result = _as_reference(ws, site, grid, obs)
        elif only_new and _aligned_to(obs, reference):
            result = obs
        else:
            result = _align_one(ws, site, grid, reference, obs)
        done.append(result)
        if on_progress is not None:
            on_progress(ObservationAligned(result, number, len(observations)))
    ref_row = next((o for o in done if o.align_status == "reference"), None)
    return AlignmentResult(site.name, ref_row, done)


def _as_reference(ws: Workspace, site: Site, grid: SiteGrid, obs: Observation) -> Observation:
    """The reference stays where its georeference puts it (undoing any earlier displacement)."""
    previous = _displacement(obs)
    figures = {"model": "reference", "residual_rmse_px": 0.0, "tie_points": 0}
    if previous is None or not (np.any(previous.dx) or np.any(previous.dy)):
        result = replace(obs, align_status="reference", align_reason=None, alignment=figures)
        _store(ws, result)
        return result
    identity = DisplacementGrid.identity(obs.width, obs.height)
    with store_lock(ws):
        path = _render(ws, site, grid, obs, identity)
        result = replace(obs, path=path, align_status="reference", align_reason=None, alignment=figures)
        _commit(ws, result, obs.path)
    return result


def _align_one(ws: Workspace, site: Site, grid: SiteGrid, reference: Observation, obs: Observation) -> Observation:
    from sitewatch.align.register import register

    if "cloudy" in obs.flags:
        return _failed(ws, obs, "cloud")
    if obs.valid_fraction < MIN_VALID_FRACTION:
        return _failed(ws, obs, "no-overlap")
    level = max(reference.level, obs.level)
    ref_layer = read_layer(ws, reference, grid, level)
    obs_layer = read_layer(ws, obs, grid, level)
    registration = register(
        ref_layer.pixels,
        obs_layer.pixels,
        ref_valid=ref_layer.valid,
        mov_valid=obs_layer.valid,
        ref_cloud=cloud_mask(ref_layer.pixels, ref_layer.valid, _dtype(ws, reference)),
        mov_cloud=cloud_mask(obs_layer.pixels, obs_layer.valid, _dtype(ws, obs)),
        gsd=grid.gsd_at(level),
    )
    figures: dict[str, Any] = {
        "reference_observation": reference.id,
        "model": registration.model,
        "shift_px": None if registration.shift_px is None else list(registration.shift_px),
        "affine": None if registration.affine is None else list(registration.affine),
        "tie_points": registration.tie_points,
        "residual_rmse_px": registration.residual_rmse_px,
        "level": level,
    }
    if registration.status != "ok":
        return _failed(ws, obs, registration.reason or "failed", figures)
    figures["radiometry"] = _radiometry(ref_layer, obs_layer, registration)
    measured = _measured_on_own_level(registration, obs, level)
    previous = _displacement(obs) or DisplacementGrid.identity(obs.width, obs.height)
    if max(np.abs(measured.dx).max(), np.abs(measured.dy).max()) < MIN_CORRECTION_PX:
        figures["displacement"] = previous.to_json()
        figures["applied_shift_px"] = (obs.alignment or {}).get("applied_shift_px", [0.0, 0.0])
        result = replace(obs, align_status="aligned", align_reason=None, alignment=figures)
        _store(ws, result)
        return result
    total = previous.then(measured)
    figures["displacement"] = total.to_json()
    centre_dx, centre_dy = total.at(np.array([obs.width / 2]), np.array([obs.height / 2]))
    figures["applied_shift_px"] = [round(float(centre_dx[0]), 3), round(float(centre_dy[0]), 3)]
    with store_lock(ws):
        path = _render(ws, site, grid, obs, total)
        result = replace(obs, path=path, align_status="aligned", align_reason=None, alignment=figures)
        _commit(ws, result, obs.path)
    return result


def _radiometry(ref_layer: Layer, obs_layer: Layer, registration: Registration) -> dict[str, Any]:
    """How OBS's bands map onto the reference's radiometry once aligned (IR-MAD pseudo-invariant
    pixels, histogram matching where a line fits poorly), and how well: recorded, not applied."""
    from sitewatch.align import apply
    from sitewatch.align.radiometry import normalise

    aligned, moved = apply(obs_layer.pixels, registration, ref_layer.valid.shape, mov_valid=obs_layer.valid)
    fit = normalise(ref_layer.pixels, aligned, ref_layer.valid & moved)
    return {
        "method": fit.method,
        "invariant_fraction": round(fit.invariant_fraction, 4),
        "bands": [
            {"method": b.method, "gain": b.gain, "offset": b.offset, "r2": round(b.r2, 4), "rmse": round(b.rmse, 3)}
            for b in fit.bands
        ],
        "note": fit.note,
    }


def _aligned_to(obs: Observation, reference: Observation) -> bool:
    """Whether OBS already went through alignment against REFERENCE (successfully or not)."""
    return (
        obs.align_status in ("aligned", "failed") and (obs.alignment or {}).get("reference_observation") == reference.id
    )


def _measured_on_own_level(registration: Any, obs: Observation, level: int) -> DisplacementGrid:
    """The registration's displacement (measured at LEVEL) in pixels of the observation's own level.

    Pixel centres sit at integers: a pixel x at the observation's level is at ``(x + 0.5) / s - 0.5``
    at LEVEL, where s = 2^(LEVEL - obs.level), and displacements scale by s.
    """
    scale = 2.0 ** (level - obs.level)

    def displacement(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dx, dy = registration.displacement((xs + 0.5) / scale - 0.5, (ys + 0.5) / scale - 0.5)
        return np.asarray(dx) * scale, np.asarray(dy) * scale

    return DisplacementGrid.from_function(displacement, obs.width, obs.height)


def _render(ws: Workspace, site: Site, grid: SiteGrid, obs: Observation, displacement: DisplacementGrid) -> Path:
    """Re-render OBS from its scene through DISPLACEMENT into a new store file; returns its store path."""
    scene = ws.catalog.scene(obs.scene_id)
    scene_path = scene_file(ws, scene)
    final = new_observation_path(ws, site, scene, obs.level)
    tmp = final.with_name(f".{final.name}.part")
    try:
        with open_raster(scene_path, ws.settings.limits) as src:
            render_displaced(
                src,
                stored_georef(scene, src, scene_path),
                grid,
                obs.level,
                displacement,
                tmp,
                limits=ws.settings.limits,
            )
        tmp.replace(final)
    finally:
        tmp.unlink(missing_ok=True)
    return final.relative_to(ws.store)


def _failed(ws: Workspace, obs: Observation, reason: str, figures: dict[str, Any] | None = None) -> Observation:
    result = replace(obs, align_status="failed", align_reason=reason, alignment=figures or obs.alignment)
    _store(ws, result)
    return result


def _store(ws: Workspace, obs: Observation) -> None:
    """Commit a row whose file is unchanged."""
    with ws.catalog.transaction() as conn:
        ws.catalog.update_alignment(conn, obs)


def _commit(ws: Workspace, obs: Observation, replaced: Path) -> None:
    """Commit the row of a re-rendered observation (call under the store lock); the file it replaced
    is removed only after the commit, the new one if the commit fails."""
    new_file = ws.store / obs.path
    try:
        with ws.catalog.transaction() as conn:
            ws.catalog.update_alignment(conn, obs)
    except BaseException:
        new_file.unlink(missing_ok=True)
        raise
    if replaced != obs.path:
        (ws.store / replaced).unlink(missing_ok=True)


def _displacement(obs: Observation) -> DisplacementGrid | None:
    stored = (obs.alignment or {}).get("displacement")
    return None if stored is None else DisplacementGrid.from_json(stored)


def _dtype(ws: Workspace, obs: Observation) -> str:
    return ws.catalog.scene(obs.scene_id).dtype


def pin_reference(ws: Workspace, site_name: str, when: str) -> Observation | None:
    """Pin the observation acquired on WHEN (a date) as the site's reference; ``auto`` unpins."""
    site = ws.catalog.site(site_name)
    if when == "auto":
        ws.catalog.pin_reference(site, None)
        return None
    matches = [o for o in ws.catalog.observations(site) if o.acquired.date().isoformat() == when]
    if len(matches) != 1:
        dates = ", ".join(o.acquired.date().isoformat() for o in ws.catalog.observations(site))
        raise NotFound(f"site {site_name!r} has {len(matches)} observations on {when!r} (dates: {dates})")
    ws.catalog.pin_reference(site, matches[0].scene_id)
    return matches[0]
