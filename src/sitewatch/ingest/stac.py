"""STAC into :class:`SceneSource`: walk a catalog or search an API, pick each item's imagery, fetch it.

Everything a STAC document names is hostile (see :mod:`sitewatch.io.stac`), so the work is split
in two phases. First every document is read, every item's imagery and cloud-mask hrefs are
resolved and checked, and the metadata is gathered, without downloading a byte of imagery: one
unsafe href anywhere refuses the whole batch before anything lands on disk. Then remote imagery is
downloaded; if any download fails, the files this call downloaded are removed again.

A caller that polls (``sitewatch monitor``) may instead go on without an item that fails on its own
(``on_item_error``): a refused or missing href, a malformed item or a failed download then leaves
that item out, with its own downloads removed, and the others are taken. Every href is still checked
before it is followed; only the all-or-nothing is given up.

pystac parses; these functions only decide what to follow and what to take. Catalog walks are
bounded (depth, documents, items) and never read a document twice, so a link cycle ends and a
huge catalog is refused rather than followed forever.

Sensor cloud masks (assets with roles ``cloud``/``cloud-shadow``, or keys such as ``scl``,
``udm2``, ``qa_pixel``) are not imagery: the ``scenes_from_*`` functions return them beside each
scene as :class:`MaskAsset` records; the ``sources_from_*`` functions return the scenes alone.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urldefrag, urlsplit

import pystac
from pystac.extensions.eo import EOExtension
from pystac.extensions.raster import RasterExtension
from pystac.extensions.scientific import ScientificExtension
from pystac_client import Client, ConformanceClasses
from pystac_client.errors import ClientTypeError
from pystac_client.exceptions import APIError
from pystac_client.warnings import NoConformsTo

from sitewatch.errors import GeometryError, SitewatchError, SitewatchWarning, StacError
from sitewatch.ingest.sources import SceneSource
from sitewatch.io.stac import (
    GuardedApiIO,
    GuardedStacIO,
    HostPolicy,
    download,
    parse_json_object,
    resolve_href,
)
from sitewatch.masks import sensor_mask_kind
from sitewatch.settings import DEFAULT_LIMITS, Limits

log = logging.getLogger(__name__)

#: Walk bounds: how deep links may nest, how many documents and items one call may read.
MAX_DEPTH = 32
MAX_DOCUMENTS = 10_000
MAX_ITEMS = 10_000

#: Raster media types, best first (the part before any ``;`` parameters).
IMAGE_MEDIA_TYPES: tuple[str, ...] = ("image/tiff", "image/vnd.stac.geotiff", "image/jp2", "image/png", "image/jpeg")
#: Media types by href suffix, for assets that do not declare one.
SUFFIX_MEDIA_TYPES: dict[str, str] = {
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".jp2": "image/jp2",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
}
#: File suffix for a download, by media type, so the file on disk says what it holds.
MEDIA_SUFFIXES: dict[str, str] = {
    "image/tiff": ".tif",
    "image/vnd.stac.geotiff": ".tif",
    "image/jp2": ".jp2",
    "image/png": ".png",
    "image/jpeg": ".jpg",
}
SKIP_ROLES = frozenset({"thumbnail", "overview", "metadata"})
MASK_ROLES = frozenset({"cloud", "cloud-shadow"})
#: Asset keys of sensor cloud masks: Sentinel-2 SCL, Planet UDM/UDM2, Landsat QA_PIXEL, Fmask.
MASK_KEY = re.compile(r"cloud|(^|[_-])(scl|udm2?|fmask|qa_pixel)($|[_-])", re.IGNORECASE)
PROVIDER_ROLES: tuple[str, ...] = ("producer", "licensor")

_PYSTAC_ERRORS = (
    pystac.STACError,
    pystac.STACTypeError,
    APIError,
    ClientTypeError,
    KeyError,
    IndexError,
    TypeError,
    ValueError,
    AttributeError,
)


class SkippedItemWarning(SitewatchWarning):
    """A STAC item was left out: it has no imagery asset sitewatch can read."""


class CollectionNotReadWarning(SitewatchWarning):
    """An item's collection link was not followed, so licence and providers come from the item only."""


