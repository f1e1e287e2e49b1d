"""Colour names judged in CIELAB / LCh, robust to illumination, haze and colour cast.

An analyst's "bright red" is a perceptual judgement, so it is made in CIELAB (``skimage.color``),
where distances and hue angles follow perception, not in the sensor's RGB. Three steps make the
judgement hold across dates:

1. **Radiometry.** The caller puts the date on the reference's radiometry first (the per-band line
   the alignment stage recorded; see :func:`sitewatch.detect.find.search`).
2. **Haze and illumination.** Haze adds light (I = t·J + (1 - t)·A) and the sun's height scales it
   (I = g·J): both are per-band affine maps, so :func:`stretch` maps each band's 1st and 99th
   percentile over the clear pixels to 0 and 1, which undoes them (and a uniform colour cast).
3. **Local background.** What is left of uneven haze and tinted ground is taken out by judging
   chroma and hue *relative to the local background* (the median colour over a window several
   object lengths wide, :func:`local_background`): a red tarp is redder than the ground around it, even
   where thin haze has washed both out.

Ranges (CIELAB hue angle h of the difference (Δa*, Δb*) from the background, in degrees; C* its
length; L* absolute lightness, ΔL* lightness above the background):

=========  ==============  ===========================  =================================
name       hue h (°)       chroma                       lightness
=========  ==============  ===========================  =================================
red        345 – 48        ΔC ≥ 25, own C* ≥ 12          any
orange     48 – 80         ΔC ≥ 25, own C* ≥ 12          any
yellow     80 – 110        ΔC ≥ 25, own C* ≥ 12          any
green      110 – 190       ΔC ≥ 20, own C* ≥ 10          any
blue       190 – 315       ΔC ≥ 20, own C* ≥ 10          any
white      —               own C* ≤ 15                   L* ≥ 75 and ΔL* ≥ +8
black      —               own C* ≤ 15                   L* ≤ 30 and ΔL* ≤ -10 ("dark" too)
grey       —               own C* ≤ 10                   30 < L* < 75 and abs(ΔL*) ≥ 8
=========  ==============  ===========================  =================================

Hue bounds follow CIELAB's own angles (sRGB red is at 40°, orange 73°, yellow 103°, green 136°,
blue 306°), not the HSV wheel. The "own C*" floor keeps a neutral object on tinted ground (a white
trailer on sand is bluer than the sand) from reading as a colour. Match strength is 0 outside a
range and grows with contrast: ΔC / 80 for colours, abs(ΔL*) / 30 for the neutrals (1 and above
is a full match: a saturated paint or tarp on neutral ground is ΔC 80-100, a weathered one 40-55).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray
from skimage.color import rgb2lab

from sitewatch.errors import UnknownName

Floats = NDArray[np.float32]
Mask = NDArray[np.bool_]

#: Chroma difference (CIELAB units) at which a colour match is full strength.
FULL_CHROMA = 80.0
#: Lightness difference at which a white, black or grey match is full strength.
FULL_CONTRAST = 30.0
#: Percentiles of each band mapped to 0 and 1 before conversion (haze and illumination removal).
STRETCH_PERCENTILES = (1.0, 99.0)


@dataclass(frozen=True)
class ColourRange:
    """One colour name's region of LCh, relative to the local background (module docstring)."""

    name: str
    hue: tuple[float, float] | None = None  # degrees, from first to second going anticlockwise
    min_chroma: float = 0.0  # ΔC against the background (colours)
    min_own_chroma: float = 0.0  # C* of the object itself (colours)
    max_own_chroma: float = 100.0  # C* of the object itself (neutrals)
    lightness: tuple[float, float] = (0.0, 100.0)  # absolute L*
    contrast: float = 0.0  # signed ΔL* against the background: > 0 lighter, < 0 darker, 0 either way
    min_contrast: float = 0.0  # abs(ΔL*) at least this (neutrals)

    @property
    def chromatic(self) -> bool:
        """Whether the name is a hue (red, blue, ...) rather than a neutral (white, black, grey)."""
        return self.hue is not None


COLOURS: dict[str, ColourRange] = {
    c.name: c
    for c in (
        ColourRange("red", hue=(345.0, 48.0), min_chroma=25.0, min_own_chroma=12.0),
        ColourRange("orange", hue=(48.0, 80.0), min_chroma=25.0, min_own_chroma=12.0),
        ColourRange("yellow", hue=(80.0, 110.0), min_chroma=25.0, min_own_chroma=12.0),
        ColourRange("green", hue=(110.0, 190.0), min_chroma=20.0, min_own_chroma=10.0),
        ColourRange("blue", hue=(190.0, 315.0), min_chroma=20.0, min_own_chroma=10.0),
        ColourRange("white", max_own_chroma=15.0, lightness=(75.0, 100.0), contrast=8.0, min_contrast=8.0),
        ColourRange("black", max_own_chroma=15.0, lightness=(0.0, 30.0), contrast=-10.0, min_contrast=10.0),
        ColourRange("grey", max_own_chroma=10.0, lightness=(30.0, 75.0), min_contrast=8.0),
    )
}
#: Other words analysts use for the same ranges.
ALIASES: dict[str, str] = {"dark": "black", "gray": "grey"}


