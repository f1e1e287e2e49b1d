"""The activity index: per usable observation, the share of a site's (or a zone's) clear pixels that
depart from the site's background. It needs no object detector, so it works at any GSD.

How one date's index is made, and why:

1. **Which dates.** The observations the change stage would compare (:func:`sitewatch.analyze.usable`):
   cloudy, mostly empty and unaligned ones are skipped, each with its reason. They are read at
   the coarsest level among them (a coarse image is never blown up), coarsened further until the
   grid is at most ``max_side_px`` a side (the index is a share of an area: it does not need every
   pixel, and memory stays bounded). Cloud, cloud shadow and saturated pixels are left out.
2. **Radiometry.** Each date is mapped onto the radiometry of the site's alignment reference with
   IR-MAD pseudo-invariant pixels (:func:`sitewatch.align.radiometry.normalise`, or the linear
   fit the alignment stage recorded, where it did), so exposure, haze and colour cast do not
   count; then taken to logarithms (plus 5 % of the reference's median, so that dark pixels are
   not all noise): a departure is then a ratio of brightness.
3. **Background.** Per pixel and band, the median over the nearest ``background_dates`` usable
   dates (centred on the date where the series allows). Things that come and go (vehicles,
   containers) are absent from most dates, so the median is the empty ground; the window lets
   the background follow slow changes (seasons) over long series, and bounds memory.
4. **Persistent change is not activity.** A new building would depart from any background built
   partly before it; so the persistent changes the change stage stored (``sitewatch analyze``),
   grown by ``persistent_buffer_m`` for their edges, are left out of every date. Without an
   analysis there are none to leave out, and the index says so.
5. **Departure.** A pixel departs when the root mean square over bands of its log difference from
   the background exceeds the date's threshold: ``min_departure`` (0.25: about a 28 % change of
   brightness or colour), or ``noise_factor`` times the date's median departure where that is
   higher (a noisy date raises its own bar). Where red, green and blue are known, a departure
   that is only a shadow (darker in every band alike and bluer, the change stage's test of
   :class:`sitewatch.change.history.HistorySettings`) does not count: the sun's height changes
   every building's shadow with the season, and that is not activity.
6. **Index.** Per area (the whole site, each zone): departing pixels over clear pixels. An area
   with less than ``min_clear`` of its pixels clear on a date has no index that date (the reason
   is kept).

Counts per class are further columns of the same series (:func:`series_of`), read from what the
detection stage stored (:mod:`sitewatch.detect.inventory`, run by ``sitewatch analyze``): objects
whose box centre lies in the area, per class, plus ``vehicles`` (small and large together: a surge of
trucks may be scored as either). A date has no count ("n/a", with the reason) when its GSD cannot
resolve the objects, when it was left out or not looked at, or when less than ``min_clear`` of the
area could be seen; it is never 0 for those. Counts are judged like the index, with the MAD floored
at :data:`COUNT_MAD_FLOOR` objects, so a wobble of an object or two is never an anomaly.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

import numpy as np
from numpy.typing import NDArray
from rasterio.features import rasterize
from shapely.geometry.base import BaseGeometry

from sitewatch.activity.series import BaselineSettings, SeriesAnalysis, analyse
from sitewatch.catalog.models import Observation, Site
from sitewatch.change.history import HistorySettings
from sitewatch.detect.base import LARGE, SMALL
from sitewatch.detect.inventory import NOT_COUNTED, SiteCounts, site_counts
from sitewatch.errors import NotFound
from sitewatch.grid import SiteGrid, to_crs
from sitewatch.observations import ObservationDone
from sitewatch.workspace import Workspace

Mask = NDArray[np.bool_]
Image = NDArray[np.float32]

#: Values stacked at once for the background median (the window's dates, bands and a strip of rows).
STRIP_VALUES = 4_000_000
#: The column of the activity index in an :class:`ActivitySeries` (counts per class are others).
INDEX = "index"
#: The column of small and large vehicles counted together.
VEHICLES = "vehicles"
#: Count columns' MAD is never below this many objects (see the module docstring).
COUNT_MAD_FLOOR = 1.0


@dataclass(frozen=True)
class IndexSettings:
    """How departing pixels are found (see the module docstring)."""

    background_dates: int = 15  # usable dates in a date's background, nearest first
    min_departure: float = 0.25  # log units: RMS over bands of log(date / background)
    noise_factor: float = 4.0  # ... or this many times the date's median departure, if higher
    persistent_buffer_m: float = 2.0  # persistent changes are left out with this margin
    min_clear: float = 0.5  # share of an area that must be clear for it to have an index
    max_side_px: int = 1024  # the working grid is coarsened to at most this many pixels a side
    log_offset: float = 0.05  # added before the log, as a share of the reference band's median
    shadow: HistorySettings = field(default_factory=HistorySettings)


@dataclass(frozen=True)
class SkippedDate:
    """A date that has no index (for the whole site, or for one area), and why."""

    acquired: datetime
    observation_id: int
    reason: str


@dataclass(frozen=True)
class AreaValue:
    """One area on one date: its index (None when too little was clear) and its clear share."""

    index: float | None
    clear: float


@dataclass(frozen=True)
class DateIndex:
    """The index of every area on one date; areas keyed by zone name, None for the whole site."""

    observation_id: int
    acquired: datetime
    threshold: float  # the departure threshold used that date (log units)
    areas: dict[str | None, AreaValue]


@dataclass(frozen=True)
class ActivityIndex:
    """A site's activity index per usable date and area, with the dates skipped and why."""

    site: str
    zones: tuple[str, ...]
    level: int | None  # site grid level worked at; None when nothing could be read
    gsd: float | None
    dates: tuple[DateIndex, ...]
    skipped: tuple[SkippedDate, ...]
    persistent_changes: int  # persistent change polygons left out of every date
    persistent_m2: float

    @property
    def persistent_note(self) -> str:
        """What was left out as persistent change, in words."""
        if not self.persistent_changes:
            return "no persistent changes stored (run `sitewatch analyze` to keep new buildings out of the index)"
        return f"{self.persistent_changes} persistent changes ({self.persistent_m2:,.0f} m²) left out of every date"