@dataclass(frozen=True)
class MaskAsset:
    """A sensor-provided cloud or cloud-shadow mask that came with a scene's STAC item.

    ``href`` is absolute and already checked (a local path inside the catalog, or an http(s) URL on
    an allowed host). ``path`` is the local file: set for local masks that exist, and for remote
    ones only when they were downloaded (``download_masks=True``).
    """

    key: str  # asset key: "scl", "udm2", "cloud", ...
    href: str
    roles: tuple[str, ...]
    media_type: str | None
    path: Path | None = None


@dataclass(frozen=True)
class StacScene:
    """One STAC item's scene and the cloud masks delivered with it."""

    source: SceneSource
    masks: tuple[MaskAsset, ...] = ()


@dataclass(frozen=True)
class ItemError:
    """An item a search went on without (see ``on_item_error``): where it is, its time, what failed."""

    origin: str  # as a scene from it would be named: the item's own document, or "document#id"
    acquired: datetime | None
    error: SitewatchError


@dataclass(frozen=True)
class _Found:
    """An item, where its relative hrefs are relative to, and the collection it belongs to."""

    item: pystac.Item
    base: str  # the real location of the document that holds the item (path or URL)
    origin: str  # provenance: the item's own document, or "document#id"
    collection: pystac.Collection | None


@dataclass(frozen=True)
class _Asset:
    """One asset to take: its key, checked target (local path or URL) and what it declares."""

    key: str
    href: str
    roles: tuple[str, ...]
    media_type: str | None  # as declared
    raster_type: str | None  # declared or guessed raster media type, for the download's suffix
    target: Path | str = ""  # set once the href is resolved and checked


@dataclass(frozen=True)
class _Planned:
    """An item whose imagery is chosen and checked, before anything is downloaded."""

    item_id: str
    source: SceneSource  # its path is a placeholder until the imagery is local
    imagery: _Asset
    masks: tuple[_Asset, ...]


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 160 else text[:157] + "..."


def _is_http(href: str) -> bool:
    return urlsplit(href).scheme.lower() in ("http", "https")


# Walking documents.


class _Walker:
    """Reads STAC documents through one guarded StacIO and walks their links, bounded."""

    def __init__(self, stac_io: GuardedStacIO, root: Path | None, max_items: int) -> None:
        self.io = stac_io
        self.root = root
        self.max_items = max_items
        self.documents = 0
        self.collections: dict[str, pystac.Collection] = {}

    def read(self, href: str) -> dict[str, Any]:
        self.documents += 1
        if self.documents > MAX_DOCUMENTS:
            raise StacError(href, f"more than {MAX_DOCUMENTS} STAC documents to read; refusing to go on")
        return parse_json_object(href, self.io.read_text(href))

    def parse(self, href: str, document: dict[str, Any]) -> pystac.STACObject | pystac.ItemCollection:
        try:
            if document.get("type") == "FeatureCollection":
                return pystac.ItemCollection.from_dict(document, preserve_dict=False)
            return self.io.stac_object_from_dict(document, href=href, preserve_dict=False)
        except SitewatchError:
            raise
        except _PYSTAC_ERRORS as exc:
            raise StacError(
                href, f"not a valid STAC Item, ItemCollection, Collection or Catalog ({_short(exc)})"
            ) from exc

    def resolve(self, href: str | None, base: str) -> Path | str:
        if not href:
            raise StacError(base, "a link or asset has no href")
        return resolve_href(href, base, self.io.policy, self.root)

    def walk(self, start: str) -> list[_Found]:
        found: list[_Found] = []
        seen: set[str] = set()
        queue: deque[tuple[str, int, pystac.Collection | None]] = deque([(start, 0, None)])
        while queue:
            href, depth, parent = queue.popleft()
            if href in seen:
                continue
            seen.add(href)
            log.debug("reading STAC document %s (depth %d)", href, depth)
            if depth > MAX_DEPTH:
                raise StacError(href, f"links nest more than {MAX_DEPTH} levels below {start}")
            obj = self.parse(href, self.read(href))
            if isinstance(obj, pystac.ItemCollection):
                for item in obj.items:
                    found.append(self._found(item, href, f"{href}#{item.id}", parent))
            elif isinstance(obj, pystac.Item):
                found.append(self._found(obj, href, href, parent))
            elif isinstance(obj, pystac.Catalog):  # a Collection is a Catalog too
                collection = obj if isinstance(obj, pystac.Collection) else parent
                if isinstance(obj, pystac.Collection):
                    self.collections[href] = obj
                for link in obj.links:
                    if link.rel in (pystac.RelType.CHILD, pystac.RelType.ITEM):
                        target = self.resolve(link.get_target_str(), href)
                        queue.append((_key(target), depth + 1, collection))
            if len(found) > self.max_items:
                raise StacError(start, f"holds more than {self.max_items} items; name a smaller catalog")
        return found

    def _found(self, item: pystac.Item, base: str, origin: str, parent: pystac.Collection | None) -> _Found:
        return _Found(item, base, origin, self._collection_of(item, base) or parent)

    def _collection_of(self, item: pystac.Item, base: str) -> pystac.Collection | None:
        """The collection an item links to, read once per collection (checked like any link).

        The collection only adds metadata, so a link that cannot be followed (a host not allowed,
        a file not downloaded with the item) is reported with a warning rather than failing the
        item; the link is still never followed unchecked.
        """
        link = item.get_single_link(pystac.RelType.COLLECTION)
        if link is None:
            return None
        try:
            key = _key(self.resolve(link.get_target_str(), base))
            if key not in self.collections:
                obj = self.parse(key, self.read(key))
                if not isinstance(obj, pystac.Collection):
                    raise StacError(key, "linked as a collection but is not a STAC Collection")
                self.collections[key] = obj
        except SitewatchError as exc:
            warnings.warn(
                f"{base}: collection of item {item.id!r} not read ({exc})", CollectionNotReadWarning, stacklevel=2
            )
            return None
        return self.collections[key]


