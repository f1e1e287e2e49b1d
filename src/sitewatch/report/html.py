"""render_report(): one self-contained HTML file of a site's evidence, to read offline or publish.

The catalog's records are turned into a page model of plain strings and image data URIs here; the
Jinja2 template (autoescaped: site names, tags and provider strings are hostile) only lays it out.
Everything is rendered in memory first and written beside the destination, then renamed, so a
failure (a missing observation, a raster in the wrong CRS) leaves no file and no old report half
overwritten.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import jinja2
from pyproj import Geod, Transformer
from rasterio.coords import BoundingBox
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from sitewatch import __version__
from sitewatch.catalog.models import Annotation as AnalystAnnotation
from sitewatch.catalog.models import Change, Observation, Review, Scene, Site, SiteEvent
from sitewatch.errors import InputError, NotFound
from sitewatch.io.files import atomic_path
from sitewatch.io.raster import open_raster
from sitewatch.report.chips import (
    Annotation,
    Outline,
    Stretch,
    View,
    check_site_grid,
    chip_view,
    display_bands,
    kind_colour,
    overview_view,
    render_view,
    stretch_of,
    union_bounds,
)
from sitewatch.review.annotations import describe_place
from sitewatch.review.text import describe_when

if TYPE_CHECKING:
    from sitewatch.activity import ActivitySeries, SeriesAnalysis, SiteActivity, SkippedDate

#: How many changes get a before/after chip pair: the rest are in the table and on the overviews.
MAX_CHIP_PAIRS = 20

#: The tables of changes, in the order shown: persistence (None: not followed through time), the
#: table's title, and what it means. Persistent change is the headline; transient is activity.
GROUPS: tuple[tuple[str | None, str, str], ...] = (
    (
        "persistent",
        "Persistent changes",
        "Built or taken down: the change holds in every later image, and the earlier state was seen on "
        "more than one date. Each is dated to the last image without it and the first image with it.",
    ),
    (
        None,
        "Changes not followed through time",
        "Found between two images; not yet checked against the site's other images (run the analysis again).",
    ),
    (
        "unconfirmed",
        "Unconfirmed changes",
        "Seen on one side of the change on one date only (the last image, or the first): a later or an "
        "earlier image will tell whether they stay.",
    ),
    (
        "transient",
        "Transient activity",
        "Vehicles, containers, shadows and other things that come and go: the place went back to how it "
        "was, had looked like this before, kept changing, or only the light changed. Not construction.",
    ),
)
#: Marks of the states in a change's history strip (see :mod:`sitewatch.change.history`).
STATE_MARKS = {"before": "○", "after": "●", "other": "◐", "unseen": "·"}


@dataclass(frozen=True)
class SiteSummary:
    """The page header: what the site is and what the report covers."""

    name: str
    tags: tuple[str, ...]
    zones: tuple[tuple[str, str], ...]  # (name, area)
    area: str
    grid: str
    date_range: str


@dataclass(frozen=True)
class TimelineRow:
    """One observation in the timeline table."""

    date: str
    provider: str
    sensor: str
    gsd: str
    valid: str
    flags: str
    alignment: str


@dataclass(frozen=True)
class ChangeRow:
    """One change in the table; NUMBER ties it to its outline label and chips."""

    number: int
    kind: str
    colour: str  # CSS hex of the outline colour
    area: str
    confidence: str
    interval: str  # "between A and B", and the dates in between that could not show it
    centroid: str  # "lat, lon"
    detector: str
    caution: str  # quality flags of the two observations, or ""
    persistence: str = ""  # "persistent", "transient", "unconfirmed", or "" where not followed
    why: str = ""  # the evidence for the persistence, in words
    history: tuple[tuple[str, str], ...] = ()  # (mark, "date: state") per observation, in date order
    verdict: str = ""  # the analyst's: "confirmed", "rejected", or "" where not reviewed
    review: str = ""  # the reason, who and when


@dataclass(frozen=True)
class ChangeGroup:
    """One table of changes of one persistence, with what it means; transient ones start collapsed."""

    key: str
    title: str
    blurb: str
    rows: tuple[ChangeRow, ...]
    collapsed: bool = False


@dataclass(frozen=True)
class Figure:
    """A picture and the line printed under it."""

    uri: str
    caption: str


@dataclass(frozen=True)
class PairSection:
    """A before/after overview of the whole site with every change of that pair outlined."""

    interval: str
    before: Figure
    after: Figure
    change_numbers: tuple[int, ...]


@dataclass(frozen=True)
class ChipPair:
    """Before and after chips of one change, on the same ground box."""

    change: ChangeRow
    before: Figure
    after: Figure


@dataclass(frozen=True)
class ProvenanceRow:
    """Where one image came from and on what terms it may be shown."""

    date: str
    provider: str
    sensor: str
    licence: str
    attribution: str
    scene: str  # short content hash, to find the scene again


@dataclass(frozen=True)
class AnnotationRow:
    """One of the analyst's annotations: their words, the image it is on, and where it is."""

    label: str
    note: str
    image: str  # the image's date, or "" for the site in general
    author: str
    place: str  # a point's lat, lon; a polygon's area and centre


