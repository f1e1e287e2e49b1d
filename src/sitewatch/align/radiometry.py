"""Radiometric normalisation: put one observation's bands on the reference observation's radiometry.

Two dates of a site differ in sun, haze, exposure and sensor, so the same roof has different values
on each. Change detection needs them on one scale, and only from pixels that did not change: a
regression over every pixel would be pulled by the very changes we are looking for. The steps:

1. A bounded random sample of the pixels valid in both images (and not at an integer dtype's
   maximum, where values are clipped): the fit costs the same for a 512² chip and a 10k² scene.
2. Pseudo-invariant pixels. With two or more bands, IR-MAD (Nielsen 2007; Canty & Nielsen 2008):
   canonical correlation analysis of the two dates, iteratively reweighted by each pixel's
   probability of no change, read from the chi-square distribution of its standardised MAD
   variates. Its canonical variates are invariant to any linear map of either date's bands, so a
   change of gain, offset or band mixing does not read as change. With one band, CCA is plain
   correlation and cannot separate change from noise, so a Theil–Sen line (robust to nearly a
   third of the pixels changing) and its inliers play that part.
3. Per band, an orthogonal regression (reference on moving) over the invariant pixels: both dates
   are noisy, so ordinary least squares would bias the gain towards zero.
4. A band whose linear fit is poor (too few invariant pixels, a low R², invariant pixels over too
   narrow a part of the band's range to extrapolate from, or a relation that bends away from the
   line) is histogram-matched instead, with :func:`skimage.exposure.match_histograms`
   on the sampled valid pixels, kept as a lookup table so that tiles can be mapped one at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import scipy.linalg
from numpy.typing import NDArray
from scipy import stats
from skimage.exposure import match_histograms

Method = Literal["auto", "irmad", "robust", "histogram"]
Used = Literal["irmad", "robust", "histogram", "identity"]
BandMethod = Literal["linear", "histogram", "identity"]
Floats = NDArray[np.float64]

#: Pixels sampled for the fit: enough for a gain within a fraction of a percent, in bounded time.
SAMPLE_PIXELS = 60_000
#: Fewer valid pixels than this and nothing is fitted (the identity is returned, with a note).
MIN_SAMPLE = 50
#: IR-MAD iterations at most, and the change of the canonical correlations that counts as converged.
IRMAD_MAX_ITERATIONS = 30
IRMAD_TOLERANCE = 1e-4
#: A pixel is invariant when its chi-square probability of no change is above this: only the most
#: typical of the unchanged pixels. The reweighting narrows the no-change spread, so this keeps
#: fewer than the nominal quarter of them (2 to 8 % of the sample on the demo and synthetic
#: pairs), which is plenty for a line per band; changed pixels almost never pass.
NO_CHANGE_PROBABILITY = 0.75
#: Theil–Sen slopes grow with the square of the pixels used, so it sees a sub-sample.
THEIL_SEN_PIXELS = 1_500
#: Residuals within this many robust standard deviations of a Theil–Sen line make a pixel invariant.
INLIER_SIGMAS = 2.5
#: Below this many invariant pixels, or this share of the sample, the linear fit is not trusted.
MIN_INVARIANT_PIXELS = 100
MIN_INVARIANT_FRACTION = 0.01
#: A linear fit explaining less than this share of the reference's variance is not trusted.
MIN_R2 = 0.7
#: Invariant pixels spanning less than this share of the band's 2–98 % range would be extrapolated
#: from: IR-MAD keeps the straight part of a curved relation, so a narrow span hides a bend.
MIN_INVARIANT_SPAN = 0.5
#: Invariant pixels binned by value whose median residual strays further from the line than this
#: share of the reference's range show a relation that bends: the histogram does better.
MAX_BEND = 0.03
BEND_BINS = 10
#: Nodes of a histogram lookup table for data with more distinct values than this.
LUT_NODES = 1_024


@dataclass(frozen=True)
class BandFit:
    """How one band of MOVING was mapped onto REFERENCE, and how well.

    ``r2`` and ``rmse`` (in reference units) are measured over the invariant pixels when there are
    enough of them, else over all sampled valid pixels; NaN when nothing could be fitted.
    """

    method: BandMethod
    gain: float | None  # reference ≈ gain · moving + offset; None for histogram matching
    offset: float | None
    r2: float
    rmse: float


@dataclass(frozen=True, eq=False)
class Lookup:
    """A histogram-matching table: moving values ``x`` (increasing) to reference values ``y``."""

    x: Floats
    y: Floats


@dataclass(frozen=True, eq=False)
class Normalisation:
    """Band-by-band map of MOVING's radiometry onto REFERENCE's (see the module docstring).

    ``method`` says how the invariant pixels were found (``irmad`` for two or more bands,
    ``robust`` for one), ``histogram`` when every band was histogram-matched, and ``identity``
    when there was too little valid data to fit anything. Each band's own method is in ``bands``.
    """

    method: Used
    bands: tuple[BandFit, ...]
    invariant_pixels: int
    invariant_fraction: float  # of the sampled valid pixels
    sampled_pixels: int
    note: str | None = None  # why a band or the whole fit fell back, for the record
    lookups: tuple[Lookup | None, ...] = field(default=(), repr=False)
    #: Flat ``rows * cols`` indexes of the sampled pixels taken as invariant, to show or check them.
    invariant_index: NDArray[np.intp] = field(default_factory=lambda: np.zeros(0, np.intp), repr=False)

    @property
    def gains(self) -> tuple[float | None, ...]:
        """Per-band gains (None where the band was histogram-matched)."""
        return tuple(b.gain for b in self.bands)

    @property
    def offsets(self) -> tuple[float | None, ...]:
        """Per-band offsets (None where the band was histogram-matched)."""
        return tuple(b.offset for b in self.bands)

    def apply(self, moving: NDArray[np.generic]) -> NDArray[np.float32]:
        """MOVING ``(bands, ...)`` on the reference's radiometry, as float32 (NaN stays NaN).

        Works on any tile or the whole image: the map depends on nothing but each pixel's value.
        A single-band fit also takes a 2-D array.

        Raises:
            ValueError: If MOVING does not have the fitted number of bands.
        """
        data = np.asarray(moving)
        single = data.ndim == 2 and len(self.bands) == 1
        if single:
            data = data[np.newaxis]
        if data.shape[0] != len(self.bands):
            raise ValueError(f"moving has {data.shape[0]} bands; the normalisation was fitted on {len(self.bands)}")
        out = np.empty(data.shape, np.float32)
        for b, fit in enumerate(self.bands):
            lookup = self.lookups[b] if b < len(self.lookups) else None
            if lookup is not None:
                out[b] = np.interp(data[b], lookup.x, lookup.y)
            elif fit.gain is not None and fit.offset is not None:
                np.multiply(data[b], np.float32(fit.gain), out=out[b], casting="unsafe")
                out[b] += np.float32(fit.offset)
            else:
                out[b] = data[b]
        return out[0] if single else out


def normalise(
    reference: NDArray[np.generic],
    moving: NDArray[np.generic],
    valid: NDArray[np.bool_],
    *,
    method: Method = "auto",
    seed: int = 0,
) -> Normalisation:
    """Fit the map of MOVING's bands onto REFERENCE's radiometry from pseudo-invariant pixels.

    Args:
        reference: ``(bands, rows, cols)`` (or ``(rows, cols)``), any integer or float dtype.
        moving: The same shape as REFERENCE, on the same grid (aligned first).
        valid: ``(rows, cols)`` pixels usable in both (no-data, cloud and shadow already removed);
            non-finite values are left out as well.
        method: ``auto`` (IR-MAD, or a robust line for one band, with a per-band histogram
            fallback), ``irmad`` or ``robust`` (linear, never falling back), or ``histogram``.
        seed: Seed of the pixel sample, so that the same inputs give the same fit.

    Returns:
        The fit; :meth:`Normalisation.apply` maps MOVING (or any tile of it).

    Raises:
        ValueError: If the shapes differ, or ``irmad`` is asked for a single band.
    """
    ref, mov = _as_bands(reference), _as_bands(moving)
    if ref.shape != mov.shape or valid.shape != ref.shape[1:]:
        raise ValueError(f"reference {ref.shape}, moving {mov.shape} and valid {valid.shape} do not match")
    bands = ref.shape[0]
    if method == "irmad" and bands < 2:
        raise ValueError("IR-MAD needs at least two bands; use method='robust' for one")
    x, y, where = sample_pixels(mov, ref, valid, seed)
    if len(x) < MIN_SAMPLE:
        identity = BandFit("identity", 1.0, 0.0, float("nan"), float("nan"))
        return Normalisation("identity", (identity,) * bands, 0, 0.0, len(x), f"only {len(x)} valid pixels")
    if method == "histogram":
        tables = _lookups(x, y)
        fits = tuple(_quality_of_lookup(table, x[:, b], y[:, b]) for b, table in enumerate(tables))
        return Normalisation("histogram", fits, 0, 0.0, len(x), lookups=tables)
    used: Used = "irmad" if method == "irmad" or (method == "auto" and bands >= 2) else "robust"
    invariant = _irmad_invariant(x, y) if used == "irmad" else _robust_invariant(x[:, 0], y[:, 0])
    count = int(invariant.sum())
    fits, lookups, notes = _fit_bands(x, y, invariant, fall_back=method == "auto")
    if all(f.method == "histogram" for f in fits):
        used = "histogram"
    note = "; ".join(notes) if notes else None
    return Normalisation(used, fits, count, count / len(x), len(x), note, lookups, where[invariant])


def _as_bands(image: NDArray[np.generic]) -> NDArray[np.generic]:
    data = np.asarray(image)
    return data[np.newaxis] if data.ndim == 2 else data


def sample_pixels(
    mov: NDArray[np.generic], ref: NDArray[np.generic], valid: NDArray[np.bool_], seed: int
) -> tuple[Floats, Floats, NDArray[np.intp]]:
    """``(n, bands)`` float64 samples of MOVING and REFERENCE at the same valid, finite, unclipped
    pixels, and the pixels' flat indexes: at most :data:`SAMPLE_PIXELS`, seeded by SEED."""
    where = np.flatnonzero(valid)
    if len(where) > SAMPLE_PIXELS:
        where = np.sort(np.random.default_rng(seed).choice(where, SAMPLE_PIXELS, replace=False))
    x = mov.reshape(mov.shape[0], -1)[:, where].T.astype(np.float64)
    y = ref.reshape(ref.shape[0], -1)[:, where].T.astype(np.float64)
    keep = np.isfinite(x).all(axis=1) & np.isfinite(y).all(axis=1)
    for image, values in ((mov, x), (ref, y)):
        if image.dtype.kind in "iu":
            keep &= (values < np.iinfo(image.dtype.name).max).all(axis=1)
    return x[keep], y[keep], where[keep]