@dataclass(frozen=True)
class ActivitySeries:
    """One area's activity series: per column (the index, then counts per class), the values by date
    with baseline, anomalies and change-points; the dates with no index, and those with no counts."""

    site: str
    zone: str | None  # None: the whole site
    columns: dict[str, SeriesAnalysis]
    skipped: tuple[SkippedDate, ...]  # dates with no index, and why
    observation_ids: dict[datetime, int]
    counts_skipped: tuple[SkippedDate, ...] = ()  # dates with no counts ("n/a"), and why
    counted_by: str | None = None  # the source of the counts ("detector:classic"); None: no counts

    @property
    def count_columns(self) -> tuple[str, ...]:
        """The count columns, classes first, then ``vehicles``."""
        return tuple(name for name in self.columns if name != INDEX)

    @property
    def area(self) -> str:
        """The area in words: ``whole site`` or ``zone "loading area"``."""
        return "whole site" if self.zone is None else f'zone "{self.zone}"'

    @property
    def index(self) -> SeriesAnalysis:
        """The activity index column."""
        return self.columns[INDEX]


@dataclass(frozen=True)
class SiteActivity:
    """The index of a site and its series per area: the whole site first, then each zone."""

    index: ActivityIndex
    series: tuple[ActivitySeries, ...]

    def area(self, zone: str | None) -> ActivitySeries:
        """The series of ZONE (None: the whole site).

        Raises:
            NotFound: If the zone was not computed; the message lists those that were.
        """
        for series in self.series:
            if series.zone == zone:
                return series
        raise NotFound(f"no activity series for zone {zone!r} (zones: {', '.join(self.index.zones) or 'none'})")


def site_activity(
    ws: Workspace,
    site_name: str,
    *,
    zones: Sequence[str] | None = None,
    baseline: BaselineSettings | None = None,
    settings: IndexSettings | None = None,
    align: bool = True,
    objects: str | None = None,
    on_progress: Callable[[ObservationDone], None] | None = None,
) -> SiteActivity:
    """The activity index of a site and its zones, counts per class, and each area's series against
    its baseline.

    Args:
        ws: The workspace.
        site_name: The site.
        zones: Only these zones (default: all of the site's); the whole site is always included.
        baseline: How each series is judged (window, threshold, ...).
        settings: How departing pixels are found.
        align: Co-register new observations first, as ``analyze`` does; the report passes False,
            so that writing a report never changes the workspace.
        objects: The object detector whose stored counts to show (default: the one that looked at
            the site last). Counts are only read here: ``sitewatch analyze`` makes them.
        on_progress: Called after each date.

    Raises:
        NotFound: If the site, a zone named or the object detector named does not exist.
    """
    index = activity_index(ws, site_name, zones=zones, settings=settings, align=align, on_progress=on_progress)
    counts = site_counts(ws, ws.catalog.site(site_name), detector=objects)
    min_clear = (settings or IndexSettings()).min_clear
    areas: list[str | None] = [None, *index.zones]
    return SiteActivity(index, tuple(series_of(index, area, baseline, counts, min_clear) for area in areas))