@dataclass(frozen=True)
class EventRow:
    """One of the analyst's dated events."""

    date: str
    label: str
    note: str


@dataclass(frozen=True)
class ReportPage:
    """Everything the template shows, as strings and data URIs."""

    title: str
    synthetic: bool
    site: SiteSummary
    timeline: tuple[TimelineRow, ...]
    kind_counts: tuple[tuple[str, int, str], ...]  # (kind, count, CSS colour)
    persistence_counts: tuple[tuple[str, int], ...]  # (group title, count), headline first
    changes: tuple[ChangeRow, ...]
    groups: tuple[ChangeGroup, ...]
    chips: tuple[ChipPair, ...]
    pairs: tuple[PairSection, ...]
    confidence: tuple[str, ...]  # paragraphs
    provenance: tuple[ProvenanceRow, ...]
    attributions: tuple[str, ...]
    version: str = __version__
    activity: ActivitySection | None = None
    reviewed: str = ""  # how many changes the analyst has judged, and how; "" when none
    annotations: tuple[AnnotationRow, ...] = ()
    events: tuple[EventRow, ...] = ()


def render_report(
    site: Site,
    observations: Sequence[Observation],
    scenes_by_id: dict[int, Scene],
    changes: Sequence[Change],
    store_root: Path,
    out: Path,
    *,
    synthetic: bool = False,
    title: str | None = None,
    activity: SiteActivity | None = None,
    reviews: Mapping[int, Review] | None = None,
    annotations: Sequence[AnalystAnnotation] = (),
    events: Sequence[SiteEvent] = (),
) -> Path:
    """Write a self-contained HTML report of SITE's observations and changes to OUT.

    Args:
        site: The site; its EPSG is the CRS every observation and change geometry must be in.
        observations: The site's observations (COGs on the site grid), in any order.
        scenes_by_id: The scene of every observation, by scene id, for dates and provenance.
        changes: The site's changes; each names its before and after observation.
        store_root: The imagery store that observation paths are relative to.
        out: The HTML file to write (its folder is made if need be; an existing file is replaced
            atomically, and left as it was if anything fails).
        synthetic: Whether the imagery is synthetic demo imagery; says so on the page and images.
        title: The page title; by default one naming the site.
        activity: The site's activity series (whole site and zones), shown as charts; none without.
        reviews: The analyst's verdicts, by change id (see :func:`sitewatch.review.reviews.current_reviews`).
        annotations: The analyst's annotations on the site, listed with their words and places.
        events: The analyst's dated events, listed and drawn on the activity charts.

    Returns:
        OUT.

    Raises:
        RasterRefused: If an observation file is missing or unreadable.
        GeoreferenceError: If an observation is not a north-up raster in the site grid's CRS.
        NotFound: If an observation's scene or a change's observation was not given.
        InputError: If an observation path leaves the store, or OUT cannot be written.
    """
    builder = _PageBuilder(site, observations, scenes_by_id, store_root, synthetic)
    page = builder.build(changes, title or f"{site.name}: sitewatch site report", reviews or {})
    page = replace(
        page,
        annotations=tuple(_annotation_row(a) for a in annotations),
        events=tuple(EventRow(describe_when(e.when), e.label, e.note) for e in events),
    )
    if activity is not None:
        page = replace(page, activity=activity_section(activity, events))
    html = _environment().get_template("report.html").render(page=page)
    with atomic_path(out, make_parents=True) as tmp:
        tmp.write_text(html, encoding="utf-8")
    return out