def _key(target: Path | str) -> str:
    return str(target) if isinstance(target, Path) else urldefrag(target).url


# Choosing assets.


def _media_type(asset: pystac.Asset) -> str | None:
    """The asset's raster media type (declared, else guessed from its href), or None if not raster."""
    if asset.media_type:
        base = asset.media_type.split(";", 1)[0].strip().lower()
        return base if base in IMAGE_MEDIA_TYPES else None
    suffix = PurePosixPath(urlsplit(asset.href).path).suffix.lower()
    return SUFFIX_MEDIA_TYPES.get(suffix)


def _roles(asset: pystac.Asset) -> frozenset[str]:
    return frozenset(str(role).lower() for role in asset.roles or ())


def _is_mask(key: str, asset: pystac.Asset) -> bool:
    return bool(_roles(asset) & MASK_ROLES) or MASK_KEY.search(key) is not None


def _band_count(asset: pystac.Asset) -> int:
    for name in ("eo:bands", "raster:bands", "bands"):
        value = asset.extra_fields.get(name)
        if isinstance(value, list) and value:
            return len(value)
    return 0


def _pick_imagery(item: pystac.Item) -> tuple[str, pystac.Asset] | None:
    """The item's imagery asset: role ``data``, then ``visual``; GeoTIFF before JP2, PNG, JPEG.

    An item that keeps one band per file (several one-band ``data`` assets, as Sentinel-2 and
    Landsat items do) is represented by its ``visual`` composite when it has one: a single band is
    not the scene.
    """
    candidates: list[tuple[str, pystac.Asset, str]] = []
    for key, asset in item.assets.items():
        media = _media_type(asset)
        if media is None or _roles(asset) & SKIP_ROLES or _is_mask(key, asset):
            continue
        candidates.append((key, asset, media))
    data = [c for c in candidates if "data" in _roles(c[1])]
    band_per_file = len(data) > 1 and all(_band_count(c[1]) <= 1 for c in data)
    has_visual = any("visual" in _roles(c[1]) for c in candidates)

    def rank(candidate: tuple[str, pystac.Asset, str]) -> tuple[int, int, int]:
        _, asset, media = candidate
        roles = _roles(asset)
        role_rank = 0 if "data" in roles else 1 if "visual" in roles else 2
        if band_per_file and has_visual and "data" in roles:
            role_rank = 2
        return role_rank, IMAGE_MEDIA_TYPES.index(media), -_band_count(asset)

    if not candidates:
        return None
    key, asset, _media = min(candidates, key=rank)  # min() keeps document order among equals
    return key, asset


