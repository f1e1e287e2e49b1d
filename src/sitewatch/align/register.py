"""register(): how MOVING is misregistered against REFERENCE, as a shift, an affine map or a field.

The convention is DESIGN.md's ``register`` contract: x is the column (to the right), y the row
(down), the centre of the top-left pixel is (0, 0), and a feature at REFERENCE pixel (x, y) appears
in MOVING at (x + dx, y + dy). ``affine`` maps reference pixel coordinates to moving ones,
x' = a·x + b·y + c, y' = d·x + e·y + f, so a pure shift is (1, 0, dx, 0, 1, dy).

The steps, coarse to fine:

1. Coverage: the images' data must overlap (else ``no-overlap``), and enough of the overlap must be
   free of cloud (else ``cloud``); the windows of both must hold texture (else ``featureless``).
2. A global shift: phase correlation of the whole images on a downsampled level (at most about 1024
   px a side), which finds shifts of any size up to half the image.
3. On large images, a first grid of tie points on that level, so a rotation or scale that moves the
   corners by tens of full-resolution pixels is known before the fine windows are placed.
4. Tie points at full resolution, each window resampled through the current estimate, fitted, and
   measured again while the estimate's shape (rotation, scale) still changes; then the model the
   points support (shift, affine or field) with outliers left out.

Luminance is matched when both images have the same bands; if that leaves ``low-confidence``,
gradients are tried before giving up (seasons and sun change brightness unevenly, edges stay).

A pair that cannot be registered is an answer (``status`` "failed" with a ``reason``), never an
exception and never a shift the tie points do not back: too few matches, matches that disagree,
or a model whose standard error is above ``MAX_STANDARD_ERROR_PX`` give ``low-confidence``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import ndimage

from sitewatch.align.fit import MIN_AFFINE_SPREAD, FieldGrid, Fit, Model, apply_matrix, fit_model, shift_matrix, spread
from sitewatch.align.represent import Representation, choose, luminance, represent, texture
from sitewatch.align.tiepoints import (
    MIN_TEXTURE,
    MIN_WINDOW_VALID,
    Level,
    Measured,
    PixelMap,
    global_shift,
    measure,
    window_origins,
)

log = logging.getLogger(__name__)

Status = Literal["ok", "failed"]

#: The global shift is found on a level at most this many pixels a side (larger images are averaged
#: down by a power of two), which bounds its time and memory.
COARSE_SIDE_PX = 1024
#: Full-resolution windows along each axis (so at most this squared), and on the coarse level.
WINDOWS_PER_AXIS = 10
COARSE_WINDOWS_PER_AXIS = 6
#: Smallest tie-point window (px) that holds enough structure to match.
MIN_WINDOW_PX = 16
#: Where the GSD is known, a window spans at least this much ground (metres): fine imagery needs
#: wider windows, or cars and shadows (which move between dates) fill them.
MIN_WINDOW_GROUND_M = 60.0
#: Fewer good tie points than this is not a registration.
MIN_TIE_POINTS = 3
#: At least this share of the matched windows must agree with the fitted model.
MIN_INLIER_SHARE = 0.5
#: Tie points that scatter more than this (px RMS) about the model do not describe one motion.
MAX_RESIDUAL_PX = 1.5
#: The model is trusted only where its standard error (RMSE over the root of the number of tie
#: points) is at most this (px): real pairs scatter by parallax and change, but many points agree.
MAX_STANDARD_ERROR_PX = 0.25
#: Tie points bunched in one part of the image cannot show a rotation or a field; if they scatter
#: more than this (px RMS), the motion varies and a shift from them would not hold elsewhere.
MAX_BUNCHED_RESIDUAL_PX = 0.5
#: Full-resolution passes stop when the model's shape moves a window's corners less than this (px),
#: or after MAX_PASSES.
CONVERGED_PX = 0.05
MAX_PASSES = 3
#: Less than this share of the overlapping footprints free of cloud: ``cloud``.
MIN_CLEAR_SHARE = 0.2
#: No-data is tapered over this many pixels in the global phase correlation.
TAPER_PX = 16.0


@dataclass(frozen=True)
class TiePoints:
    """The tie points of a registration, in reference and moving pixel coordinates.

    Attributes:
        reference: ``(n, 2)`` window centres (x, y) in REFERENCE.
        moving: ``(n, 2)`` where each one's content was found in MOVING.
        quality: ``(n,)`` ECC correlation coefficients (0-1).
        inlier: ``(n,)`` bool, the points the model was fitted on.
    """

    reference: np.ndarray
    moving: np.ndarray
    quality: np.ndarray
    inlier: np.ndarray

    @classmethod
    def none(cls) -> TiePoints:
        """No tie points."""
        empty = np.zeros((0, 2))
        return cls(empty, empty, np.zeros(0), np.zeros(0, bool))


@dataclass(frozen=True)
class Registration:
    """The misregistration of MOVING against REFERENCE, or why it could not be found.

    Attributes:
        status: ``ok`` or ``failed``.
        reason: why it failed (``no-overlap``, ``cloud``, ``featureless``, ``low-confidence``,
            ``too-small``); None when ok.
        model: ``shift``, ``affine`` or ``field`` (``shift`` when failed: nothing was fitted).
        shift_px: (dx, dy): the shift; for ``affine`` the displacement at the centre of REFERENCE,
            for ``field`` the median displacement of the tie points. None when failed.
        affine: (a, b, c, d, e, f), the affine map (the best affine fit for a field); None when failed.
        tie_points: number of good (inlier) tie points.
        residual_rmse_px: RMS distance of the inlier tie points from the model (for a field, from
            the field fitted without each point and its neighbours); None without a fit.
        points: the tie points themselves.
        field: the displacement field, for ``field`` only.
        representation: what was matched (``luminance`` or ``gradient``).
        global_shift_px: the first, global estimate (dx, dy), when one was made.
        global_peak: its phase-correlation peak (0-1).
    """

    status: Status
    reason: str | None
    model: Model
    shift_px: tuple[float, float] | None
    affine: tuple[float, float, float, float, float, float] | None
    tie_points: int
    residual_rmse_px: float | None
    points: TiePoints = dataclasses.field(default_factory=TiePoints.none)
    field: FieldGrid | None = None
    representation: Representation = "luminance"
    global_shift_px: tuple[float, float] | None = None
    global_peak: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the registration succeeded."""
        return self.status == "ok"

    def map(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """MOVING pixel coordinates (x', y') of REFERENCE pixels (X, Y), arrays of one shape.

        Raises:
            ValueError: If the registration failed (there is no map to give).
        """
        if self.affine is None:
            raise ValueError(f"registration failed ({self.reason}): there is no map")
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if self.field is not None:
            dx, dy = self.field.displacement(x, y)
            return x + dx, y + dy
        return apply_matrix(np.reshape(self.affine, (2, 3)), x, y)

    def displacement(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(dx, dy) at REFERENCE pixels (X, Y): their content lies at (X + dx, Y + dy) in MOVING."""
        mx, my = self.map(x, y)
        return mx - np.asarray(x, dtype=np.float64), my - np.asarray(y, dtype=np.float64)

    def to_json(self, shift_m: tuple[float, float] | None = None) -> dict[str, Any]:
        """Exactly the keys of the ``register`` contract; SHIFT_M is (east, north) metres, if known."""
        return {
            "status": self.status,
            "reason": self.reason,
            "model": self.model,
            "shift_px": None if self.shift_px is None else [_round(v) for v in self.shift_px],
            "shift_m": None if shift_m is None or not self.ok else [_round(v) for v in shift_m],
            "affine": None if self.affine is None else [_round(v, 6) for v in self.affine],
            "tie_points": self.tie_points,
            "residual_rmse_px": None if self.residual_rmse_px is None else _round(self.residual_rmse_px),
        }


def _round(value: float, digits: int = 4) -> float:
    return round(float(value), digits)


def register(
    reference: np.ndarray,
    moving: np.ndarray,
    *,
    ref_valid: np.ndarray | None = None,
    mov_valid: np.ndarray | None = None,
    ref_cloud: np.ndarray | None = None,
    mov_cloud: np.ndarray | None = None,
    gsd: float | None = None,
    representation: Representation | Literal["auto"] = "auto",
    window: int | None = None,
) -> Registration:
    """Find where REFERENCE's content lies in MOVING (see the module docstring for the convention).

    Args:
        reference: ``(bands, rows, cols)`` or ``(rows, cols)``, any numeric dtype.
        moving: the same for MOVING, in its own pixel grid (of any size; usually REFERENCE's grid
            after placing it there by its georeference, with a residual misregistration left).
        ref_valid: bool ``(rows, cols)``: REFERENCE pixels with data (default: all finite pixels).
        mov_valid: the same for MOVING.
        ref_cloud: bool ``(rows, cols)``: REFERENCE pixels under cloud, haze or shadow. Pass clouds
            here rather than folding them into ``ref_valid``, so that a cloudy pair fails as ``cloud``
            rather than ``no-overlap``.
        mov_cloud: the same for MOVING.
        gsd: metres per pixel, when known: windows then span at least ``MIN_WINDOW_GROUND_M``.
        representation: what to match; ``auto`` takes luminance for the same bands and dtype, else
            gradients.
        window: tie-point window size in pixels, at least 16 (default: from the image size and GSD).

    Raises:
        ValueError: If an array has the wrong number of dimensions, a mask the wrong shape, or
            WINDOW is below 16.
    """
    if window is not None and window < MIN_WINDOW_PX:
        raise ValueError(f"window must be at least {MIN_WINDOW_PX} px, got {window}")
    lum_ref, lum_mov = luminance(reference), luminance(moving)
    data_ref = _mask(ref_valid, lum_ref, "ref_valid")
    data_mov = _mask(mov_valid, lum_mov, "mov_valid")
    clear_ref = data_ref & ~_mask(ref_cloud, lum_ref, "ref_cloud", default=False)
    clear_mov = data_mov & ~_mask(mov_cloud, lum_mov, "mov_cloud", default=False)
    kind: Representation = choose(reference, moving) if representation == "auto" else representation
    size = window or _window_size(lum_ref.shape, lum_mov.shape, gsd)
    if size is None:
        return _failed("too-small", kind)
    coverage = _coverage(data_ref, data_mov, clear_ref, clear_mov, size * size)
    if coverage is not None:
        return _failed(coverage, kind)
    ref, mov = Level.of(lum_ref, clear_ref), Level.of(lum_mov, clear_mov)
    origins = window_origins(lum_ref.shape, size, WINDOWS_PER_AXIS)
    if _textured_windows(ref, mov, origins, size) < min(MIN_TIE_POINTS, len(origins)):
        return _failed("featureless", kind)

    factor = _coarse_factor(lum_ref.shape)
    coarse = (ref.downsampled(factor), mov.downsampled(factor)) if factor > 1 else (ref, mov)
    result = _register_as(kind, ref, mov, coarse, factor, origins, size)
    if representation == "auto" and kind == "luminance" and result.reason == "low-confidence":
        # Seasons, sun and sensors change brightness unevenly across a scene; edges mostly stay put.
        log.debug("luminance gave low confidence: trying gradients")
        retry = _register_as("gradient", ref, mov, coarse, factor, origins, size)
        if retry.ok:
            return retry
    return result


def _register_as(
    kind: Representation,
    ref: Level,
    mov: Level,
    coarse: tuple[Level, Level],
    factor: int,
    origins: list[tuple[int, int]],
    size: int,
) -> Registration:
    """Steps 2 to 4 of the module docstring on one representation."""
    coarse_ref, coarse_mov = coarse
    dx, dy, peak = global_shift(
        represent(coarse_ref.lum, coarse_ref.valid, coarse_ref.stats, kind, taper_px=TAPER_PX / factor),
        represent(coarse_mov.lum, coarse_mov.valid, coarse_mov.stats, kind, taper_px=TAPER_PX / factor),
    )
    global_px = (dx * factor, dy * factor)
    log.debug("global shift (%.2f, %.2f) px, peak %.3f", *global_px, peak)
    matrix = shift_matrix(dx, dy)
    if factor > 1:
        matrix = _to_full(_refined_on_level(coarse_ref, coarse_mov, kind, matrix), factor)

    shape = (int(ref.lum.shape[0]), int(ref.lum.shape[1]))
    measured, fit = _iterate(ref, mov, kind, matrix, origins, size)
    if fit is not None:
        fit = fit_model(measured.reference, measured.moving, shape, separation=size)
        if fit.model == "field":
            # measure again through the field, so every window sees (almost) no distortion
            again = measure(ref, mov, kind, fit.map, origins, size)
            if again.count >= MIN_TIE_POINTS:
                measured, fit = again, fit_model(again.reference, again.moving, shape, separation=size)
    return _result(measured, fit, kind, global_px, peak, shape)


def _mask(mask: np.ndarray | None, lum: np.ndarray, name: str, *, default: bool = True) -> np.ndarray:
    """MASK as bool (checked against LUM's shape), else DEFAULT; finite LUM only where it says data."""
    if mask is None:
        out = np.full(lum.shape, default, bool)
    else:
        out = np.asarray(mask, dtype=bool)
        if out.shape != lum.shape:
            raise ValueError(f"{name} has shape {out.shape}, the image {lum.shape}")
    if default:
        out = out & np.isfinite(lum)
    return out


def _window_size(ref_shape: tuple[int, ...], mov_shape: tuple[int, ...], gsd: float | None) -> int | None:
    """Tie-point window side: 256 px on large images down to 32 on small ones; None below 64 px."""
    side = min(*ref_shape, *mov_shape)
    if side < 64:
        return None
    size = 256 if side >= 2048 else 128 if side >= 512 else 64 if side >= 192 else 32
    if gsd is not None and math.isfinite(gsd) and gsd > 0:
        wanted = 2 ** math.ceil(math.log2(max(MIN_WINDOW_GROUND_M / gsd, 1.0)))
        size = max(size, min(wanted, 256, 2 ** int(math.log2(side // 2))))
    return size


def _coarse_factor(shape: tuple[int, ...]) -> int:
    """Power of two that brings the longer side to at most COARSE_SIDE_PX, keeping 256 px on the shorter."""
    factor = 1
    while max(shape) / factor > COARSE_SIDE_PX and min(shape) / (2 * factor) >= 256:
        factor *= 2
    return factor


def _padded(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    out = np.zeros(shape, bool)
    out[: mask.shape[0], : mask.shape[1]] = mask
    return out


def _coverage(
    data_ref: np.ndarray, data_mov: np.ndarray, clear_ref: np.ndarray, clear_mov: np.ndarray, min_px: int
) -> str | None:
    """``no-overlap`` or ``cloud`` when the pair cannot be matched for lack of common clear data.

    Overlap is taken on the common pixel grid (the misregistration being small against the image).
    Cloud is judged against the footprints with their holes filled, so clouds that a caller folded
    into the valid masks still count as cloud where the data surrounds them.
    """
    shape = (max(data_ref.shape[0], data_mov.shape[0]), max(data_ref.shape[1], data_mov.shape[1]))
    overlap = _padded(data_ref, shape) & _padded(data_mov, shape)
    if overlap.sum() < min_px:
        return "no-overlap"
    clear = _padded(clear_ref, shape) & _padded(clear_mov, shape)
    step = max(1, int(math.sqrt(overlap.size / 1e6)))
    footprint = ndimage.binary_fill_holes(_padded(data_ref, shape)[::step, ::step]) & ndimage.binary_fill_holes(
        _padded(data_mov, shape)[::step, ::step]
    )
    if clear.sum() < min_px or clear[::step, ::step].sum() < MIN_CLEAR_SHARE * footprint.sum():
        return "cloud"
    return None


def _textured_windows(ref: Level, mov: Level, origins: list[tuple[int, int]], size: int) -> int:
    """Windows (at most 128 px of each, at the same place in both) with data and texture in both images.

    The place is the same on both grids: the shift is not known yet, but it is small against a
    window, and texture does not move that fast.
    """
    part = min(size, 128)
    offset = (size - part) // 2
    count = 0
    for x0, y0 in origins:
        rows, cols = slice(y0 + offset, y0 + offset + part), slice(x0 + offset, x0 + offset + part)
        window_ref, window_mov = ref.lum[rows, cols], mov.lum[rows, cols]
        if window_mov.shape != window_ref.shape:
            continue
        if min(ref.valid[rows, cols].mean(), mov.valid[rows, cols].mean()) < MIN_WINDOW_VALID:
            continue
        if min(texture(window_ref, ref.stats), texture(window_mov, mov.stats)) >= MIN_TEXTURE:
            count += 1
    return count


def _refined_on_level(ref: Level, mov: Level, kind: Representation, matrix: np.ndarray) -> np.ndarray:
    """MATRIX refined by one grid of tie points on a coarse level (unchanged if too few match)."""
    size = 128 if min(ref.lum.shape) >= 512 else 64
    origins = window_origins(ref.lum.shape, size, COARSE_WINDOWS_PER_AXIS)
    measured = measure(ref, mov, kind, _matrix_map(matrix), origins, size)
    if measured.count < MIN_TIE_POINTS:
        return matrix
    return fit_model(measured.reference, measured.moving, ref.lum.shape, separation=size, allow_field=False).matrix


def _to_full(matrix: np.ndarray, factor: int) -> np.ndarray:
    """A coarse-level affine MATRIX in full-resolution pixels (coarse centre i is full factor·i + (factor-1)/2)."""
    offset = (factor - 1) / 2
    scale = np.array([[factor, 0.0, offset], [0.0, factor, offset], [0.0, 0.0, 1.0]])
    inverse = np.linalg.inv(scale)
    full: np.ndarray = (scale @ np.vstack([matrix, [0.0, 0.0, 1.0]]) @ inverse)[:2]
    return full


def _matrix_map(matrix: np.ndarray) -> PixelMap:
    def mapping(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return apply_matrix(matrix, x, y)

    return mapping


def _iterate(
    ref: Level,
    mov: Level,
    kind: Representation,
    matrix: np.ndarray,
    origins: list[tuple[int, int]],
    size: int,
) -> tuple[Measured, Fit | None]:
    """Measure and refit at full resolution until the model's shape settles; the last tie points and fit.

    Only the model's linear part (rotation, scale, shear) changes what a window sees: the windows
    are cut out at whole pixels, so the translation only decides where. Measuring again is
    therefore worth it only when the linear part moved a window's corners by CONVERGED_PX or more.
    """
    fit: Fit | None = None
    for number in range(MAX_PASSES):
        measured = measure(ref, mov, kind, _matrix_map(matrix), origins, size)
        if measured.count < MIN_TIE_POINTS:
            return measured, None
        fit = fit_model(measured.reference, measured.moving, ref.lum.shape, separation=size, allow_field=False)
        reshaped = float(np.abs(fit.matrix[:, :2] - matrix[:, :2]).sum(axis=1).max()) * size / 2
        log.debug(
            "pass %d: %d tie points, %s, windows reshaped %.3f px", number + 1, measured.count, fit.model, reshaped
        )
        matrix = fit.matrix
        if reshaped < CONVERGED_PX:
            break
    return measured, fit


def _failed(reason: str, kind: Representation, **extra: Any) -> Registration:
    log.debug("registration failed: %s", reason)
    return Registration("failed", reason, "shift", None, None, 0, None, representation=kind, **extra)


def _result(
    measured: Measured,
    fit: Fit | None,
    kind: Representation,
    global_px: tuple[float, float],
    peak: float,
    shape: tuple[int, int],
) -> Registration:
    """The registration from the final tie points and fit, or ``low-confidence`` if they do not back it."""
    extra: dict[str, Any] = {"global_shift_px": global_px, "global_peak": peak}
    if fit is None:
        return _failed("low-confidence", kind, points=_points(measured, None), **extra)
    points = _points(measured, fit.inliers)
    inliers = int(fit.inliers.sum())
    standard_error = fit.rmse / math.sqrt(max(inliers, 1))
    bunched = spread(measured.reference[fit.inliers], shape) < MIN_AFFINE_SPREAD
    if (
        inliers < MIN_TIE_POINTS
        or inliers < MIN_INLIER_SHARE * measured.count
        or fit.rmse > MAX_RESIDUAL_PX
        or standard_error > MAX_STANDARD_ERROR_PX
        or (bunched and fit.rmse > MAX_BUNCHED_RESIDUAL_PX)
    ):
        log.debug("%d of %d tie points agree, RMSE %.3f px: low confidence", inliers, measured.count, fit.rmse)
        return Registration(
            "failed", "low-confidence", "shift", None, None, inliers, fit.rmse, points, representation=kind, **extra
        )
    (a, b, c), (d, e, f) = fit.matrix
    if fit.model == "shift":
        shift = (float(c), float(f))
    elif fit.model == "affine":
        rows, cols = shape
        cx, cy = apply_matrix(fit.matrix, np.array((cols - 1) / 2), np.array((rows - 1) / 2))
        shift = (float(cx) - (cols - 1) / 2, float(cy) - (rows - 1) / 2)
    else:
        moved = fit.map(points.reference[points.inlier, 0], points.reference[points.inlier, 1])
        shift = (
            float(np.median(moved[0] - points.reference[points.inlier, 0])),
            float(np.median(moved[1] - points.reference[points.inlier, 1])),
        )
    return Registration(
        "ok",
        None,
        fit.model,
        shift,
        (float(a), float(b), float(c), float(d), float(e), float(f)),
        inliers,
        fit.rmse,
        points,
        fit.field,
        kind,
        **extra,
    )


def _points(measured: Measured, inliers: np.ndarray | None) -> TiePoints:
    flags = np.zeros(measured.count, bool) if inliers is None else inliers
    return TiePoints(measured.reference, measured.moving, measured.quality, flags)