@dataclass(frozen=True, eq=False)
class Mad:
    """IR-MAD's fitted transform (Nielsen 2007): what both the normalisation and the ``irmad`` change
    detector need, so that there is one implementation of the iteration.

    The MAD variates of pixels ``x`` (first date) and ``y`` (second) are ``(x - x_mean) @ a -
    (y - y_mean) @ b``, one per band, uncorrelated, with variance ``2 (1 - rho)`` over the unchanged
    pixels; their squares over those variances sum to a chi-square statistic with ``bands`` degrees
    of freedom where nothing changed.
    """

    x_mean: Floats  # (bands,) no-change-weighted means
    y_mean: Floats
    a: Floats  # (bands, bands): canonical vectors of X in columns, unit variance
    b: Floats
    rho: Floats  # (bands,) canonical correlations, ascending
    weights: Floats  # (n,) each fitted pixel's chi-square probability of no change

    @property
    def sigma(self) -> Floats:
        """Standard deviation of each MAD variate over the unchanged pixels."""
        sigma: Floats = np.sqrt(np.maximum(2 * (1 - self.rho), 1e-12))
        return sigma

    def variates(self, x: Floats, y: Floats) -> Floats:
        """``(n, bands)`` MAD variates of pixel rows X and Y."""
        mad: Floats = (x - self.x_mean) @ self.a - (y - self.y_mean) @ self.b
        return mad

    def chi2(self, x: Floats, y: Floats) -> Floats:
        """``(n,)`` sum of the squared standardised MAD variates of X and Y."""
        chi2: Floats = ((self.variates(x, y) / self.sigma) ** 2).sum(axis=1)
        return chi2