def _masks_of(item: pystac.Item) -> list[tuple[str, pystac.Asset]]:
    return [
        (key, asset)
        for key, asset in item.assets.items()
        if _is_mask(key, asset) and _media_type(asset) is not None and not _roles(asset) & SKIP_ROLES
    ]


# Metadata.


def _band_names(asset: pystac.Asset) -> tuple[str, ...]:
    """Band names from ``eo:bands`` (common name, else name) or STAC 1.1 ``bands``; () if any is unnamed."""
    names: list[str | None]
    if "eo:bands" in asset.extra_fields:
        bands = EOExtension.ext(asset, add_if_missing=True).bands or []
        names = [band.common_name or band.name for band in bands]
    else:
        raw = asset.extra_fields.get("bands")
        entries = raw if isinstance(raw, list) else []
        names = [str(b.get("eo:common_name") or b.get("name") or "") or None for b in entries if isinstance(b, dict)]
    return tuple(n for n in names if n) if names and all(names) else ()


def _gsd(item: pystac.Item, asset: pystac.Asset) -> float | None:
    """Asset ``gsd``, item ``gsd``, else the raster extension's spatial resolution (metres)."""
    for value in (asset.common_metadata.gsd, item.common_metadata.gsd):
        if isinstance(value, int | float) and value > 0:
            return float(value)
    if "raster:bands" in asset.extra_fields:
        for band in RasterExtension.ext(asset, add_if_missing=True).bands or []:
            if isinstance(band.spatial_resolution, int | float) and band.spatial_resolution > 0:
                return float(band.spatial_resolution)
    return None


def _as_utc(value: datetime | None) -> datetime | None:
    """VALUE in UTC; a naive value is taken to be UTC already (as pystac does when it writes)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _acquired(item: pystac.Item) -> datetime | None:
    return _as_utc(item.datetime or item.common_metadata.start_datetime)


def _providers(item: pystac.Item, collection: pystac.Collection | None) -> list[pystac.Provider]:
    return list(item.common_metadata.providers or (collection.providers if collection else None) or [])


def _provider_name(providers: Sequence[pystac.Provider]) -> str | None:
    for role in PROVIDER_ROLES:
        for provider in providers:
            if role in (provider.roles or ()):
                return provider.name
    return providers[0].name if providers else None


def _sensor(item: pystac.Item) -> str | None:
    meta = item.common_metadata
    name = meta.platform or meta.constellation
    instruments = ", ".join(meta.instruments or ())
    if name and instruments and instruments.lower() != name.lower():
        return f"{name} ({instruments})"
    return name or instruments or None


def _attribution(
    item: pystac.Item, collection: pystac.Collection | None, providers: Sequence[pystac.Provider]
) -> str | None:
    """``sci:citation`` (item, then collection), an ``attribution`` property, else provider names."""
    citations = []
    if "sci:citation" in item.properties:
        citations.append(ScientificExtension.ext(item, add_if_missing=True).citation)
    if collection is not None and "sci:citation" in collection.extra_fields:
        citations.append(ScientificExtension.ext(collection, add_if_missing=True).citation)
    for citation in citations:
        if citation:
            return citation
    attribution = item.properties.get("attribution")
    if isinstance(attribution, str) and attribution:
        return attribution
    names = [p.name for p in providers if p.name]
    return ", ".join(dict.fromkeys(names)) or None


def _source(found: _Found, asset: pystac.Asset, path: Path) -> SceneSource:
    item, collection = found.item, found.collection
    providers = _providers(item, collection)
    return SceneSource(
        path=path,
        origin=found.origin,
        acquired=_acquired(item),
        provider=_provider_name(providers),
        sensor=_sensor(item),
        licence=item.common_metadata.license or (collection.license if collection else None),
        attribution=_attribution(item, collection, providers),
        gsd=_gsd(item, asset),
        band_names=_band_names(asset),
        stac_id=item.id,
    )


# Planning and fetching.


def _asset(origin: str, key: str, asset: pystac.Asset) -> _Asset:
    href = asset.href
    if not isinstance(href, str) or not href:
        raise StacError(origin, f"asset {key!r} has no href")
    roles = tuple(str(role) for role in asset.roles or ())
    return _Asset(key, href, roles, asset.media_type, _media_type(asset))


def _plan(
    found: Iterable[_Found],
    resolve: Callable[[str, str], Path | str],
    on_item_error: Callable[[ItemError], None] | None = None,
) -> list[_Planned]:
    """Choose and check every item's imagery and masks, and read its metadata; nothing is downloaded.

    An item that fails refuses the batch, or, with ON_ITEM_ERROR, is passed to it and left out.
    """
    planned: list[_Planned] = []
    for entry in found:
        try:
            one = _plan_item(entry, resolve)
        except SitewatchError as exc:
            if on_item_error is None:
                raise
            on_item_error(ItemError(entry.origin, _acquired(entry.item), exc))
            continue
        if one is not None:
            planned.append(one)
    return planned


def _plan_item(entry: _Found, resolve: Callable[[str, str], Path | str]) -> _Planned | None:
    """One item's checked imagery, masks and metadata; None (with a warning) if it has no imagery."""
    try:
        picked = _pick_imagery(entry.item)
        if picked is None:
            warnings.warn(
                f"{entry.origin}: no imagery asset (GeoTIFF, JP2, PNG or JPEG with role data or visual); skipped",
                SkippedItemWarning,
                stacklevel=4,
            )
            return None
        imagery = _asset(entry.origin, *picked)
        masks = [_asset(entry.origin, key, asset) for key, asset in _masks_of(entry.item)]
        source = _source(entry, picked[1], Path())
    except SitewatchError:
        raise
    except _PYSTAC_ERRORS as exc:  # a malformed field: a number where a string should be, ...
        raise StacError(entry.origin, f"malformed item {entry.item.id!r} ({_short(exc)})") from exc
    imagery = replace(imagery, target=resolve(imagery.href, entry.base))
    if isinstance(imagery.target, Path) and not imagery.target.is_file():
        raise StacError(imagery.target, f"asset {imagery.key!r} of item {entry.item.id!r} is not an existing file")
    masks = [replace(mask, target=resolve(mask.href, entry.base)) for mask in masks]
    return _Planned(entry.item.id, source, imagery, tuple(masks))


