"""Fitting tie points: a shift, an affine map or a smooth displacement field, as the data supports.

All maps take reference pixel coordinates to moving ones (DESIGN.md's ``register`` contract): a
2x3 matrix ``[[a, b, c], [d, e, f]]`` sends (x, y) to (a·x + b·y + c, d·x + e·y + f).

Outliers go in two steps. Gross ones (a window matched on a changed building or a cloud edge)
lie far off a RANSAC consensus; the rest are judged against the model itself, with a threshold
from the residuals' own spread (MAD), never below ``MIN_THRESHOLD_PX``.

Model choice: an affine map replaces a shift only where the tie points cover the image and an F-test
says its four extra terms explain real motion (rotation, scale, shear) rather than noise; a field
replaces either only with many well-spread points and a cross-validated error clearly below its
own (terrain and view-angle differences bend images in ways no affine map follows).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from scipy import stats
from scipy.interpolate import RBFInterpolator, RectBivariateSpline

Model = Literal["shift", "affine", "field"]

#: Inlier threshold floor (px): tie points are good to a few hundredths of a pixel, so a point
#: this far off the model is wrong even when the others agree so well that their MAD is tiny.
MIN_THRESHOLD_PX = 0.2
#: ... and gross outliers: farther than this from a RANSAC affine consensus of all points.
GROSS_THRESHOLD_PX = 2.0
#: Residuals beyond this many robust standard deviations are outliers.
OUTLIER_SIGMAS = 3.0
#: An affine map needs this many tie points, covering this share of the image on both axes.
MIN_AFFINE_POINTS = 6
MIN_AFFINE_SPREAD = 0.4
#: Significance at which the F-test prefers the affine map to a shift.
AFFINE_P_VALUE = 1e-3
#: An affine map must move some corner of the image at least this far (px) from the shift.
MIN_AFFINE_EFFECT_PX = 0.05
#: A field needs this many tie points and coverage, and is kept only if its cross-validated error is
#: below this share of the simpler model's while that model leaves at least MIN_FIELD_RMSE_PX.
MIN_FIELD_POINTS = 16
MIN_FIELD_SPREAD = 0.6
FIELD_GAIN = 0.85
MIN_FIELD_RMSE_PX = 0.1
#: Candidate smoothings of the thin-plate spline (coordinates scaled to 0-1), chosen by cross-validation.
FIELD_SMOOTHINGS = (1e-4, 1e-3, 1e-2, 1e-1)
#: The field is stored on a grid of at most this many nodes per axis (bilinear in between).
FIELD_NODES = 33


@dataclass(frozen=True)
class FieldGrid:
    """A smooth displacement field on a regular grid of reference pixels, bilinear in between.

    Outside the grid the nearest edge value holds. ``dx[i, j]``, ``dy[i, j]`` is the displacement at
    reference pixel ``(xs[j], ys[i])``: its content lies at ``(xs[j] + dx, ys[i] + dy)`` in MOVING.
    """

    xs: np.ndarray  # (nx,) increasing
    ys: np.ndarray  # (ny,) increasing
    dx: np.ndarray  # (ny, nx)
    dy: np.ndarray  # (ny, nx)

    def displacement(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(dx, dy)`` at reference pixels (X, Y) (arrays of one shape)."""
        x = np.clip(np.asarray(x, dtype=np.float64), self.xs[0], self.xs[-1])
        y = np.clip(np.asarray(y, dtype=np.float64), self.ys[0], self.ys[-1])
        fx = RectBivariateSpline(self.ys, self.xs, self.dx, kx=1, ky=1)
        fy = RectBivariateSpline(self.ys, self.xs, self.dy, kx=1, ky=1)
        return fx(y, x, grid=False), fy(y, x, grid=False)


@dataclass(frozen=True)
class Fit:
    """A fitted model, its inliers among the tie points and its residual RMSE (px) on them."""

    model: Model
    matrix: np.ndarray  # (2, 3): the model itself, or the best affine fit for a field
    field: FieldGrid | None
    inliers: np.ndarray  # bool (n,)
    rmse: float

    def map(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Moving pixel coordinates of reference pixels (X, Y)."""
        if self.field is not None:
            dx, dy = self.field.displacement(x, y)
            return x + dx, y + dy
        return apply_matrix(self.matrix, x, y)


def apply_matrix(matrix: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x', y') = MATRIX applied to (X, Y)."""
    (a, b, c), (d, e, f) = matrix
    return a * x + b * y + c, d * x + e * y + f


def shift_matrix(dx: float, dy: float) -> np.ndarray:
    """The 2x3 matrix of a pure shift."""
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])