def irmad(x: Floats, y: Floats) -> Mad:
    """Iteratively reweighted MAD of ``(n, bands)`` pixel rows X (first date) and Y (second).

    Each pass is a canonical correlation analysis weighted by every pixel's probability of no change
    from the pass before, so changed pixels stop pulling the transform. It stops when the canonical
    correlations settle, after :data:`IRMAD_MAX_ITERATIONS`, or when (almost) everything reads as
    changed (the weights then sum to fewer than ``bands + 1``: the last transform is kept).
    """
    n, p = x.shape
    weights = np.ones(n)
    previous = np.zeros(p)
    mad: Mad | None = None
    for _ in range(IRMAD_MAX_ITERATIONS):
        total = weights.sum()
        if total < p + 1 and mad is not None:
            break
        x_mean, y_mean = weights @ x / total, weights @ y / total
        xc, yc = x - x_mean, y - y_mean
        wx, wy = xc * weights[:, None], yc * weights[:, None]
        sxx, syy, sxy = _ridge(wx.T @ xc / total), _ridge(wy.T @ yc / total), wx.T @ yc / total
        # Canonical correlations: Σxy Σyy⁻¹ Σyx a = ρ² Σxx a, with aᵀ Σxx a = 1 from eigh.
        rho2, a = scipy.linalg.eigh(sxy @ np.linalg.solve(syy, sxy.T), sxx)
        rho = np.sqrt(np.clip(rho2, 0.0, 1.0))
        b = np.linalg.solve(syy, sxy.T @ a) / np.maximum(rho, 1e-9)
        transform = Mad(x_mean, y_mean, a, b, rho, weights)
        weights = stats.chi2.sf(transform.chi2(x, y), p)
        mad = replace(transform, weights=weights)
        if np.abs(rho - previous).max() < IRMAD_TOLERANCE:
            break
        previous = rho
    assert mad is not None  # the first pass always runs (its weights are all one)
    return mad