def series_of(
    index: ActivityIndex,
    zone: str | None,
    baseline: BaselineSettings | None = None,
    counts: SiteCounts | None = None,
    min_clear: float = IndexSettings.min_clear,
) -> ActivitySeries:
    """The series of one area of INDEX (None: the whole site), judged against its own past; with
    COUNTS, a count column per class (and ``vehicles``) beside the index (module docstring)."""
    dates, values = [], []
    skipped = list(index.skipped)
    for date in index.dates:
        value = date.areas[zone]
        if value.index is None:
            where = "the site" if zone is None else "the zone"
            skipped.append(SkippedDate(date.acquired, date.observation_id, f"only {value.clear:.0%} of {where} clear"))
        else:
            dates.append(date.acquired)
            values.append(value.index)
    columns = {INDEX: analyse(dates, values, baseline)}
    observation_ids = {d.acquired: d.observation_id for d in index.dates}
    counts_skipped: list[SkippedDate] = []
    if counts is not None and counts.source is not None:
        counted, counts_skipped = count_columns(counts, zone, baseline, min_clear)
        columns.update(counted)
        observation_ids.update({d.acquired: d.observation_id for d in counts.dates})
    return ActivitySeries(
        site=index.site,
        zone=zone,
        columns=columns,
        skipped=tuple(sorted(skipped, key=lambda s: s.acquired)),
        observation_ids=observation_ids,
        counts_skipped=tuple(sorted(counts_skipped, key=lambda s: s.acquired)),
        counted_by=None if counts is None else counts.source,
    )


def count_columns(
    counts: SiteCounts, zone: str | None, baseline: BaselineSettings | None, min_clear: float
) -> tuple[dict[str, SeriesAnalysis], list[SkippedDate]]:
    """One area's count series per class (and ``vehicles``), and the dates with no counts, and why."""
    names = list(counts.classes)
    if SMALL in names and LARGE in names:
        names.append(VEHICLES)
    dates: list[datetime] = []
    values: dict[str, list[float]] = {name: [] for name in names}
    skipped: list[SkippedDate] = []
    for date in counts.dates:
        area = None if date.counts is None else date.counts.get(zone)
        share = date.clear.get(zone, 0.0)
        if area is None:
            skipped.append(SkippedDate(date.acquired, date.observation_id, date.reason or NOT_COUNTED))
        elif share < min_clear:
            where = "the site" if zone is None else "the zone"
            skipped.append(SkippedDate(date.acquired, date.observation_id, f"only {share:.0%} of {where} clear"))
        else:
            dates.append(date.acquired)
            for name in names:
                values[name].append(float(area[SMALL] + area[LARGE] if name == VEHICLES else area.get(name, 0)))
    settings = count_settings(baseline)
    return {name: analyse(dates, values[name], settings) for name in names}, skipped


def count_settings(baseline: BaselineSettings | None) -> BaselineSettings:
    """BASELINE for counts: the same window and threshold, the MAD floored at whole objects."""
    base = baseline or BaselineSettings()
    return replace(base, mad_floor=max(base.mad_floor, COUNT_MAD_FLOOR))