@functools.cache
def _environment() -> jinja2.Environment:
    """One environment per process: Jinja2 caches compiled templates on it."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("sitewatch.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@dataclass(frozen=True)
class _Raster:
    """What a report needs to know about one observation file, found by opening it once."""

    path: Path
    bounds: BoundingBox
    gsd: float
    stretch: Stretch


class _PageBuilder:
    """Turns catalog records into a :class:`ReportPage`, opening each observation file once for facts."""

    def __init__(
        self,
        site: Site,
        observations: Sequence[Observation],
        scenes_by_id: dict[int, Scene],
        store_root: Path,
        synthetic: bool,
    ) -> None:
        self.site = site
        self.store_root = store_root
        self.synthetic = synthetic
        self.observations = sorted(observations, key=lambda o: (_utc(o.acquired), o.id or 0))
        self.by_id: dict[int, Observation] = {}
        for obs in self.observations:
            if obs.id is None:
                raise InputError(obs.path, "observation has no catalog id, so changes cannot refer to it")
            self.by_id[obs.id] = obs
        self.scenes: dict[int, Scene] = {}
        for obs in self.observations:
            if obs.scene_id not in scenes_by_id:
                raise NotFound(f"scene {obs.scene_id} of observation {obs.id} was not given to the report")
            self.scenes[obs.scene_id] = scenes_by_id[obs.scene_id]
        self._rasters: dict[int, _Raster] = {}
        self._to_wgs84 = Transformer.from_crs(site.epsg, 4326, always_xy=True)

    def build(self, changes: Sequence[Change], title: str, reviews: Mapping[int, Review]) -> ReportPage:
        """The whole page model, with the analyst's REVIEWS by change id; reads every pixel the page shows."""
        tiers = {key: tier for tier, (key, _, _) in enumerate(GROUPS)}
        ordered = sorted(
            changes, key=lambda c: (tiers.get(c.persistence, 1), _utc(c.date_to), _utc(c.date_from), -c.area_m2)
        )
        for change in ordered:
            for obs_id in (change.before_id, change.after_id):
                if obs_id not in self.by_id:
                    raise NotFound(f"a change refers to observation {obs_id}, which was not given to the report")
        numbered = list(enumerate(ordered, start=1))
        rows = {number: self._change_row(number, change, reviews.get(change.id or 0)) for number, change in numbered}
        kinds = Counter(change.kind for change in ordered)
        groups = tuple(
            ChangeGroup(
                key or "unfollowed",
                title,
                blurb,
                tuple(rows[n] for n, c in numbered if c.persistence == key),
                collapsed=key == "transient",
            )
            for key, title, blurb in GROUPS
            if any(c.persistence == key for c in ordered)
        )
        ranked = sorted(numbered, key=lambda nc: (tiers.get(nc[1].persistence, 1), -nc[1].area_m2 * nc[1].confidence))
        return ReportPage(
            title=title,
            synthetic=self.synthetic,
            site=self._summary(),
            timeline=tuple(self._timeline_row(obs) for obs in self.observations),
            kind_counts=tuple((kind, n, _css(kind_colour(kind))) for kind, n in sorted(kinds.items())),
            persistence_counts=tuple((group.title, len(group.rows)) for group in groups),
            changes=tuple(rows.values()),
            groups=groups,
            chips=tuple(
                self._chip_pair(rows[n], c, numbered) for n, c in sorted(ranked[:MAX_CHIP_PAIRS], key=lambda nc: nc[0])
            ),
            pairs=tuple(self._pair_section(b, a, numbered) for b, a in self._pairs(ordered)),
            confidence=self._confidence(ordered),
            provenance=tuple(self._provenance_row(obs) for obs in self.observations),
            attributions=self._attributions(),
            reviewed=_reviewed(ordered, reviews),
        )

    # --- facts from files -------------------------------------------------------------------

    def _raster(self, obs: Observation) -> _Raster:
        assert obs.id is not None  # checked in __init__
        if obs.id not in self._rasters:
            path = self._path(obs)
            with open_raster(path) as src:
                check_site_grid(src, path, self.site.epsg)
                bands = display_bands(src, self.scenes[obs.scene_id].band_names)
                left, bottom, right, top = src.bounds
                self._rasters[obs.id] = _Raster(
                    path, BoundingBox(left, bottom, right, top), src.transform.a, stretch_of(src, bands)
                )
        return self._rasters[obs.id]

    def _path(self, obs: Observation) -> Path:
        relative = Path(obs.path)
        if relative.is_absolute() or ".." in relative.parts:
            raise InputError(obs.path, "observation path must be relative to the store and stay inside it")
        return self.store_root / relative

    # --- sections ---------------------------------------------------------------------------

    def _summary(self) -> SiteSummary:
        site = self.site
        if self.observations:
            first, last = _utc(self.observations[0].acquired), _utc(self.observations[-1].acquired)
            dates = f"{_date(first)} to {_date(last)} ({len(self.observations)} observations)"
        else:
            dates = "no observations yet"
        gsd = f"base GSD {site.base_gsd:.2f} m" if site.base_gsd is not None else "base GSD not set yet"
        return SiteSummary(
            name=site.name,
            tags=site.tags,
            zones=tuple((zone.name, _area(_geodesic_area(zone.geometry))) for zone in site.zones),
            area=_area(_geodesic_area(site.geometry)),
            grid=f"EPSG:{site.epsg}, {gsd}, {site.extent_x:,.0f} m x {site.extent_y:,.0f} m",
            date_range=dates,
        )

    def _timeline_row(self, obs: Observation) -> TimelineRow:
        scene = self.scenes[obs.scene_id]
        return TimelineRow(
            date=_datetime(obs.acquired),
            provider=scene.provider or "unknown provider",
            sensor=scene.sensor or "unknown sensor",
            gsd=f"{obs.gsd:.2f} m (scene {scene.gsd:.2f} m)",
            valid=f"{obs.valid_fraction:.0%}",
            flags=", ".join(obs.flags),
            alignment=alignment_text(obs),
        )

    def _change_row(self, number: int, change: Change, review: Review | None) -> ChangeRow:
        centroid = change.geometry.centroid
        lon, lat = self._to_wgs84.transform(centroid.x, centroid.y)
        pair = (("before", self.by_id[change.before_id]), ("after", self.by_id[change.after_id]))
        flagged = [f"{role}: {', '.join(obs.flags)}" for role, obs in pair if obs.flags]
        return ChangeRow(
            number=number,
            kind=change.kind,
            colour=_css(kind_colour(change.kind)),
            area=f"{change.area_m2:,.0f}" if change.area_m2 >= 100 else f"{change.area_m2:.1f}",
            confidence=f"{change.confidence:.2f}",
            interval=f"between {_date(change.date_from)} and {_date(change.date_to)}{self._widened(change)}",
            centroid=f"{lat:.5f}, {lon:.5f}",
            detector=change.detector,
            caution="; ".join(flagged),
            persistence=change.persistence or "",
            why=self._why(change),
            history=tuple(
                (STATE_MARKS.get(state, "?"), f"{_date(self.by_id[obs_id].acquired)}: {state}")
                for obs_id, state in change.history
                if obs_id in self.by_id
            ),
            verdict="" if review is None else review.verdict,
            review="" if review is None else _review_text(review),
        )

    def _widened(self, change: Change) -> str:
        """What widens a change's interval: the observations in it that could not show the place."""
        if not change.unseen:
            return ""
        by_time = {_utc(obs.acquired): obs for obs in self.observations}
        parts = []
        for when in change.unseen:
            obs = by_time.get(_utc(when))
            cause = _unseen_cause(obs) if obs is not None else "no view of it"
            parts.append(f"{_date(when)} ({cause})")
        return f"; widened: no view of it on {', '.join(parts)}"

    def _why(self, change: Change) -> str:
        """The evidence for a change's persistence, in words an analyst can check on its history strip."""
        states = [(self.by_id[i].acquired, state) for i, state in change.history if i in self.by_id]
        later = [state for when, state in states if _utc(when) > _utc(change.date_to) and state != "unseen"]
        ended = f" on {_date(change.ended)}" if change.ended is not None else ""
        earlier = [when for when, state in states if _utc(when) < _utc(change.date_from) and state == "after"]
        reasons = {
            "held": f"still there in all {later.count('after')} later image(s); the earlier state was seen before",
            "reverted": f"gone again{ended}: the place went back to how it was",
            "preceded": (f"already looked like this on {_date(earlier[0])}" if earlier else "looked like this before")
            + (f"; changed again{ended}" if ended else ""),
            "flickers": f"changed again{ended}: neither state held",
            "shadow": "a change of light only: the same surface, darker and bluer on one date (a shadow)",
            "last": "on the last image: a later image will tell whether it stays",
            "first": "the earlier state rests on the first image alone",
        }
        return reasons.get(change.persistence_reason or "", "")

    def _pairs(self, changes: Sequence[Change]) -> list[tuple[int, int]]:
        """Consecutive observations, and any other pair a change was found between, in date order."""
        ids = [obs.id for obs in self.observations if obs.id is not None]
        pairs = dict.fromkeys(pairwise(ids))
        pairs.update(dict.fromkeys((c.before_id, c.after_id) for c in changes))

        def when(pair: tuple[int, int]) -> tuple[datetime, datetime]:
            return _utc(self.by_id[pair[1]].acquired), _utc(self.by_id[pair[0]].acquired)

        return sorted(pairs, key=when)

    def _pair_section(self, before_id: int, after_id: int, numbered: Sequence[tuple[int, Change]]) -> PairSection:
        before, after = self.by_id[before_id], self.by_id[after_id]
        box = union_bounds([self._raster(before).bounds, self._raster(after).bounds])
        view = overview_view(box)
        mine = [(n, c) for n, c in numbered if (c.before_id, c.after_id) == (before_id, after_id)]
        outlines = _outlines(mine, labelled=OVERVIEW_LABELS)
        return PairSection(
            interval=f"{_date(before.acquired)} to {_date(after.acquired)}",
            before=self._figure(before, view, outlines, "before"),
            after=self._figure(after, view, outlines, "after"),
            change_numbers=tuple(n for n, _ in mine),
        )

    def _chip_pair(self, row: ChangeRow, change: Change, numbered: Sequence[tuple[int, Change]]) -> ChipPair:
        before, after = self.by_id[change.before_id], self.by_id[change.after_id]
        rasters = (self._raster(before), self._raster(after))
        view = chip_view(change.geometry, union_bounds([r.bounds for r in rasters]), max(r.gsd for r in rasters))
        # Neighbouring changes of the same pair are drawn too, so no outline in a chip is unexplained.
        neighbours = [
            (n, c)
            for n, c in numbered
            if (c.before_id, c.after_id) == (change.before_id, change.after_id)
            and c.geometry.intersects(box(*view.box))
        ]
        outlines = _outlines(neighbours)
        label = f"#{row.number} {row.kind}"
        return ChipPair(
            change=row,
            before=self._figure(before, view, outlines, "before", label),
            after=self._figure(after, view, outlines, "after", label),
        )

    def _figure(
        self,
        obs: Observation,
        view: View,
        outlines: Sequence[Outline],
        when: Literal["before", "after"],
        label: str = "",
    ) -> Figure:
        """One view of one observation, captioned (in the image and under it) with its provenance."""
        role = f"{label}, {when.upper()}" if label else when.upper()
        scene = self.scenes[obs.scene_id]
        raster = self._raster(obs)
        provider = scene.provider or "unknown provider"
        source = f"{provider} {scene.sensor}" if scene.sensor else provider
        attribution = scene.attribution or "no attribution recorded"
        licence = f"licence: {scene.licence}" if scene.licence else "licence not recorded"
        caption = (f"{_datetime(obs.acquired)} | {source} | {obs.gsd:.2f} m", f"{attribution} | {licence}")
        metadata = {
            "Title": f"{self.site.name}: {role} {_date(obs.acquired)}",
            "Creation Time": _utc(obs.acquired).isoformat(),
            "Source": source,
            "Copyright": attribution,
            "Disclaimer": licence,
            **({"Warning": "synthetic demo imagery"} if self.synthetic else {}),
        }
        uri = render_view(
            raster.path,
            view,
            stretch=raster.stretch,
            outlines=outlines,
            annotation=Annotation(
                f"{role} {_date(obs.acquired)}",
                caption,
                metadata,
                warning="SYNTHETIC DEMO IMAGERY: NOT A REAL PLACE OR EVENT" if self.synthetic else None,
            ),
        )
        return Figure(uri, f"{when.capitalize()}: {_datetime(obs.acquired)}, {source}")

    def _confidence(self, changes: Sequence[Change]) -> tuple[str, ...]:
        flagged = [obs for obs in self.observations if obs.flags]
        flag_counts = Counter(flag for obs in flagged for flag in obs.flags)
        flagged_ids = {obs.id for obs in flagged}
        risky = sum(1 for c in changes if c.before_id in flagged_ids or c.after_id in flagged_ids)
        detectors = sorted({c.detector for c in changes})
        method = f"the {', '.join(detectors)} detector" if detectors else "sitewatch's change detector"
        paragraphs = [
            f"How changes are found: {method} compares each pair of observations pixel by pixel, after "
            "both are put on the site grid at the coarser of their two resolutions and co-registered to "
            "the site's reference image, with cloud, cloud shadow and saturated pixels left out; each "
            "band of each date is standardised, and areas that differ more than the site's usual "
            "variation between images are outlined. It is a classic, unsupervised method: no model "
            "was trained on labelled examples, and it does not know what a building or a vehicle is.",
            "What confidence means: each change's confidence (0 to 1) is the detector's own score for "
            "how strongly and consistently that polygon differs. It is not a calibrated probability. "
            "Differences that are not real change can also score high: residual misregistration "
            "(along edges of buildings and roads), different illumination and shadows (sun angle, "
            "season), cloud, haze and cloud shadow, and different sensors or viewing angles.",
            "Dating: a change is dated to the interval between the last image without it and the first "
            "image with it. It happened at some time in that interval, not on either date. Images in "
            "between that could not show the place (cloudy, left out, masked there) widen the interval, "
            "and the table names them.",
            "Persistent or transient: each change found between two images is compared, on every other "
            "image, with how the place looked before and after it. A change that holds on the next images "
            "and was not there earlier is persistent (construction, demolition); one that goes back, had "
            "been there before, keeps changing, or is only a shadow is transient (vehicles, containers, "
            "shadows); one seen on one side on a single date is unconfirmed. The strip beside each change "
            "shows its state on every image: ○ as before, ● as after, ◐ neither, · not seen. The test "
            "compares pixels, not objects: a structure that is rebuilt exactly as it was reads as transient.",
        ]
        if flagged:
            counts = ", ".join(f"{flag} {n}" for flag, n in sorted(flag_counts.items()))
            paragraphs.append(
                f"Data quality: {len(flagged)} of {len(self.observations)} observations were flagged by "
                f"quality checks ({counts}); {risky} of {len(changes)} changes involve a flagged "
                "observation and deserve extra caution."
            )
        else:
            paragraphs.append(
                f"Data quality: none of the {len(self.observations)} observations were flagged by quality checks."
            )
        if changes:
            paragraphs.append("Check every change against its before and after images before publishing it.")
        return tuple(paragraphs)

    def _provenance_row(self, obs: Observation) -> ProvenanceRow:
        scene = self.scenes[obs.scene_id]
        return ProvenanceRow(
            date=_datetime(obs.acquired),
            provider=scene.provider or "unknown provider",
            sensor=scene.sensor or "unknown sensor",
            licence=scene.licence or "not recorded",
            attribution=scene.attribution or "not recorded",
            scene=scene.sha256[:12],
        )

    def _attributions(self) -> tuple[str, ...]:
        """Each distinct attribution once, in order of first use: the credit line to publish."""
        found = (self.scenes[obs.scene_id].attribution for obs in self.observations)
        return tuple(dict.fromkeys(a for a in found if a))