def _irmad_invariant(x: Floats, y: Floats) -> NDArray[np.bool_]:
    """Pixels whose IR-MAD probability of no change is above :data:`NO_CHANGE_PROBABILITY`."""
    weights = irmad(x, y).weights
    if weights.sum() < x.shape[1] + 1:  # (almost) everything changed: nothing is invariant
        return np.zeros(len(x), np.bool_)
    invariant: NDArray[np.bool_] = weights > NO_CHANGE_PROBABILITY
    return invariant


def _ridge(cov: Floats) -> Floats:
    """COV with a tiny ridge, so that a constant band does not make it singular."""
    return cov + np.eye(len(cov)) * (1e-9 * max(float(np.trace(cov)), 1e-12) + 1e-12)


def _robust_invariant(x: Floats, y: Floats) -> NDArray[np.bool_]:
    """Inliers of a Theil–Sen line of Y on X (one band: change is what strays from the line)."""
    if np.ptp(x) == 0:  # one value: no line to stray from (the fit then matches the means)
        return np.ones(len(x), np.bool_)
    step = max(1, len(x) // THEIL_SEN_PIXELS)
    slope, intercept, _, _ = stats.theilslopes(y[::step], x[::step])
    residual = y - (slope * x + intercept)
    centre = np.median(residual)
    spread = float(stats.median_abs_deviation(residual, scale="normal"))
    inliers: NDArray[np.bool_] = np.abs(residual - centre) <= INLIER_SIGMAS * max(spread, 1e-9 * (np.ptp(y) + 1))
    return inliers


def _fit_bands(
    x: Floats, y: Floats, invariant: NDArray[np.bool_], *, fall_back: bool
) -> tuple[tuple[BandFit, ...], tuple[Lookup | None, ...], list[str]]:
    """A linear fit per band on the invariant pixels; a histogram lookup where it is poor (FALL_BACK)."""
    count = int(invariant.sum())
    few = count < max(MIN_INVARIANT_PIXELS, MIN_INVARIANT_FRACTION * len(x))
    fits: list[BandFit] = []
    lookups: list[Lookup | None] = []
    notes: list[str] = []
    histograms: tuple[Lookup, ...] | None = None
    # With (almost) no invariant pixels, the fit and its quality are over every sampled pixel.
    on = invariant if count >= 2 else np.ones(len(x), np.bool_)
    for b in range(x.shape[1]):
        xi, yi = x[on, b], y[on, b]
        gain, offset = _orthogonal_fit(xi, yi)
        fit = _quality(gain * xi + offset, yi, BandFit("linear", gain, offset, 0.0, 0.0))
        problem = _problem(few, count, fit, xi, yi, x[:, b])
        if fall_back and problem is not None:
            histograms = histograms or _lookups(x, y)
            notes.append(f"band {b + 1}: histogram matched ({problem})")
            fits.append(_quality_of_lookup(histograms[b], xi, yi))
            lookups.append(histograms[b])
        else:
            fits.append(fit)
            lookups.append(None)
    return tuple(fits), tuple(lookups), notes


def _problem(few: bool, count: int, fit: BandFit, x: Floats, y: Floats, band: Floats) -> str | None:
    """Why the linear FIT of Y on X (the invariant pixels of BAND) should not be trusted, or None."""
    if few:
        return f"only {count} invariant pixels"
    if not fit.r2 >= MIN_R2:
        return f"R² {fit.r2:.2f}"
    span = np.subtract(*np.quantile(x, [0.98, 0.02])) / max(float(np.subtract(*np.quantile(band, [0.98, 0.02]))), 1e-12)
    if span < MIN_INVARIANT_SPAN:
        return f"the invariant pixels span {span:.0%} of the band's range"
    bend = _bend(x, y, fit.gain or 1.0, fit.offset or 0.0)
    if bend > MAX_BEND:
        return f"the relation bends by {bend:.0%} of the range"
    return None


def _orthogonal_fit(x: Floats, y: Floats) -> tuple[float, float]:
    """Gain and offset of the orthogonal (total least squares) line of Y on X."""
    mx, my = float(x.mean()), float(y.mean())
    sxx, syy = float(np.mean((x - mx) ** 2)), float(np.mean((y - my) ** 2))
    sxy = float(np.mean((x - mx) * (y - my)))
    if sxx <= 0 or abs(sxy) <= 1e-12 * max(sxx, syy):
        return 1.0, my - mx  # no usable spread in the invariant pixels: match the means only
    gain = (syy - sxx + np.sqrt((syy - sxx) ** 2 + 4 * sxy**2)) / (2 * sxy)
    return float(gain), float(my - gain * mx)


def _bend(x: Floats, y: Floats, gain: float, offset: float) -> float:
    """Largest median residual over quantile bins of X, as a share of Y's 2–98 % range."""
    edges = np.unique(np.quantile(x, np.linspace(0, 1, BEND_BINS + 1)))
    if len(edges) < 3:
        return 0.0
    bins = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2)
    residual = y - (gain * x + offset)
    medians = [np.median(residual[bins == k]) for k in range(len(edges) - 1) if np.any(bins == k)]
    low, high = np.quantile(y, [0.02, 0.98])
    return float(np.max(np.abs(medians)) / max(float(high - low), 1e-12))


