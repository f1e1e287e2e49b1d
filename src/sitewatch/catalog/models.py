"""Records the catalog stores, as plain frozen dataclasses the stages pass around.

Geometries travel as shapely objects: site and zone outlines in WGS84 lon/lat (as in GeoJSON and
STAC), change polygons in the site grid's CRS (metres) with their WGS84 copy made on export.
Times are timezone-aware UTC.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from shapely.geometry.base import BaseGeometry


@dataclass(frozen=True)
class Zone:
    """A named sub-polygon of a site ("loading area")."""

    name: str
    geometry: BaseGeometry  # WGS84
    id: int | None = None


@dataclass(frozen=True)
class Site:
    """A named area of interest and its site grid."""

    name: str
    geometry: BaseGeometry  # WGS84 polygon
    epsg: int  # local UTM zone of the site grid
    origin_x: float  # grid origin (top-left corner, metres in epsg)
    origin_y: float
    extent_x: float  # grid size in metres (east)
    extent_y: float  # grid size in metres (south)
    base_gsd: float | None  # g: finest GSD ingested, or pinned; None until the first scene
    gsd_pinned: bool = False
    tags: tuple[str, ...] = ()
    zones: tuple[Zone, ...] = ()
    reference_scene_id: int | None = None  # pinned reference for alignment, else chosen automatically
    id: int | None = None


@dataclass(frozen=True)
class Scene:
    """One ingested image file or STAC item, as delivered."""

    sha256: str
    path: Path  # where the scene's pixels are now (inside the store, or referenced in place)
    source: str  # where it came from: a path or URL
    acquired: datetime
    footprint: BaseGeometry  # WGS84
    gsd: float
    width: int
    height: int
    bands: int
    dtype: str
    crs: str  # WKT or "EPSG:n" of the scene (as given, or as supplied by --crs)
    provider: str | None = None
    sensor: str | None = None
    licence: str | None = None
    attribution: str | None = None
    band_names: tuple[str, ...] = ()
    transform: tuple[float, float, float, float, float, float] | None = None  # given by world file/--bounds
    masks: tuple[tuple[str, Path], ...] = ()  # sensor-provided masks: (kind, store path)
    id: int | None = None

    @property
    def rgb(self) -> tuple[int, int, int] | None:
        """Indexes of the red, green and blue bands, where the band names say which they are."""
        names = [name.strip().lower() for name in self.band_names]
        if all(colour in names for colour in ("red", "green", "blue")):
            return (names.index("red"), names.index("green"), names.index("blue"))
        return None


@dataclass(frozen=True)
class Observation:
    """A scene clipped and resampled onto one site's grid, stored as a COG with a mask."""

    site_id: int
    scene_id: int
    level: int  # stored at base_gsd * 2**level
    gsd: float
    path: Path  # the COG, relative to the workspace store
    width: int
    height: int
    acquired: datetime
    valid_fraction: float  # share of grid pixels with data
    flags: tuple[str, ...] = ()  # quality flags ("cloudy", "partial", ...)
    align_status: str = "pending"  # "pending" | "reference" | "aligned" | "failed"
    align_reason: str | None = None  # why alignment failed ("featureless", "cloud", ...)
    alignment: dict[str, Any] | None = None  # registration figures, displacement grid, radiometry
    masked_fraction: float = 0.0  # share of valid pixels masked (cloud, shadow, saturation)
    id: int | None = None

    @property
    def reliable(self) -> bool:
        """Whether downstream stages may compare this observation (not failed alignment)."""
        return self.align_status != "failed"


@dataclass(frozen=True)
class Change:
    """A polygon where two observations differ in a way that matters, followed through the site's series.

    BEFORE_ID and AFTER_ID are the last observation that shows the place as it was and the first
    that shows it changed; the dates are theirs.
    """

    site_id: int
    before_id: int  # observation ids
    after_id: int
    kind: str  # "appeared" | "removed" | "modified"
    geometry: BaseGeometry  # site grid CRS (metres)
    area_m2: float
    confidence: float  # 0..1
    date_from: datetime  # last image without it
    date_to: datetime  # first image with it
    detector: str
    attrs: dict[str, float] = field(default_factory=dict)
    id: int | None = None
    #: "persistent" (it stays), "transient" (it comes and goes) or "unconfirmed" (seen on one side
    #: of the change on one date only); None where it was not followed through the time series.
    persistence: str | None = None
    #: Why, in one word (see :data:`sitewatch.change.history.Reason`): "held", "reverted", "shadow", ...
    persistence_reason: str | None = None
    #: Observation times inside the interval that could not show the place (left out, cloud, no
    #: data): the change may have happened before or after them, so they widen the interval.
    unseen: tuple[datetime, ...] = ()
    #: For a transient change, the first later time the place no longer looked as it did after the
    #: change (back as before, or changed again); None while it still does.
    ended: datetime | None = None
    #: (observation id, state) for every observation of the site in time order: "before",
    #: "after", "other" or "unseen" (see :mod:`sitewatch.change.history`).
    history: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True)
class Detection:
    """An object found in one observation: class, oriented box, score and, where judged, colour.

    Every way of finding objects shares this record: ``find`` (a colour and size search, class
    ``colour-match``) and the learned detectors (``small-vehicle``, ``large-vehicle``, ...), told
    apart by SOURCE.
    """

    site_id: int
    observation_id: int
    cls: str  # "colour-match" for find results; "small-vehicle", "large-vehicle", "container", ...
    score: float  # 0..1
    geometry: BaseGeometry  # oriented box, site grid CRS (metres)
    length_m: float  # long side of the box
    width_m: float  # short side
    source: str  # "find", or the detector's name
    colour: str | None = None  # colour name ("red"), where judged
    attrs: dict[str, Any] = field(default_factory=dict)  # zone, measured Lab, query, rule, ...
    id: int | None = None