def _fetch_all(
    planned: Sequence[_Planned],
    download_dir: Path,
    policy: HostPolicy,
    limits: Limits,
    download_masks: bool,
    on_item_error: Callable[[ItemError], None] | None = None,
) -> list[StacScene]:
    """Download what is remote (each URL once); on any failure remove what this call downloaded, or,
    with ON_ITEM_ERROR, only what the failing item's own downloads added, and go on without it."""
    downloaded: dict[str, Path] = {}

    def local(asset: _Asset, item_id: str) -> Path:
        if isinstance(asset.target, Path):
            return asset.target
        if asset.target not in downloaded:
            name = f"{item_id}_{asset.key}{MEDIA_SUFFIXES.get(asset.raster_type or '', '')}"
            downloaded[asset.target] = download(asset.target, download_dir, policy, limits, name=name)
        return downloaded[asset.target]

    def fetch(plan: _Planned) -> StacScene:
        masks = []
        for mask in plan.masks:
            mask_path: Path | None
            if isinstance(mask.target, Path):
                mask_path = mask.target if mask.target.is_file() else None
            else:
                mask_path = local(mask, plan.item_id) if download_masks else None
            masks.append(MaskAsset(mask.key, str(mask.target), mask.roles, mask.media_type, mask_path))
        return StacScene(replace(plan.source, path=local(plan.imagery, plan.item_id)), tuple(masks))

    scenes: list[StacScene] = []
    try:
        for plan in planned:
            before = set(downloaded)
            try:
                scenes.append(fetch(plan))
            except SitewatchError as exc:
                if on_item_error is None:
                    raise
                for url in downloaded.keys() - before:
                    downloaded.pop(url).unlink(missing_ok=True)
                on_item_error(ItemError(plan.source.origin, plan.source.acquired, exc))
    except BaseException:
        for path in downloaded.values():
            path.unlink(missing_ok=True)
        raise
    return scenes


# Public entry points.