def _unseen_cause(obs: Observation) -> str:
    """Why an observation could not show a place, as far as its record says."""
    if obs.flags:
        return ", ".join(obs.flags)
    if obs.align_status == "failed":
        return f"not aligned: {obs.align_reason}"
    return "masked there"


def _review_text(review: Review) -> str:
    """A verdict's reason, who gave it and when, in a few words."""
    by = f" by {review.reviewer}" if review.reviewer else ""
    return "; ".join(part for part in (review.reason, f"{review.verdict}{by} on {_date(review.created)}") if part)


def _reviewed(changes: Sequence[Change], reviews: Mapping[int, Review]) -> str:
    """How many of the changes the analyst has judged, and how; "" when none."""
    verdicts = Counter(reviews[c.id].verdict for c in changes if c.id is not None and c.id in reviews)
    if not verdicts:
        return ""
    counts = ", ".join(f"{verdicts[v]} {v}" for v in ("confirmed", "rejected") if verdicts[v])
    return f"{verdicts.total()} of {len(changes)} changes reviewed by an analyst: {counts}"


def _annotation_row(annotation: AnalystAnnotation) -> AnnotationRow:
    return AnnotationRow(
        label=annotation.label,
        note=annotation.note,
        image="" if annotation.acquired is None else _datetime(annotation.acquired),
        author=annotation.author or "",
        place=describe_place(annotation.geometry),
    )