@dataclass(frozen=True)
class DetectionRun:
    """One object detector's pass over one observation, kept whether or not it found anything, so
    that a date with no objects (0) is told apart from one never looked at or too coarse to see them
    (no count), and so that a pass is not repeated for the same model and the same pixels."""

    site_id: int
    observation_id: int
    source: str  # "detector:<name>", as on its detections
    model: str  # the detector and its model file (a new model means a new pass)
    observation_path: Path  # the observation file looked at (realignment writes a new one)
    gsd: float  # metres per pixel looked at
    resolvable: bool  # False: the GSD is too coarse for the detector's objects (no counts, REASON)
    reason: str | None
    counts: dict[str, int]  # detections kept per class, every class the detector reports
    clear: dict[str | None, float]  # share of the site (None) and of each zone that could be seen
    seconds: float
    created: datetime
    id: int | None = None


@dataclass(frozen=True)
class WatchRule:
    """A saved query that fires when a new observation of its site matches.

    SEEN holds the observations already evaluated (the search it was saved from included), so a
    rule fires once per observation, however often it is evaluated.
    """

    site_id: int
    name: str  # unique per site
    kind: str  # "find", "change" or "activity" (see :mod:`sitewatch.watch.rules`)
    query: dict[str, Any]  # what the rule watches for, as its kind writes it as JSON
    created: datetime
    seen: tuple[int, ...] = ()
    last_fired_observation_id: int | None = None
    id: int | None = None


@dataclass(frozen=True)
class Alert:
    """A watch rule matched one image of its site: what it matched there, once.

    An image (scene) gives a rule at most one alert, whatever it matched in it and however often the
    rule is evaluated; EVIDENCE holds what matched (changes, detections or a series point), copied
    in full, since change and detection rows are replaced when a site is analyzed again.
    """

    rule_id: int | None  # None once the rule has been removed (the alert stays)
    rule: str
    kind: str  # the rule's kind: "change", "activity" or "find"
    site_id: int
    scene_id: int
    observation_id: int | None  # None once the observation has been rebuilt or removed
    acquired: datetime  # when the image was taken
    summary: str  # one line for people
    evidence: dict[str, Any]
    created: datetime
    id: int | None = None


@dataclass(frozen=True)
class NotifyTarget:
    """Where alerts are sent besides the log: a webhook URL or an SMTP relay and addresses.

    Only alerts created once it was CONFIGURED are sent to it, so configuring one does not replay
    the workspace's history.
    """

    channel: str  # "webhook" | "email"
    config: dict[str, Any]
    configured: datetime


@dataclass(frozen=True)
class MonitoredFile:
    """A file ``sitewatch monitor`` found in a watched folder, and what ingesting it gave.

    A file is tried again only when its size or modification time changes (a copy still being
    written fails and is retried once it is complete).
    """

    path: Path  # absolute
    size: int
    mtime_ns: int
    status: str  # an ingest status: "ingested", "duplicate", "no-site" or "failed"
    scene_id: int | None = None
    message: str = ""


@dataclass(frozen=True)
class StacFailure:
    """A STAC item ``sitewatch monitor`` failed to ingest for a site, and how often it has tried.

    The monitor's search starts after a site's latest image, so an item that failed before a later
    one was ingested would never be found again: this record is what brings it back, by its time.
    """

    site_id: int
    source: str  # the item as ingest names it: its own URL, or "api#id"
    acquired: datetime  # the item's time, which its next search covers
    message: str  # why the last try failed
    tries: int  # passes in which it was tried and failed
    last_tried: datetime
    api: str | None = None  # the STAC API it was searched on (None: recorded before this was kept)


@dataclass(frozen=True)
class Annotation:
    """An analyst's mark on a site: a point or polygon with a label and a note, on one image or on the site
    in general."""

    site_id: int
    geometry: BaseGeometry  # WGS84 lon/lat, Point or Polygon
    label: str
    note: str
    scene_id: int | None  # the image it was drawn on (scenes are stable; observations get rebuilt); None = the site
    acquired: datetime | None  # that image's date, kept so exports and reports can say which image
    author: str | None
    created: datetime
    updated: datetime
    id: int | None = None


@dataclass(frozen=True)
class Review:
    """An analyst's verdict on a detected change. Change rows are replaced each time a site is analyzed, so a review
    keeps a copy of what it judged (kind, outline, dates, detector, the after-image's scene) and is matched to the
    current changes by place and dates, not by change id."""

    site_id: int
    verdict: str  # "confirmed" | "rejected"
    reason: str
    kind: str
    geometry: BaseGeometry  # site grid CRS (metres), as Change.geometry
    date_from: datetime
    date_to: datetime
    after_scene_id: int | None
    detector: str
    reviewer: str | None
    created: datetime
    change_id: int | None = None  # the change row reviewed (None once it has been replaced)
    id: int | None = None


@dataclass(frozen=True)
class SiteEvent:
    """A dated marker the analyst puts on a site's activity chart ("summit 12 June")."""

    site_id: int
    when: datetime  # UTC midnight of the day, or a precise time
    label: str
    note: str
    created: datetime
    id: int | None = None


@dataclass(frozen=True)
class SiteSource:
    """Where ``sitewatch monitor`` looks for one site's new scenes, saved with the site so that a
    long-running monitor needs no flags and sites can be watched from different places."""

    site_id: int
    kind: str  # "stac" | "folder"
    target: str  # the STAC API's URL, or the watched folder's absolute path
    created: datetime
    collections: tuple[str, ...] = ()  # STAC collections searched (none: all of them)
    allow_hosts: tuple[str, ...] = ()  # extra hosts the STAC API's assets may come from
    id: int | None = None