def scenes_from_stac_file(
    path: Path,
    download_dir: Path,
    policy: HostPolicy | None = None,
    limits: Limits = DEFAULT_LIMITS,
    *,
    max_items: int = MAX_ITEMS,
    download_masks: bool = False,
) -> list[StacScene]:
    """Scenes (with their cloud masks) from a local STAC Item, ItemCollection, Collection or Catalog.

    The catalog folder is PATH's folder: no local href may leave it. Remote hrefs are followed
    only to hosts POLICY allows (``None``: none at all); remote imagery lands in DOWNLOAD_DIR.

    Raises:
        StacError: If a document is missing, too large, malformed JSON or not STAC, a walk goes
            beyond its bounds, an asset file is missing, or a download fails.
        UnsafeHref: If any href escapes the catalog folder or breaks POLICY.
    """
    path = Path(path)
    root = path.resolve().parent
    policy = policy or HostPolicy()
    with closing(GuardedStacIO(policy, limits, root)) as stac_io:
        walker = _Walker(stac_io, root, max_items)
        found = walker.walk(str(path.resolve()))
        planned = _plan(found, walker.resolve)
    return _fetch_all(planned, download_dir, policy, limits, download_masks)


def sources_from_stac_file(
    path: Path, download_dir: Path, policy: HostPolicy | None = None, limits: Limits = DEFAULT_LIMITS
) -> list[SceneSource]:
    """Scene sources from a local STAC file, carrying the sensor masks sitewatch can decode."""
    return _with_masks(scenes_from_stac_file(path, download_dir, policy, limits, download_masks=True))


def scenes_from_stac_url(
    url: str,
    download_dir: Path,
    policy: HostPolicy | None = None,
    limits: Limits = DEFAULT_LIMITS,
    *,
    max_items: int = MAX_ITEMS,
    download_masks: bool = False,
) -> list[StacScene]:
    """Scenes from a remote static STAC document the user named (Item, ItemCollection, Catalog...).

    POLICY defaults to the URL's own host (which, named by the user, may be private). Nothing it
    links to may be a local file.

    Raises:
        StacError: As :func:`scenes_from_stac_file`, and if the server fails.
        UnsafeHref: If URL or any href breaks POLICY or names a local file.
    """
    policy = policy or HostPolicy.for_url(url)
    with closing(GuardedStacIO(policy, limits, None)) as stac_io:
        walker = _Walker(stac_io, None, max_items)
        found = walker.walk(url)
        planned = _plan(found, walker.resolve)
    return _fetch_all(planned, download_dir, policy, limits, download_masks)


def sources_from_stac_url(
    url: str, download_dir: Path, policy: HostPolicy | None = None, limits: Limits = DEFAULT_LIMITS
) -> list[SceneSource]:
    """Scene sources from a remote static STAC document, carrying the sensor masks sitewatch can decode."""
    return _with_masks(scenes_from_stac_url(url, download_dir, policy, limits, download_masks=True))


def _utc(value: datetime | date, end_of_day: bool) -> datetime:
    if not isinstance(value, datetime):
        value = datetime.combine(value, time.max if end_of_day else time.min)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _stamp(value: datetime | None) -> str:
    return ".." if value is None else value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _check_bbox(bbox: tuple[float, float, float, float]) -> None:
    west, south, east, north = bbox
    if not (-180 <= west <= 180 and -180 <= east <= 180 and -90 <= south <= north <= 90):
        raise GeometryError(str(bbox), "bbox must be west, south, east, north in WGS84 degrees (south <= north)")


def _overlaps(item: pystac.Item, start: datetime | None, end: datetime | None) -> bool:
    """Whether the item's time (instant or start/end interval) meets START..END."""
    first = _acquired(item)
    last = _as_utc(item.datetime or item.common_metadata.end_datetime)
    return (first is None or end is None or first <= end) and (last is None or start is None or last >= start)