#: Changes numbered on a site overview (the largest); the rest are outlined only.
OVERVIEW_LABELS = 25


def _outlines(numbered: Iterable[tuple[int, Change]], labelled: int | None = None) -> list[Outline]:
    """Outlines of numbered changes; with LABELLED, only that many (the largest) carry a number and a
    ring, so an overview of hundreds of changes stays readable (every change still has its outline)."""
    pairs = list(numbered)
    keep = {n for n, c in sorted(pairs, key=lambda nc: -nc[1].area_m2)[:labelled]} if labelled else None
    return [
        Outline(
            c.geometry,
            kind_colour(c.kind),
            f"#{n}" if keep is None or n in keep else None,
            mark_small=keep is None or n in keep,
        )
        for n, c in pairs
    ]


def alignment_text(obs: Observation) -> str:
    """How the observation was co-registered, in a few words for the timeline."""
    figures = obs.alignment or {}
    if obs.align_status == "reference":
        return "reference"
    if obs.align_status == "failed":
        return f"not aligned ({obs.align_reason})"
    if obs.align_status == "aligned":
        shift = figures.get("applied_shift_px") or [0.0, 0.0]
        rmse = figures.get("residual_rmse_px")
        residual = f", residual {rmse:.2f} px" if isinstance(rmse, (int, float)) else ""
        return f"{figures.get('model', 'aligned')}: moved {shift[0]:+.2f}, {shift[1]:+.2f} px{residual}"
    return "not aligned yet"


