"""A dated series against its own past: rolling robust baseline, anomaly scores and change-points.

Pure numpy and scipy on ``(dates, values)``; nothing here reads a file. Every column of an activity
series goes through the same analysis (the activity index, and the counts per class), so the
units are the caller's; only :class:`BaselineSettings` floors are in those units.

- **Baseline** of a date: the median and MAD of the ``window`` dates before it (never the date
  itself, so an anomaly cannot hide in its own baseline). Fewer than ``min_history`` earlier dates
  give no baseline.
- **Robust z** (Iglewicz and Hoaglin's modified z-score): ``(x - median) / (1.4826 · MAD)``, where
  1.4826 makes the MAD a standard deviation for normal noise. A date is an anomaly when
  ``|z| ≥ threshold`` (3.5, their recommendation): ``high`` above its baseline, ``low`` below it.
  The MAD is floored three ways. A MAD of five values is itself noisy: alone, it flags about one
  date in eight of pure Gaussian noise at 3.5; so it is never below the noise of *all* earlier
  dates (:func:`difference_mad`), which brings that under one in two hundred in simulation. And
  never below ``mad_floor`` or ``relative_floor`` of the median, so a run of near-identical values
  does not make a small wobble an anomaly.
- **Change-points**: binary segmentation of the series into levels, with a BIC-style penalty.
  The series is first median-filtered over three dates (each end over its three nearest): a
  single-date spike is an anomaly, not a new level, and a median filter removes spikes while
  keeping steps. A split is kept when it lowers the squared residuals of the filtered series, in
  units of the noise variance, by more than ``penalty · log(n)``, with at least ``min_segment``
  dates on each side. BIC would charge 2 · log(n) for a change's location and level; filtering
  makes neighbouring values alike, and at that price about one flat noisy series in ten got a
  change-point in simulation, so the default charges twice that (2 to 4 %, while a step of four
  noise deviations half way along 12 dates is still found 95 % of the time). The noise is
  estimated from the raw series' successive differences (:func:`difference_mad`), floored like
  the MAD. A new level on the last date alone is not a change-point: a later date must confirm it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

Direction = Literal["rose", "fell"]
Anomaly = Literal["high", "low"]
Floats = NDArray[np.float64]

#: Scales a MAD to a standard deviation for normally distributed noise.
MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class BaselineSettings:
    """How a series is judged against its past (see the module docstring)."""

    window: int = 5  # earlier dates in a date's baseline
    min_history: int = 3  # fewer earlier dates than this: no baseline, no z
    threshold: float = 3.5  # |robust z| at or above this is an anomaly
    mad_floor: float = 0.005  # the MAD is never below this (series units; half a percent suits shares) ...
    relative_floor: float = 0.1  # ... nor below this share of the baseline median
    min_segment: int = 2  # dates on each side of a change-point, at least
    penalty: float = 4.0  # a change-point must explain penalty · log(n) noise variances

    def __post_init__(self) -> None:
        if self.window < 1 or self.min_history < 1 or self.min_history > self.window:
            raise ValueError(f"need 1 <= min_history ({self.min_history}) <= window ({self.window})")
        if self.min_segment < 1 or min(self.threshold, self.penalty, self.mad_floor) <= 0:
            raise ValueError("min_segment, threshold, penalty and mad_floor must be positive")

    @property
    def min_dates(self) -> int:
        """Dates needed before anything can be said: one baseline, or one change-point."""
        return max(self.min_history + 1, 2 * self.min_segment)


@dataclass(frozen=True)
class Point:
    """One date of a series, judged against the dates before it (None: no baseline yet)."""

    date: datetime
    value: float
    median: float | None
    mad: float | None  # floored as the z-score uses it: z = (value - median) / (1.4826 · mad)
    z: float | None
    anomaly: Anomaly | None


@dataclass(frozen=True)
class ChangePoint:
    """The series moved to a new level between LAST_BEFORE and FIRST_AFTER and stayed there."""

    last_before: datetime
    first_after: datetime
    direction: Direction
    before: float  # median level of the segment before
    after: float  # median level of the segment after

    def words(self, subject: str = "activity") -> str:
        """The change-point as an analyst would say it ("activity died down after 2019-03-02")."""
        verb = "rose" if self.direction == "rose" else "died down"
        return (
            f"{subject} {verb} after {self.last_before:%Y-%m-%d} (first seen {self.first_after:%Y-%m-%d}; "
            f"level {self.before:.3g} → {self.after:.3g})"
        )


@dataclass(frozen=True)
class SeriesAnalysis:
    """A series with its baseline and anomalies per date, its change-points, and what it lacked."""

    points: tuple[Point, ...]
    change_points: tuple[ChangePoint, ...]
    settings: BaselineSettings
    note: str | None = None  # why nothing or little could be said ("not enough dates: ...")

    @property
    def anomalies(self) -> tuple[Point, ...]:
        """The dates flagged as anomalies."""
        return tuple(p for p in self.points if p.anomaly is not None)


def analyse(
    dates: Sequence[datetime], values: Sequence[float], settings: BaselineSettings | None = None
) -> SeriesAnalysis:
    """Baseline, robust z, anomaly flags and change-points of a dated series (sorted by date here).

    Too short a series is an answer, not an error: every point without a baseline and a note that
    says how many dates it takes.

    Raises:
        ValueError: If DATES and VALUES differ in length, or a value is not finite.
    """
    settings = settings or BaselineSettings()
    if len(dates) != len(values):
        raise ValueError(f"{len(dates)} dates but {len(values)} values")
    order = sorted(range(len(dates)), key=lambda i: dates[i])
    when = [dates[i] for i in order]
    x = np.asarray([values[i] for i in order], np.float64)
    if not np.isfinite(x).all():
        raise ValueError("a series value is not finite")
    median, mad, pooled = rolling_baseline(x, settings.window, settings.min_history)
    mad = floored_mad(median, mad, pooled, settings)
    with np.errstate(invalid="ignore"):  # NaN where there is no baseline
        z = (x - median) / (MAD_TO_SIGMA * mad)
    points = tuple(
        Point(
            date=when[i],
            value=float(x[i]),
            median=_or_none(median[i]),
            mad=_or_none(mad[i]),
            z=_or_none(z[i]),
            anomaly=None if not abs(z[i]) >= settings.threshold else ("high" if z[i] > 0 else "low"),
        )
        for i in range(len(x))
    )
    note = None
    if len(x) < settings.min_dates:
        note = (
            f"not enough dates: {len(x)} usable, at least {settings.min_dates} needed "
            f"({settings.min_history} earlier dates for a baseline, {settings.min_segment} on each side of a change)"
        )
    splits = change_points(x, settings)
    found = tuple(
        ChangePoint(
            last_before=when[k - 1],
            first_after=when[k],
            direction="rose" if after > before else "fell",
            before=before,
            after=after,
        )
        for k, before, after in splits
    )
    return SeriesAnalysis(points, found, settings, note)


def rolling_baseline(values: Floats, window: int, min_history: int) -> tuple[Floats, Floats, Floats]:
    """Median and MAD of the WINDOW values before each one, and the noise of all values before it
    as a MAD (:func:`difference_mad`); NaN with fewer than MIN_HISTORY earlier values."""
    n = len(values)
    median, mad, pooled = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    for i in range(min_history, n):
        past = values[max(0, i - window) : i]
        median[i] = np.median(past)
        mad[i] = np.median(np.abs(past - median[i]))
        pooled[i] = difference_mad(values[:i])
    return median, mad, pooled


def difference_mad(values: Floats) -> float:
    """The noise of VALUES as a MAD, from successive differences (a step or a spike moves only one
    or two of them): median |Δ| / √2, the MAD of the values if they were independent noise."""
    return float(np.median(np.abs(np.diff(values)))) / math.sqrt(2) if len(values) > 1 else 0.0


def floored_mad(median: Floats, mad: Floats, pooled: Floats, settings: BaselineSettings) -> Floats:
    """The MAD a z-score divides by: the window's, or the earlier dates' noise (POOLED), or the
    settings' floors, whichever is largest (module docstring); NaN where there is no baseline."""
    floor = np.maximum(np.maximum(settings.mad_floor, settings.relative_floor * np.abs(median)), pooled)
    result: Floats = np.where(np.isnan(median), np.nan, np.maximum(mad, floor))
    return result