def scenes_from_stac_api(
    url: str,
    collections: list[str],
    bbox: tuple[float, float, float, float],
    date_from: datetime | date | None,
    date_to: datetime | date | None,
    download_dir: Path,
    policy: HostPolicy | None = None,
    limits: Limits = DEFAULT_LIMITS,
    *,
    max_items: int = 500,
    download_masks: bool = False,
    on_item_error: Callable[[ItemError], None] | None = None,
) -> list[StacScene]:
    """Scenes from a STAC API item search: COLLECTIONS (all if empty), BBOX, dates inclusive.

    Dates are UTC (naive values are taken as UTC; a ``date`` covers its whole day). POLICY
    defaults to the API's own host, named by the user. At most MAX_ITEMS items are taken; items the
    server returns outside the date range are dropped. With ON_ITEM_ERROR, an item that fails on
    its own (an href refused or missing, a download failed) is passed to it and left out rather
    than failing the search (see the module docstring).

    Raises:
        GeometryError: If BBOX is not a WGS84 box.
        StacError: If the API fails, is not a STAC API with item search, or a download fails.
        UnsafeHref: If the API or any href breaks POLICY or names a local file.
    """
    _check_bbox(bbox)
    policy = policy or HostPolicy.for_url(url)
    start = None if date_from is None else _utc(date_from, end_of_day=False)
    end = None if date_to is None else _utc(date_to, end_of_day=True)
    stac_io = GuardedApiIO(policy, limits)
    with closing(stac_io.session):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NoConformsTo)  # refused below, in one line
                client = Client.open(url, stac_io=stac_io)
            if not client.conforms_to(ConformanceClasses.ITEM_SEARCH):
                raise StacError(url, "is not a STAC API with item search (no item-search conformance class)")
            search = client.search(
                collections=collections or None,
                bbox=list(bbox),
                # No dates: no datetime at all; stac-fastapi refuses the open interval "../..".
                datetime=None if start is None and end is None else f"{_stamp(start)}/{_stamp(end)}",
                max_items=max_items,
                limit=min(max_items, 100),
            )
            items = []
            for item in search.items():
                if _overlaps(item, start, end):
                    items.append(item)
                else:
                    log.debug("%s: item %s is outside the date range; dropped", url, item.id)
            cache: dict[str, pystac.Collection | None] = {}
            found = [_found_in_search(item, url, client, cache) for item in items]
        except SitewatchError:
            raise
        except _PYSTAC_ERRORS as exc:
            raise StacError(url, f"STAC API request failed ({_short(exc)})") from exc
    planned = _plan(found, lambda href, base: resolve_href(href, base, policy), on_item_error)
    return _fetch_all(planned, download_dir, policy, limits, download_masks, on_item_error)


def _found_in_search(item: pystac.Item, url: str, client: Client, cache: dict[str, pystac.Collection | None]) -> _Found:
    """Where a search result's relative hrefs point from, and its collection (fetched once each).

    The collection is where licence and providers usually live; it is fetched only from APIs that
    serve ``/collections``, since others would make pystac-client walk the whole catalog.
    """
    self_href = item.get_self_href()
    base = self_href if self_href and _is_http(self_href) else url
    origin = base if base != url else f"{url}#{item.id}"
    collection_id = item.collection_id
    if collection_id and client.conforms_to(ConformanceClasses.COLLECTIONS):
        if collection_id not in cache:
            cache[collection_id] = client.get_collection(collection_id)
        return _Found(item, base, origin, cache[collection_id])
    return _Found(item, base, origin, None)


def sources_from_stac_api(
    url: str,
    collections: list[str],
    bbox: tuple[float, float, float, float],
    date_from: datetime | date | None,
    date_to: datetime | date | None,
    download_dir: Path,
    policy: HostPolicy | None = None,
    limits: Limits = DEFAULT_LIMITS,
    max_items: int = 500,
    on_item_error: Callable[[ItemError], None] | None = None,
) -> list[SceneSource]:
    """Scene sources from a STAC API search, carrying the sensor masks sitewatch can decode."""
    scenes = scenes_from_stac_api(
        url,
        collections,
        bbox,
        date_from,
        date_to,
        download_dir,
        policy,
        limits,
        max_items=max_items,
        download_masks=True,
        on_item_error=on_item_error,
    )
    return _with_masks(scenes)


def _with_masks(scenes: Sequence[StacScene]) -> list[SceneSource]:
    """The scenes' sources with the (kind, file) of each delivered mask whose kind sitewatch decodes."""
    sources = []
    for scene in scenes:
        masks = tuple(
            (kind, mask.path)
            for mask in scene.masks
            if mask.path is not None and (kind := sensor_mask_kind(mask.key)) is not None
        )
        sources.append(replace(scene.source, masks=masks))
    return sources