def _css(colour: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*colour)


def _utc(when: datetime) -> datetime:
    """Timezone-aware UTC; a naive time is taken as UTC, as pystac does."""
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _date(when: datetime) -> str:
    return _utc(when).strftime("%Y-%m-%d")


def _datetime(when: datetime) -> str:
    return _utc(when).strftime("%Y-%m-%d %H:%M UTC")


def _geodesic_area(geometry: BaseGeometry) -> float:
    area, _ = Geod(ellps="WGS84").geometry_area_perimeter(geometry)
    return abs(float(area))


def _area(square_metres: float) -> str:
    if square_metres >= 1_000_000:
        return f"{square_metres / 1_000_000:,.2f} km²"
    return f"{square_metres:,.0f} m² ({square_metres / 10_000:,.2f} ha)"


# --- activity ---------------------------------------------------------------------------------

#: Size of one activity chart (SVG user units), and its plotting area: left, top, right, bottom.
CHART_SIZE = (560, 170)
CHART_PLOT = (46, 10, 548, 146)
#: A series' finding when nothing stood out.
QUIET = "no anomalies, no change-points"


@dataclass(frozen=True)
class ChartPoint:
    """One date of an activity chart: where it is drawn, and what its tooltip says."""

    x: float
    y: float
    label: str
    anomaly: bool