def _quality(predicted: Floats, y: Floats, fit: BandFit) -> BandFit:
    """FIT with R² and RMSE of PREDICTED against Y."""
    sse = float(np.sum((predicted - y) ** 2))
    sst = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - sse / sst if sst > 0 else (1.0 if sse == 0 else 0.0)
    return BandFit(fit.method, fit.gain, fit.offset, r2, float(np.sqrt(sse / max(1, len(y)))))


def _lookups(x: Floats, y: Floats) -> tuple[Lookup, ...]:
    """Per band, the lookup table that :func:`match_histograms` applies to the sampled pixels."""
    tables = []
    for b in range(x.shape[1]):
        order = np.argsort(x[:, b], kind="stable")
        source = x[order, b]
        matched = np.asarray(match_histograms(source, y[:, b]), np.float64)
        nodes = np.unique(source)
        if len(nodes) > LUT_NODES:
            nodes = np.unique(np.quantile(source, np.linspace(0, 1, LUT_NODES + 1)))
        # match_histograms maps equal values to equal values, so any pixel at a node gives its image.
        at = np.clip(np.searchsorted(source, nodes), 0, len(source) - 1)
        tables.append(Lookup(nodes, np.maximum.accumulate(matched[at])))
    return tuple(tables)


def _quality_of_lookup(lookup: Lookup, x: Floats, y: Floats) -> BandFit:
    return _quality(np.interp(x, lookup.x, lookup.y), y, BandFit("histogram", None, None, 0.0, 0.0))