def colour_range(name: str) -> ColourRange:
    """The range of colour NAME (case-insensitive; aliases allowed).

    Raises:
        UnknownName: If the name is not known; the message lists those that are.
    """
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in COLOURS:
        known = ", ".join([*COLOURS, *ALIASES])
        raise UnknownName(f"unknown colour {name!r}; known colours: {known}")
    return COLOURS[key]


def stretch(rgb: Floats, valid: Mask) -> Floats:
    """RGB ``(3, rows, cols)`` in any units to ``(rows, cols, 3)``, each band's 1st and 99th percentile
    over VALID pixels mapped to 0 and 1 (undoes haze, illumination and colour cast). Not clipped:
    edge pixels stay linear mixes of object and ground (:func:`to_lab` clips)."""
    out = np.empty((*rgb.shape[1:], 3), np.float32)
    for band, values in enumerate(rgb):
        low, high = (0.0, 1.0)
        if valid.any():
            low, high = (float(v) for v in np.percentile(values[valid], STRETCH_PERCENTILES))
        out[..., band] = (values - low) / max(high - low, 1e-6)
    return out


def to_lab(stretched: Floats) -> Floats:
    """Stretched RGB ``(..., 3)`` (treated as sRGB, clipped to 0..1) to CIELAB."""
    lab: Floats = rgb2lab(np.clip(stretched, 0.0, 1.0)).astype(np.float32)
    return lab


def local_background(stretched: Floats, window_px: int) -> Floats:
    """The median of stretched RGB ``(rows, cols, 3)`` over a square window about WINDOW_PX wide
    (odd, at least 3) around each pixel: the ground's colour, as an object smaller than half the
    window does not move it. OpenCV's constant-time 8-bit median keeps large windows cheap."""
    size = max(3, window_px | 1)
    as_bytes = np.clip(np.rint(stretched * 255.0), 0, 255).astype(np.uint8)
    median = np.stack([cv2.medianBlur(np.ascontiguousarray(as_bytes[..., k]), size) for k in range(3)], axis=-1)
    background: Floats = (median.astype(np.float32) / 255.0).astype(np.float32)
    return background


def match_strength(lab: Floats, background: Floats, colour: ColourRange) -> Floats:
    """Per pixel, how strongly it is COLOUR against its BACKGROUND: 0 outside the range, else its
    contrast in units of a full match (may exceed 1; callers cap it where they need a share)."""
    lightness, a, b = lab[..., 0], lab[..., 1], lab[..., 2]
    own_chroma = np.hypot(a, b)
    delta_l = lightness - background[..., 0]
    if colour.hue is not None:
        da, db = a - background[..., 1], b - background[..., 2]
        chroma = np.hypot(da, db)
        hue = np.degrees(np.arctan2(db, da)) % 360.0
        inside = _in_hue(hue, colour.hue) & (chroma >= colour.min_chroma) & (own_chroma >= colour.min_own_chroma)
        strength = chroma / FULL_CHROMA
    else:
        low, high = colour.lightness
        inside = (own_chroma <= colour.max_own_chroma) & (lightness >= low) & (lightness <= high)
        inside &= np.abs(delta_l) >= colour.min_contrast
        if colour.contrast:
            inside &= np.sign(delta_l) == np.sign(colour.contrast)
        strength = np.abs(delta_l) / FULL_CONTRAST
    result: Floats = np.where(inside, strength, 0.0).astype(np.float32)
    return result


def name_of(lab: tuple[float, float, float], background: tuple[float, float, float]) -> str | None:
    """The colour name that describes LAB best against BACKGROUND (strongest match), or None."""
    pixel = np.asarray(lab, np.float32).reshape(1, 1, 3)
    ground = np.asarray(background, np.float32).reshape(1, 1, 3)
    strengths = {name: float(match_strength(pixel, ground, c)[0, 0]) for name, c in COLOURS.items()}
    best = max(strengths, key=lambda n: strengths[n])
    return best if strengths[best] > 0 else None


def _in_hue(hue: Floats, bounds: tuple[float, float]) -> Mask:
    """Hue angles within BOUNDS, going anticlockwise from the first to the second (wraps past 360°)."""
    start, end = bounds
    inside: Mask = (hue >= start) & (hue < end) if start <= end else (hue >= start) | (hue < end)
    return inside