def activity_index(
    ws: Workspace,
    site_name: str,
    *,
    zones: Sequence[str] | None = None,
    settings: IndexSettings | None = None,
    align: bool = True,
    on_progress: Callable[[ObservationDone], None] | None = None,
) -> ActivityIndex:
    """The activity index of SITE_NAME and its ZONES on every usable date (module docstring).

    Raises:
        NotFound: If the site, or a zone named, does not exist.
    """
    from sitewatch.analyze import usable

    settings = settings or IndexSettings()
    site = ws.catalog.site(site_name)
    chosen = chosen_zones(site, zones)
    if align:
        from sitewatch.align.stage import align_site

        align_site(ws, site_name, only_new=True)
        site = ws.catalog.site(site_name)
    every = ws.catalog.observations(site)
    keep, left_out = usable(ws, every)
    if keep:  # dates with other bands than the reference's cannot be compared pixel by pixel
        bands = ws.catalog.scene(_reference(keep).scene_id).bands
        for obs in keep:
            count = ws.catalog.scene(obs.scene_id).bands
            if count != bands:
                left_out[obs.id or 0] = f"{count} bands where the radiometric reference has {bands}"
        keep = [obs for obs in keep if (obs.id or 0) not in left_out]
    skipped = tuple(
        sorted(
            (SkippedDate(o.acquired, o.id or 0, left_out[o.id or 0]) for o in every if (o.id or 0) in left_out),
            key=lambda s: s.acquired,
        )
    )
    persistent = ws.catalog.changes(site, persistence="persistent")
    if site.base_gsd is None or not keep:
        return ActivityIndex(site.name, chosen, None, None, (), skipped, len(persistent), 0.0)
    grid = SiteGrid.of(site)
    level = _working_level(grid, keep, settings.max_side_px)
    shape, transform = grid.shape_at(level), grid.transform_at(level)

    def burn(geometries: Sequence[BaseGeometry]) -> Mask:
        if not geometries:
            return np.zeros(shape, np.bool_)
        burned = rasterize([(g, 1) for g in geometries], out_shape=shape, transform=transform, dtype="uint8")
        return np.asarray(burned, np.uint8).astype(np.bool_)

    inside = burn([to_crs(site.geometry, "EPSG:4326", site.epsg)])
    areas: dict[str | None, Mask] = {None: inside}
    for zone in site.zones:
        if zone.name in chosen:
            areas[zone.name] = burn([to_crs(zone.geometry, "EPSG:4326", site.epsg)]) & inside
    left = burn([c.geometry.buffer(settings.persistent_buffer_m) for c in persistent])
    totals = {name: int(np.count_nonzero(area & ~left)) for name, area in areas.items()}
    stack = _Stack(ws, grid, level, keep, inside & ~left, settings)
    dates = []
    for t, obs in enumerate(keep):
        departing, clear, threshold = stack.departing(t)
        values = {}
        for name, area in areas.items():
            seen = int(np.count_nonzero(area & clear))
            share = seen / totals[name] if totals[name] else 0.0
            enough = seen > 0 and share >= settings.min_clear
            values[name] = AreaValue(np.count_nonzero(area & departing) / seen if enough else None, share)
        dates.append(DateIndex(obs.id or 0, obs.acquired, threshold, values))
        if on_progress is not None:
            on_progress(ObservationDone(obs, t + 1, len(keep)))
    gsd = grid.gsd_at(level)
    return ActivityIndex(
        site.name, chosen, level, gsd, tuple(dates), skipped, len(persistent), float(np.count_nonzero(left)) * gsd**2
    )


def chosen_zones(site: Site, names: Sequence[str] | None) -> tuple[str, ...]:
    """The zones to compute, in the site's order.

    Raises:
        NotFound: If a name is not one of the site's zones.
    """
    known = [zone.name for zone in site.zones]
    for name in names or ():
        if name not in known:
            raise NotFound(f"site {site.name!r} has no zone {name!r} (zones: {', '.join(known) or 'none'})")
    return tuple(n for n in known if names is None or n in names)


def _working_level(grid: SiteGrid, observations: Sequence[Observation], max_side_px: int) -> int:
    """The coarsest level of OBSERVATIONS, or coarser until the grid fits MAX_SIDE_PX a side."""
    level = max(obs.level for obs in observations)
    while max(grid.shape_at(level)) > max_side_px:
        level += 1
    return level


def _reference(observations: Sequence[Observation]) -> Observation:
    """The radiometric reference among OBSERVATIONS: the alignment reference, else the first."""
    return next((o for o in observations if o.align_status == "reference"), observations[0])