def change_points(values: Floats, settings: BaselineSettings) -> list[tuple[int, float, float]]:
    """Binary segmentation (module docstring): ``(k, level before, level after)`` per change-point,
    where K is the index of the first value at the new level; in date order."""
    n = len(values)
    if n < 2 * settings.min_segment:
        return []
    smooth = values.copy()
    if n >= 3:
        smooth = ndimage.median_filter(values, size=3, mode="nearest")
        # Each end takes the median of its three nearest values: a spike next to the end must not
        # spread onto it, and a new level at the end needs two dates to show.
        smooth[0], smooth[-1] = np.median(values[:3]), np.median(values[-3:])
    floor = max(settings.mad_floor, settings.relative_floor * abs(float(np.median(values))))
    sigma = MAD_TO_SIGMA * max(difference_mad(values), floor)
    needed = settings.penalty * math.log(n) * sigma**2
    splits: list[int] = []
    pending = [(0, n)]
    while pending:
        start, stop = pending.pop()
        best = _best_split(smooth[start:stop], settings.min_segment)
        if best is not None and best[1] > needed:
            k = start + best[0]
            splits.append(k)
            pending += [(start, k), (k, stop)]
    bounds = [0, *sorted(splits), n]
    levels = [float(np.median(values[a:b])) for a, b in itertools.pairwise(bounds)]
    return [(k, levels[i], levels[i + 1]) for i, k in enumerate(bounds[1:-1]) if levels[i + 1] != levels[i]]


def _best_split(segment: Floats, min_segment: int) -> tuple[int, float] | None:
    """Where splitting SEGMENT in two lowers its squared residuals most, and by how much."""
    n = len(segment)
    if n < 2 * min_segment:
        return None
    total = np.cumsum(segment)
    k = np.arange(min_segment, n - min_segment + 1)
    left_mean = total[k - 1] / k
    right_mean = (total[-1] - total[k - 1]) / (n - k)
    # The drop in the sum of squares from one mean to two: k(n-k)/n times the squared difference.
    gain = k * (n - k) / n * (left_mean - right_mean) ** 2
    best = int(np.argmax(gain))
    return int(k[best]), float(gain[best])


def _or_none(value: float) -> float | None:
    return None if math.isnan(value) else float(value)