@dataclass(frozen=True)
class ChartMark:
    """A vertical mark on an activity chart (a change-point, or a date with no value) and its tooltip."""

    x: float
    label: str


@dataclass(frozen=True)
class ChartLine:
    """A further series drawn thin on a chart (one class of objects beside their total), with its name."""

    name: str
    points: str  # SVG points
    css: str  # CSS class


@dataclass(frozen=True)
class ActivityChart:
    """One area's series as numbers for the template's SVG (so nothing is marked safe): the activity
    index, and below it (COUNTS) the objects counted per date."""

    title: str
    what: str  # what is drawn ("Activity index", "Vehicles counted"), for the SVG's title
    line: str  # SVG points of the main series
    median: str  # SVG points of the baseline median
    band: str  # SVG polygon of the normal range: median ± threshold · 1.4826 · MAD
    points: tuple[ChartPoint, ...]
    change_points: tuple[ChartMark, ...]
    skipped: tuple[ChartMark, ...]
    y_top: str  # the value at the top of the plot
    first: str  # first and last date shown
    last: str
    findings: tuple[str, ...]  # anomalies and change-points in words
    others: tuple[ChartLine, ...] = ()
    counts: ActivityChart | None = None
    events: tuple[ChartMark, ...] = ()  # the analyst's events inside the dates shown


@dataclass(frozen=True)
class ActivitySection:
    """The report's activity charts, how they were made, and what was left out."""

    charts: tuple[ActivityChart, ...]
    method: str
    persistent: str
    size: tuple[int, int] = CHART_SIZE
    plot: tuple[int, int, int, int] = CHART_PLOT


def activity_section(activity: SiteActivity, events: Sequence[SiteEvent] = ()) -> ActivitySection:
    """The activity charts of a site: the whole site first, then each zone; EVENTS are drawn on each."""
    settings = activity.series[0].index.settings
    gsd = f" at {activity.index.gsd:.2f} m" if activity.index.gsd else ""
    method = (
        f"The activity index of a date is the share of an area's clear pixels{gsd} that differ from the "
        "site's usual appearance (the per-pixel median of its nearby dates, after each date is put on one "
        "radiometry; shadows that move with the sun do not count). It rises with vehicles, containers and "
        f"other things that come and go. Each date is compared with up to {settings.window} dates before it: "
        f"the shaded band is the normal range (median ± {settings.threshold} robust deviations), red dots "
        "are anomalies, dashed lines are change-points (a lasting new level), grey ticks are dates with no "
        "value. Hover over a mark for its figures."
    )
    counted_by = activity.series[0].counted_by
    if counted_by is not None:
        method += (
            f" Below each index, the objects the {counted_by.removeprefix('detector:')} detector counted there "
            "on each date (the bold line, judged the same way, is the total; thin lines are its classes); "
            "dates too coarse to resolve vehicles, or not looked at, have no count (n/a), never zero."
        )
    if events:
        method += " Blue lines are the analyst's events (hover for their labels)."
    return ActivitySection(
        charts=tuple(_activity_chart(series, events) for series in activity.series),
        method=method,
        persistent=f"{activity.index.persistent_note[0].upper()}{activity.index.persistent_note[1:]}.",
    )


def _activity_chart(series: ActivitySeries, events: Sequence[SiteEvent] = ()) -> ActivityChart:
    """One area's index chart, with its counts chart below on the same time axis; EVENTS on both."""
    from sitewatch.activity import VEHICLES

    names = series.count_columns
    dated = [p.date for p in series.index.points] + [s.acquired for s in series.skipped]
    dated += [p.date for n in names for p in series.columns[n].points] + [s.acquired for s in series.counts_skipped]
    times = sorted(_utc(when).timestamp() for when in dated)
    span = (times[0], times[-1]) if times else None
    chart = _chart(
        series.area,
        "Activity index",
        series.index,
        series.skipped,
        span,
        lambda v: f"{v:.3f}",
        minimum=0.01,
        events=events,
    )
    if not names:
        return chart
    main = VEHICLES if VEHICLES in names else names[0]
    counts = _chart(
        series.area,
        f"{main.capitalize()} counted",
        series.columns[main],
        series.counts_skipped,
        span,
        lambda v: f"{v:.0f}",
        minimum=1.0,
        subject=main,
        others={n: series.columns[n] for n in names if n != main},
        events=events,
    )
    findings = list(counts.findings)
    for name in names:
        if name != main:
            findings += _findings(series.columns[name], lambda v: f"{v:.0f}", name)
    return replace(chart, counts=replace(counts, findings=tuple(findings)))