def fit_shift(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares shift (the mean displacement) of ``(n, 2)`` points."""
    dx, dy = (dst - src).mean(axis=0)
    return shift_matrix(float(dx), float(dy))


def fit_affine(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares affine matrix of ``(n, 2)`` points (n >= 3, not collinear)."""
    design = np.column_stack([src, np.ones(len(src))])
    solution, *_ = np.linalg.lstsq(design, dst, rcond=None)
    matrix: np.ndarray = solution.T
    return matrix


def consistent(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Bool ``(n,)``: points within GROSS_THRESHOLD_PX of a RANSAC affine consensus (all, below 4 points).

    The threshold is loose: it only removes windows matched on something else (a changed building,
    a cloud edge), while any smooth motion (and a field's departure from affine, up to the
    threshold) passes to the model-specific rejection.
    """
    n = len(src)
    if n < 4:
        return np.ones(n, bool)
    _, inliers = cv2.estimateAffine2D(
        src.astype(np.float32),
        dst.astype(np.float32),
        method=cv2.RANSAC,
        ransacReprojThreshold=GROSS_THRESHOLD_PX,
        maxIters=2000,
        confidence=0.999,
    )
    if inliers is None:
        return np.ones(n, bool)
    ok: np.ndarray = inliers.ravel() > 0
    return ok


def _residuals(matrix: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    x, y = apply_matrix(matrix, src[:, 0], src[:, 1])
    distances: np.ndarray = np.hypot(dst[:, 0] - x, dst[:, 1] - y)
    return distances


def _robust(
    fitter: Callable[[np.ndarray, np.ndarray], np.ndarray], src: np.ndarray, dst: np.ndarray, keep: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Fit on KEEP, drop points beyond the MAD-based threshold, refit; (matrix, inliers)."""
    inliers = keep.copy()
    matrix = fitter(src[inliers], dst[inliers])
    for _ in range(3):
        residual = _residuals(matrix, src, dst)
        sigma = 1.4826 * float(np.median(residual[inliers]))
        updated = keep & (residual <= max(OUTLIER_SIGMAS * sigma, MIN_THRESHOLD_PX))
        if updated.sum() < 3 or np.array_equal(updated, inliers):
            break
        inliers = updated
        matrix = fitter(src[inliers], dst[inliers])
    return matrix, inliers


def _rmse(residual: np.ndarray) -> float:
    """Root mean square of the finite RESIDUAL values (NaN where none)."""
    finite = residual[np.isfinite(residual)]
    return float(np.sqrt(np.mean(finite**2))) if finite.size else float("nan")


def spread(points: np.ndarray, shape: tuple[int, int]) -> float:
    """The smaller of the shares of SHAPE's (rows, cols) width and height that POINTS span."""
    rows, cols = shape
    span = points.max(axis=0) - points.min(axis=0)
    return float(min(span[0] / max(cols - 1, 1), span[1] / max(rows - 1, 1)))


def fit_model(
    src: np.ndarray,
    dst: np.ndarray,
    shape: tuple[int, int],
    *,
    separation: float = 0.0,
    allow_field: bool = True,
) -> Fit:
    """The simplest model that the tie points SRC -> DST support, on a reference of SHAPE (rows, cols).

    SEPARATION is the window size: points closer than that on both axes were measured on shared
    pixels, so their errors are correlated, and each point is judged on a field fitted without them
    (otherwise the field would seem to explain noise). Needs at least 3 points; returns a shift when
    nothing more is justified.
    """
    keep = consistent(src, dst)
    shift, shift_in = _robust(fit_shift, src, dst, keep)
    best = Fit("shift", shift, None, shift_in, _rmse(_residuals(shift, src[shift_in], dst[shift_in])))
    if keep.sum() >= MIN_AFFINE_POINTS and spread(src[keep], shape) >= MIN_AFFINE_SPREAD:
        affine = _affine_if_significant(src, dst, keep, shape, separation)
        best = affine or best
    if (
        allow_field
        and keep.sum() >= MIN_FIELD_POINTS
        and spread(src[keep], shape) >= MIN_FIELD_SPREAD
        and best.rmse >= MIN_FIELD_RMSE_PX
    ):
        fitter = fit_shift if best.model == "shift" else fit_affine

        def simple(train: np.ndarray, moved: np.ndarray, query: np.ndarray) -> np.ndarray:
            return np.column_stack(apply_matrix(fitter(train, moved), query[:, 0], query[:, 1]))

        simpler = _rmse(_held_out(simple, src[best.inliers], dst[best.inliers], separation))
        field = _field(src, dst, keep, shape, separation)
        if field is not None and field.rmse < FIELD_GAIN * simpler:
            best = field
    return best


def _affine_if_significant(
    src: np.ndarray, dst: np.ndarray, keep: np.ndarray, shape: tuple[int, int], separation: float
) -> Fit | None:
    """The robust affine fit, if an F-test against a shift on its inliers and its effect justify it.

    The test counts independent points only: as many windows of SEPARATION as fit, side by side,
    in the points' extent (overlapping windows share pixels, so their errors are not independent).
    """
    affine, inliers = _robust(fit_affine, src, dst, keep)
    n = int(inliers.sum())
    extent = np.ptp(src[inliers], axis=0) + separation if n else np.zeros(2)
    independent = min(float(n), float(np.prod(extent)) / separation**2) if separation > 0 else float(n)
    dof = 2 * independent - 6
    if n < MIN_AFFINE_POINTS or dof <= 0:
        return None
    rss_affine = float(np.sum(_residuals(affine, src[inliers], dst[inliers]) ** 2))
    shift = fit_shift(src[inliers], dst[inliers])
    rss_shift = float(np.sum(_residuals(shift, src[inliers], dst[inliers]) ** 2))
    # correlated errors inflate what the four extra terms seem to explain by about n / independent
    f_value = ((rss_shift - rss_affine) / 4) / max(rss_affine / (2 * n - 6), 1e-12) * independent / n
    if stats.f.sf(f_value, 4, dof) >= AFFINE_P_VALUE or _corner_effect(affine, shift, shape) < MIN_AFFINE_EFFECT_PX:
        return None
    return Fit("affine", affine, None, inliers, float(np.sqrt(rss_affine / n)))


def _corner_effect(a: np.ndarray, b: np.ndarray, shape: tuple[int, int]) -> float:
    """Largest distance (px) between where A and B send the corners of a SHAPE image."""
    rows, cols = shape
    x = np.array([0.0, cols - 1, 0.0, cols - 1])
    y = np.array([0.0, 0.0, rows - 1, rows - 1])
    ax, ay = apply_matrix(a, x, y)
    bx, by = apply_matrix(b, x, y)
    return float(np.max(np.hypot(ax - bx, ay - by)))


Predictor = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _held_out(predict: Predictor, points: np.ndarray, moved: np.ndarray, separation: float) -> np.ndarray:
    """Each point's distance (px) from PREDICT fitted without it and without the points closer than
    SEPARATION on both axes (NaN where too few points are left to fit on)."""
    errors = np.full(len(points), np.nan)
    for index, point in enumerate(points):
        train = np.max(np.abs(points - point), axis=1) >= separation
        train[index] = False
        if train.sum() >= MIN_AFFINE_POINTS:
            predicted = predict(points[train], moved[train], points[index : index + 1])[0]
            errors[index] = float(np.hypot(*(moved[index] - predicted)))
    return errors


class _Spline:
    """An affine map plus a thin-plate spline on its residuals, in coordinates scaled to about 0-1
    (so that the candidate smoothings mean the same on any image size)."""

    def __init__(self, points: np.ndarray, moved: np.ndarray, smoothing: float, scale: float) -> None:
        self.scale = scale
        self.matrix = fit_affine(points, moved)
        left = moved - np.column_stack(apply_matrix(self.matrix, points[:, 0], points[:, 1]))
        self.rbf = RBFInterpolator(points / scale, left, kernel="thin_plate_spline", smoothing=smoothing)

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """``(n, 2)`` moving coordinates of ``(n, 2)`` reference POINTS."""
        linear = np.column_stack(apply_matrix(self.matrix, points[:, 0], points[:, 1]))
        result: np.ndarray = linear + self.rbf(points / self.scale)
        return result


def _spline_predictor(smoothing: float, scale: float) -> Predictor:
    def predict(train: np.ndarray, moved: np.ndarray, query: np.ndarray) -> np.ndarray:
        return _Spline(train, moved, smoothing, scale)(query)

    return predict


def _field(src: np.ndarray, dst: np.ndarray, keep: np.ndarray, shape: tuple[int, int], separation: float) -> Fit | None:
    """A smooth field through the tie points, its smoothing and outliers chosen on held-out errors.

    Its RMSE is the held-out one: a spline can pass through every point it was fitted on, so the
    in-sample residual would say nothing.
    """
    scale = float(max(shape))
    indices = np.flatnonzero(keep)
    scored = [
        (_held_out(_spline_predictor(s, scale), src[indices], dst[indices], separation), s) for s in FIELD_SMOOTHINGS
    ]
    errors, smoothing = min(scored, key=lambda pair: _rmse(pair[0]))
    if not np.isfinite(errors).any():
        return None
    threshold = max(OUTLIER_SIGMAS * 1.4826 * float(np.nanmedian(errors)), MIN_THRESHOLD_PX)
    indices = indices[~(errors > threshold)]
    if len(indices) < MIN_FIELD_POINTS:
        return None
    points, moved = src[indices], dst[indices]
    held_out = _held_out(_spline_predictor(smoothing, scale), points, moved, separation)
    spline = _Spline(points, moved, smoothing, scale)
    inliers = np.zeros(len(src), bool)
    inliers[indices] = True
    return Fit("field", spline.matrix, _grid(spline, shape), inliers, _rmse(held_out))


def _grid(spline: _Spline, shape: tuple[int, int]) -> FieldGrid:
    """SPLINE's displacement sampled on a regular grid over the reference image."""
    rows, cols = shape
    xs = np.linspace(0.0, cols - 1, min(FIELD_NODES, cols))
    ys = np.linspace(0.0, rows - 1, min(FIELD_NODES, rows))
    gx, gy = np.meshgrid(xs, ys)
    nodes = np.column_stack([gx.ravel(), gy.ravel()])
    moved = spline(nodes).reshape(*gx.shape, 2)
    return FieldGrid(xs, ys, moved[..., 0] - gx, moved[..., 1] - gy)