class _Stack:
    """A site's usable observations as log radiometry on the working grid, read as the background
    window reaches them and dropped once it has passed (memory: one window of dates)."""

    def __init__(
        self,
        ws: Workspace,
        grid: SiteGrid,
        level: int,
        observations: Sequence[Observation],
        inside: Mask,
        settings: IndexSettings,
    ) -> None:
        self.ws, self.grid, self.level, self.inside, self.settings = ws, grid, level, inside, settings
        self.observations = list(observations)
        self.scenes = {obs.id or 0: ws.catalog.scene(obs.scene_id) for obs in self.observations}
        reference = _reference(self.observations)
        self.aligned = reference.align_status == "reference"  # the alignment stage's fits are to this one
        self.reference_id = reference.id
        self.reference = self._read(reference)
        pixels, clear = self.reference
        medians = [float(np.median(band[clear])) if clear.any() else 1.0 for band in pixels]
        self.offsets = np.asarray([max(settings.log_offset * m, 1e-6) for m in medians], np.float32)[:, None, None]
        self.rgb = self.scenes[reference.id or 0].rgb
        self.logs: dict[int, tuple[Image, Mask]] = {}
        self.window: tuple[int, int] | None = None
        self.background = np.zeros(0, np.float32)

    def departing(self, t: int) -> tuple[Mask, Mask, float]:
        """Pixels of date T that depart from its background, its clear pixels, and the threshold."""
        self._move_window(t)
        image, clear = self.logs[t]
        clear = clear & np.isfinite(self.background).all(axis=0)
        diff = image - self.background
        rms = np.sqrt(np.mean(np.square(diff), axis=0))
        noise = float(np.median(rms[clear])) if clear.any() else 0.0
        threshold = max(self.settings.min_departure, self.settings.noise_factor * noise)
        departing = clear & (rms > threshold)
        if self.rgb is not None:
            departing &= ~self._shadow(diff[list(self.rgb)])
        return departing, clear, threshold

    def _move_window(self, t: int) -> None:
        n, size = len(self.observations), self.settings.background_dates
        lo = min(max(0, t - size // 2), max(0, n - size))
        window = (lo, min(n, lo + size))
        if window == self.window:
            return
        for old in [k for k in self.logs if k < window[0]]:
            del self.logs[old]
        for k in range(*window):
            if k not in self.logs:
                self.logs[k] = self._log(k)
        self.window = window
        members = [self.logs[k] for k in range(*window)]
        bands, rows, cols = members[0][0].shape
        self.background = np.empty((bands, rows, cols), np.float32)
        strip = max(1, STRIP_VALUES // (len(members) * bands * cols))
        for r in range(0, rows, strip):  # in strips, so the stacked copy stays small
            cut = np.stack(
                [np.where(clear[r : r + strip], image[:, r : r + strip], np.nan) for image, clear in members]
            )
            self.background[:, r : r + strip] = _nanmedian(cut)

    def _log(self, t: int) -> tuple[Image, Mask]:
        """Date T on the reference's radiometry, in logarithms, and its clear pixels."""
        from sitewatch.align.radiometry import normalise

        obs = self.observations[t]
        pixels, clear = self._read(obs)
        reference, ref_clear = self.reference
        stored = stored_fit(obs, len(pixels)) if self.aligned else None
        if stored is not None:
            gains, offsets = stored
            pixels = pixels * gains + offsets
        elif obs.id != self.reference_id and (ref_clear & clear).any():
            pixels = normalise(reference, pixels, ref_clear & clear).apply(pixels)
        image = np.log(np.maximum(pixels, 0.0) + self.offsets).astype(np.float32)
        return image, clear

    def _read(self, obs: Observation) -> tuple[Image, Mask]:
        """OBS on the working grid, and its clear pixels: inside the site, no cloud, cloud shadow or saturation."""
        from sitewatch.observations import read_clear_layer

        layer = read_clear_layer(self.ws, obs, self.scenes[obs.id or 0], self.grid, self.level)
        return layer.pixels, layer.valid & self.inside

    def _shadow(self, diff: Image) -> Mask:
        """Pixels whose log difference is a shadow's: alike in red, green and blue, and bluer when darker."""
        s = self.settings.shadow
        gain = diff.mean(axis=0)
        spread = diff.max(axis=0) - diff.min(axis=0)
        bluer_when_dark = (diff[2] - diff[0]) * np.where(gain > 0, -1.0, 1.0)
        shadow: Mask = (np.abs(gain) >= s.shadow_log_gain) & (spread <= s.shadow_log_spread)
        shadow &= bluer_when_dark >= s.shadow_log_blue
        return shadow


def stored_fit(obs: Observation, bands: int) -> tuple[Image, Image] | None:
    """The per-band gain and offset onto the reference that alignment recorded for OBS, where every
    band got a line (reusing it saves an IR-MAD fit per date); None otherwise."""
    radiometry = (obs.alignment or {}).get("radiometry") or {}
    fits = radiometry.get("bands") or []
    if obs.align_status != "aligned" or len(fits) != bands or any(f.get("method") != "linear" for f in fits):
        return None
    gains = np.asarray([f["gain"] for f in fits], np.float32)[:, None, None]
    offsets = np.asarray([f["offset"] for f in fits], np.float32)[:, None, None]
    return gains, offsets


def _nanmedian(stack: Image) -> Image:
    """Median over the first axis, ignoring NaN; NaN where every value is (no clear date there)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN pixel: NaN is the answer
        median: Image = np.nanmedian(stack, axis=0).astype(np.float32)
    return median
