"""Time series of a site: tell persistent change from transient change, and date each one.

A pair detector sees that two images differ; it cannot tell a new hall from a parked truck. Across
all the observations of a site it can: a building stays, a truck leaves. Each change region a pair
gave (its *before* and *after* images) is followed through every date: the date's pixels in the
region are compared with the before image and with the after image there, and the date gets a state:

- ``before``: it looks like the before image (and unlike the after image);
- ``after``: the reverse;
- ``other``: like neither (another truck in the same bay, a shadow half way across);
- ``unseen``: no data, cloud, or a date left out of the comparison.

The comparison is the mean distance between the region's pixels, each band of each date
standardised by its median and robust spread over the whole valid image (exposure and haze do not
vote) and lightly blurred (residual misregistration does not either). A date is ``before`` when it
is within half the change's own size of the before image and at least twice as far from the after
image; likewise ``after``.

Then the change is

- ``transient`` when a later date is back in the before state, or an earlier date was already in
  the after state (it comes and goes), or the next date seen is in neither state (it flickers), or
  the change is only one of light: the same surface darker and bluer (a shadow; with red, green
  and blue bands known);
- ``unconfirmed`` when no later date shows the region (the change is on the last date), or no
  earlier date does (the before state rests on the first image alone: a truck parked on that day
  and a demolished building look the same);
- ``persistent`` otherwise: both states were seen on more than one date, and it never reverts.

It is dated from the last date in the before state to the first date in the after state; dates in
between whose state could not be seen widen that interval, and are named so a report can say so.

The regions of one object that comes and goes (a truck that appears, then leaves) are merged into
one transient event: transient regions that overlap and whose states chain (the first reverts on
the date the second changes, or the second's after state was seen on the first's before date).

NumPy, OpenCV, rasterio and shapely are imported inside the functions, as elsewhere in the package.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from sitewatch.change.vectorize import ChangeKind

if TYPE_CHECKING:
    import numpy as np
    from affine import Affine
    from shapely.geometry.base import BaseGeometry

State = Literal["before", "after", "other", "unseen"]
Persistence = Literal["persistent", "transient", "unconfirmed"]
#: Why a change got its persistence: ``held`` (persistent); ``reverted``, ``preceded``,
#: ``flickers``, ``shadow`` (transient); ``last``, ``first`` (unconfirmed: no later, no earlier view).
Reason = Literal["held", "reverted", "preceded", "flickers", "shadow", "last", "first"]


@dataclass(frozen=True)
class HistorySettings:
    """Tuning of :func:`follow`. Distances are in robust standard deviations of a band."""

    blur_px: float = 1.0  # Gaussian sigma before comparing: residual misregistration must not vote
    margin_px: int = 3  # pixels read around a region, for the blur
    seen_fraction: float = 0.5  # share of a region's pixels a date must show for its state to count
    closeness: float = 0.5  # a state's distance is under this share of the change's own size ...
    ratio: float = 2.0  # ... and this many times under the distance to the other state
    overlap: float = 0.3  # regions of one object overlap by this share of the smaller one
    shadow_log_gain: float = 0.35  # a shadow changes the brightness by at least e^0.35 (x1.4) ...
    shadow_log_spread: float = 0.45  # ... nearly alike in every band (log ratios this close) ...
    shadow_log_blue: float = 0.1  # ... and its darker side is bluer (lit by the sky) by e^0.1


@dataclass(frozen=True)
class Stack:
    """A site's observations on one grid, in date order.

    Attributes:
        images: per date, float32 ``(bands, rows, cols)``, or ``None`` for a date left out.
        valid: per date, bool ``(rows, cols)``: the pixels fit to compare (no cloud, shadow or
            saturation), or ``None`` for a date left out.
        transform: the grid's pixel-corner transform; candidate geometries are in its CRS.
        rgb: indexes of the red, green and blue bands, where known (for the shadow test).
    """

    images: Sequence[np.ndarray | None]
    valid: Sequence[np.ndarray | None]
    transform: Affine
    rgb: tuple[int, int, int] | None = None

    def __post_init__(self) -> None:
        if len(self.images) != len(self.valid):
            raise ValueError(f"{len(self.images)} images but {len(self.valid)} masks")


@dataclass(frozen=True)
class Candidate:
    """A change region one pair of dates gave, to follow through the stack.

    Attributes:
        geometry: the region, in the stack transform's coordinates.
        before: index of the pair's before date in the stack (a date that is not left out).
        after: index of its after date, later than BEFORE (not left out either).
        kind: the pair's reading of the change (see :mod:`sitewatch.change.vectorize`).
    """

    geometry: BaseGeometry
    before: int
    after: int
    kind: ChangeKind


@dataclass(frozen=True)
class Trace:
    """A region followed through the stack: its state on each date, persistence and dating."""

    states: tuple[State, ...]
    persistence: Persistence
    reason: Reason
    last_before: int  # the last date in the before state, up to the change
    first_after: int  # the first date in the after state, from the change
    reverted: int | None = None  # the first later date back in the before state
    ended: int | None = None  # the first later date seen in another state than after (transient only)

    @property
    def unseen(self) -> tuple[int, ...]:
        """Dates inside the interval whose state could not be seen: they widen it."""
        return tuple(range(self.last_before + 1, self.first_after))


@dataclass(frozen=True)
class Event:
    """One change: a candidate, or the candidates of one object that came and went.

    Attributes:
        members: indexes of the candidates merged, in date order; the first names the kind and
            the interval.
        kind: the first member's kind.
        geometry: the union of the members' regions.
        trace: the first member's trace (merged members are all transient).
    """

    members: tuple[int, ...]
    kind: ChangeKind
    geometry: BaseGeometry
    trace: Trace

    @property
    def persistence(self) -> Persistence:
        """``persistent``, ``transient`` or ``unconfirmed``."""
        return self.trace.persistence


def follow(stack: Stack, candidates: Sequence[Candidate], settings: HistorySettings | None = None) -> list[Event]:
    """Follow each candidate through STACK, classify and date it, and merge an object's comings and goings.

    Returns:
        Events in date order of their first member.

    Raises:
        ValueError: If a candidate's dates are not two dates of the stack in order, or one was left out.
    """
    from shapely import union_all

    settings = settings or HistorySettings()
    for c in candidates:
        if not 0 <= c.before < c.after < len(stack.images):
            raise ValueError(f"candidate dates {c.before}, {c.after} are not two dates of the stack in order")
        if stack.images[c.before] is None or stack.images[c.after] is None:
            raise ValueError(f"candidate dates {c.before}, {c.after} include a date left out")
    reader = _Reader(stack, settings)
    traces = []
    for c in candidates:
        found = trace(reader.distances(c), c.before, c.after, settings)
        if found.persistence != "transient" and reader.is_shadow(c):
            ended = next(
                (t for t in range(c.after + 1, len(found.states)) if found.states[t] in ("before", "other")), None
            )
            found = replace(found, persistence="transient", reason="shadow", ended=ended)
        traces.append(found)
    events = []
    for group in _pairs(candidates, traces, settings):  # only transient candidates are ever grouped
        geometry = (
            union_all([candidates[i].geometry for i in group]) if len(group) > 1 else candidates[group[0]].geometry
        )
        events.append(Event(tuple(group), candidates[group[0]].kind, geometry, traces[group[0]]))
    return events


def states(distances: np.ndarray, settings: HistorySettings | None = None) -> tuple[State, ...]:
    """Per date, the state a region is in, from its DISTANCES.

    Args:
        distances: float ``(dates, 2)``: the region's distance from each date to the before and to
            the after image, NaN where the date does not show the region. The largest distance
            stands for the change's own size (the pair's distance to each other).
        settings: the thresholds; the defaults without.
    """
    import numpy as np

    settings = settings or HistorySettings()
    size = float(np.nanmax(distances)) if np.isfinite(distances).any() else 0.0
    out: list[State] = []
    for to_before, to_after in distances:
        if math.isnan(to_before) or math.isnan(to_after):
            out.append("unseen")
        elif to_before <= settings.closeness * size and settings.ratio * to_before <= to_after:
            out.append("before")
        elif to_after <= settings.closeness * size and settings.ratio * to_after <= to_before:
            out.append("after")
        else:
            out.append("other")
    return tuple(out)


def trace(distances: np.ndarray, before: int, after: int, settings: HistorySettings | None = None) -> Trace:
    """Classify and date one region from its per-date DISTANCES (see :func:`states`).

    BEFORE and AFTER index the pair that found it: they are in the before and after states by
    definition. Only the shadow test is left to :func:`follow`, which has the pixels.
    """
    found = list(states(distances, settings))
    found[before], found[after] = "before", "after"
    first_after = next(t for t in range(before + 1, after + 1) if found[t] == "after")
    last_before = max(t for t in range(before, first_after) if found[t] == "before")
    later = [t for t in range(first_after + 1, len(found)) if found[t] != "unseen"]
    earlier = [t for t in range(last_before) if found[t] != "unseen"]
    reverted = next((t for t in later if found[t] == "before"), None)
    persistence: Persistence
    reason: Reason
    if reverted is not None:
        persistence, reason = "transient", "reverted"
    elif any(found[t] == "after" for t in earlier):
        persistence, reason = "transient", "preceded"
    elif later and found[later[0]] == "other":
        persistence, reason = "transient", "flickers"
    elif not later:
        persistence, reason = "unconfirmed", "last"
    elif not earlier:
        persistence, reason = "unconfirmed", "first"
    else:
        persistence, reason = "persistent", "held"
    ended = next((t for t in later if found[t] != "after"), None) if persistence == "transient" else None
    return Trace(tuple(found), persistence, reason, last_before, first_after, reverted, ended)


class _Reader:
    """Reads candidate regions out of the stack, with each date's band statistics computed once."""

    def __init__(self, stack: Stack, settings: HistorySettings) -> None:
        self.stack = stack
        self.settings = settings
        self._stats: dict[int, np.ndarray] = {}
        first = next((v for v in stack.valid if v is not None), None)
        self.shape: tuple[int, int] = (0, 0) if first is None else (int(first.shape[0]), int(first.shape[1]))

    def stats(self, date: int) -> np.ndarray:
        """Per band of DATE: median and robust standard deviation over its valid pixels (sampled)."""
        import numpy as np

        if date not in self._stats:
            image, valid = self.stack.images[date], self.stack.valid[date]
            assert image is not None and valid is not None
            step = max(1, math.isqrt(valid.size // 250_000))  # a quarter of a million pixels is plenty
            sample = image[:, ::step, ::step][:, valid[::step, ::step]]
            if sample.shape[1] == 0:
                sample = np.zeros((image.shape[0], 1), np.float32)
            q25, q50, q75 = np.percentile(sample, [25, 50, 75], axis=1)
            spread = np.where(q75 > q25, (q75 - q25) / 1.349, 1.0)
            self._stats[date] = np.stack([q50, spread], axis=1).astype(np.float32)
        return self._stats[date]

    def window(self, geometry: BaseGeometry) -> tuple[slice, slice, np.ndarray]:
        """Rows and columns of the box around GEOMETRY (with the margin), and its pixels in that box."""
        import numpy as np
        from affine import Affine
        from rasterio.features import rasterize

        x0, y0, x1, y1 = geometry.bounds
        inverse = ~self.stack.transform
        corners = [inverse @ (x, y) for x in (x0, x1) for y in (y0, y1)]
        m = self.settings.margin_px
        c0 = max(0, math.floor(min(c for c, _ in corners)) - m)
        c1 = min(self.shape[1], math.ceil(max(c for c, _ in corners)) + m)
        r0 = max(0, math.floor(min(r for _, r in corners)) - m)
        r1 = min(self.shape[0], math.ceil(max(r for _, r in corners)) + m)
        if r1 <= r0 or c1 <= c0:
            return slice(0, 0), slice(0, 0), np.zeros((0, 0), bool)
        transform = self.stack.transform @ Affine.translation(c0, r0)
        burned = rasterize([(geometry, 1)], out_shape=(r1 - r0, c1 - c0), transform=transform, dtype="uint8")
        return slice(r0, r1), slice(c0, c1), np.asarray(burned).astype(bool)

    def patches(self, rows: slice, cols: slice) -> tuple[np.ndarray, np.ndarray]:
        """Every date's standardised, blurred pixels in the box ``(dates, bands, h, w)``, and where each
        date is valid ``(dates, h, w)``; a date left out is all invalid."""
        import cv2
        import numpy as np

        dates = len(self.stack.images)
        shape = (rows.stop - rows.start, cols.stop - cols.start)
        bands = next(image.shape[0] for image in self.stack.images if image is not None)
        pixels = np.zeros((dates, bands, *shape), np.float32)
        valid = np.zeros((dates, *shape), bool)
        sigma = self.settings.blur_px
        for t, (image, mask) in enumerate(zip(self.stack.images, self.stack.valid, strict=True)):
            if image is None or mask is None:
                continue
            stats = self.stats(t)
            patch = (image[:, rows, cols] - stats[:, 0, None, None]) / stats[:, 1, None, None]
            for b in range(bands):
                band = np.ascontiguousarray(patch[b], np.float32)
                pixels[t, b] = cv2.GaussianBlur(band, (0, 0), sigma, borderType=cv2.BORDER_REFLECT) if sigma else band
            valid[t] = mask[rows, cols]
            if sigma:  # a blurred pixel beside a masked one has masked data in it
                valid[t] = cv2.erode(valid[t].astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        return pixels, valid

    def distances(self, candidate: Candidate) -> np.ndarray:
        """Per date: the region's mean distance (RMS over bands) to the before and to the after image;
        NaN where the date shows under ``seen_fraction`` of the region."""
        import numpy as np

        rows, cols, region = self.window(candidate.geometry)
        out = np.full((len(self.stack.images), 2), np.nan)
        if not region.any():
            return out
        pixels, valid = self.patches(rows, cols)
        needed = self.settings.seen_fraction * int(region.sum())
        for column, ref in enumerate((candidate.before, candidate.after)):
            both = valid & valid[ref] & region
            distance = np.sqrt(np.mean(np.square(pixels - pixels[ref]), axis=1))
            counts = both.sum(axis=(1, 2))
            sums = np.where(both, distance, 0.0).sum(axis=(1, 2))
            seen = (counts >= needed) & (counts > 0)
            out[seen, column] = sums[seen] / counts[seen]
        return out

    def is_shadow(self, candidate: Candidate) -> bool:
        """Whether the change is one of light only: the same surface, darker and bluer on one date.

        Compares the region's mean red, green and blue on the two dates, each over that date's own
        median (so exposure does not count): a shadow scales all three nearly alike, by a clear
        factor, and its dark side is bluer, being lit by the sky alone.
        """
        import numpy as np

        rgb, s = self.stack.rgb, self.settings
        if rgb is None:
            return False
        rows, cols, region = self.window(candidate.geometry)
        means = []
        for t in (candidate.before, candidate.after):
            image, valid = self.stack.images[t], self.stack.valid[t]
            assert image is not None and valid is not None
            inside = region & valid[rows, cols]
            if not inside.any():
                return False
            colour = image[list(rgb), rows, cols][:, inside].mean(axis=1)
            means.append(colour / np.maximum(self.stats(t)[list(rgb), 0], 1e-6))
        ratios = np.log(np.maximum(means[1], 1e-6) / np.maximum(means[0], 1e-6))
        gain, spread = float(ratios.mean()), float(ratios.max() - ratios.min())
        bluer_when_dark = float(ratios[2] - ratios[0]) * (-1.0 if gain > 0 else 1.0)
        return abs(gain) >= s.shadow_log_gain and spread <= s.shadow_log_spread and bluer_when_dark >= s.shadow_log_blue


def _pairs(candidates: Sequence[Candidate], traces: Sequence[Trace], settings: HistorySettings) -> list[list[int]]:
    """Candidates in groups: the two changes of one object that came and went, or one change alone.

    Two transient candidates are one object when they overlap and the later one undoes the earlier:
    the earlier reverts on the date the later one reaches its after state, or the later one's after
    state was seen on the earlier one's before date. Each candidate joins one partner at most, the
    earliest, so a busy bay gives one event per truck, not one event for the year.
    """
    from shapely import STRtree

    transient = [i for i, t in enumerate(traces) if t.persistence == "transient"]
    tree = STRtree([candidates[i].geometry for i in transient])
    links: list[tuple[int, float, int, int]] = []
    for early in transient:
        for late in (transient[int(n)] for n in tree.query(candidates[early].geometry)):
            if candidates[late].before < candidates[early].after:
                continue  # the same pair, an earlier one, or an overlapping one
            undoes = traces[early].reverted == traces[late].first_after or (
                traces[late].states[traces[early].last_before] == "after"
            )
            share = _overlap(candidates[early].geometry, candidates[late].geometry)
            if undoes and share >= settings.overlap:
                links.append((candidates[early].after, -share, early, late))
    partner: dict[int, int] = {}
    for _, _, early, late in sorted(links):
        if early not in partner and late not in partner:
            partner[early], partner[late] = late, early
    groups = [[i, partner[i]] if i in partner else [i] for i in range(len(candidates)) if partner.get(i, i) >= i]
    return sorted(groups, key=lambda g: (candidates[g[0]].before, candidates[g[0]].after, g[0]))


def _overlap(first: BaseGeometry, second: BaseGeometry) -> float:
    """Shared area over the smaller area."""
    smaller = min(first.area, second.area)
    return float(first.intersection(second).area / smaller) if smaller > 0 else 0.0