def _chart(
    title: str,
    what: str,
    analysis: SeriesAnalysis,
    skipped: Sequence[SkippedDate],
    span: tuple[float, float] | None,
    number: Callable[[float], str],
    *,
    minimum: float,
    subject: str = "activity",
    others: Mapping[str, SeriesAnalysis] | None = None,
    events: Sequence[SiteEvent] = (),
) -> ActivityChart:
    """A chart of ANALYSIS over SPAN (first and last POSIX time; None: no dates): dates placed by time,
    values from 0 to a little above the peak (at least MINIMUM); OTHERS drawn as thin lines, EVENTS as
    marks where they fall inside SPAN; NUMBER formats a value, SUBJECT names the series in words
    ("vehicles rose after ...")."""
    points = analysis.points
    others = others or {}
    unit = _unit(subject)
    left, top, right, bottom = CHART_PLOT
    t0, t1 = span or (0.0, 0.0)
    width = 1.4826 * analysis.settings.threshold  # the normal range, in MADs either side of the median
    based = [(p.date, p.median, p.mad) for p in points if p.median is not None and p.mad is not None]
    peaks = [p.value for other in others.values() for p in other.points]
    y_top = 1.1 * max([minimum, *(p.value for p in points), *peaks, *(m + width * d for _, m, d in based)])

    def x(when: datetime) -> float:
        share = (_utc(when).timestamp() - t0) / (t1 - t0) if t1 > t0 else 0.5
        return round(left + (right - left) * share, 1)

    def y(value: float) -> float:
        return round(bottom - (bottom - top) * min(max(value, 0.0), y_top) / y_top, 1)

    band = [f"{x(w)},{y(m + width * d)}" for w, m, d in based]
    band += [f"{x(w)},{y(m - width * d)}" for w, m, d in reversed(based)]
    return ActivityChart(
        title=title,
        what=what,
        line=" ".join(f"{x(p.date)},{y(p.value)}" for p in points),
        median=" ".join(f"{x(w)},{y(m)}" for w, m, _ in based),
        band=" ".join(band) if len(based) > 1 else "",
        points=tuple(
            ChartPoint(
                x(p.date),
                y(p.value),
                f"{_date(p.date)}: {number(p.value)}{unit}"
                + "".join(f", {n} {number(_value_on(o, p.date))}" for n, o in others.items())
                + (f", z {p.z:+.1f}" if p.z is not None else ", no baseline yet"),
                p.anomaly is not None,
            )
            for p in points
        ),
        change_points=tuple(
            ChartMark(round((x(c.last_before) + x(c.first_after)) / 2, 1), c.words(subject))
            for c in analysis.change_points
        ),
        skipped=tuple(ChartMark(x(s.acquired), f"{_date(s.acquired)}: {s.reason}") for s in skipped),
        y_top=number(y_top),
        first=_date(datetime.fromtimestamp(t0, UTC)) if span else "",
        last=_date(datetime.fromtimestamp(t1, UTC)) if span else "",
        findings=_findings(analysis, number, subject) or (f"{subject}: {QUIET}" if unit else QUIET,),
        others=tuple(
            ChartLine(name, " ".join(f"{x(p.date)},{y(p.value)}" for p in other.points), f"class{k % 3}")
            for k, (name, other) in enumerate(others.items())
        ),
        events=tuple(
            ChartMark(x(e.when), f"{describe_when(e.when)}: {e.label}")
            for e in events
            if span is not None and t0 <= _utc(e.when).timestamp() <= t1
        ),
    )


def _findings(analysis: SeriesAnalysis, number: Callable[[float], str], subject: str) -> tuple[str, ...]:
    """ANALYSIS's anomalies and change-points, and its note, in words (SUBJECT names the series)."""
    unit = _unit(subject)
    found = [
        f"{_date(p.date)}: {number(p.value)}{unit}, {p.anomaly} (z {p.z:+.1f})"
        for p in analysis.anomalies
        if p.z is not None
    ]
    found += [c.words(subject) for c in analysis.change_points]
    if analysis.note:
        found.append(analysis.note)
    return tuple(found)


def _unit(subject: str) -> str:
    """What a value of SUBJECT's series counts, after a space ("" for the activity index, a share)."""
    return "" if subject == "activity" else f" {subject}"


def _value_on(analysis: SeriesAnalysis, when: datetime) -> float:
    """ANALYSIS's value on WHEN (the count columns of an area share their dates)."""
    return next(p.value for p in analysis.points if p.date == when)
