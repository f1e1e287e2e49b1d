"""``sitewatch detect IMAGE -o OUT.txt|OUT.geojson``: the vehicle detection contract of DESIGN.md.

The detector comes from the registry (:mod:`sitewatch.detect.base`: ``auto`` is the learned one
where its model is installed, else the classic baseline) and runs through the sliced runner
(:mod:`sitewatch.detect.sliced`), which reads the image window by window: any size, bounded memory.

Nothing here imports numpy, OpenCV or ONNX Runtime at import time, so ``sitewatch --help`` stays
fast; ``sitewatch detect --help`` imports the detector modules (not ONNX Runtime: a learned detector
only looks for its model file) to list what the installed detectors find.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand

from sitewatch.cli.common import JsonOption, print_json

if TYPE_CHECKING:
    from sitewatch.detect.boxes import Detection
    from sitewatch.io.raster import Georef

#: ``--detector``'s default: the registry chooses. The same string as ``sitewatch.detect.base.AUTO``,
#: not imported from there because that module imports numpy and shapely.
AUTO = "auto"
SUMMARY = "Find vehicles in IMAGE as oriented boxes."
DETECTOR_HELP = (
    f"Object detector: {AUTO} (the learned one where its model is installed, else classic), "
    "or a detector named above (learned, classic)."
)


def installed_help(models: Path | None = None) -> str:
    """What the installed detectors report: the classes, then each registered detector.

    Imports the detector modules (numpy, OpenCV, shapely), never ONNX Runtime.
    """
    from sitewatch.detect import base
    from sitewatch.errors import SitewatchError

    classes: list[str] = []
    detectors: list[str] = []
    for name in base.names():
        try:
            detector = base.get(name, models)
        except SitewatchError:
            detectors.append(f"{name} (not installed)")
            continue
        classes += [c for c in detector.classes if c not in classes]
        detectors.append(f"{name} ({', '.join(detector.classes)})")
    return (
        f"Classes the installed detectors report: {', '.join(classes) or 'none'}. "
        f"Detectors, preferred first: {'; '.join(detectors)}."
    )


class DetectCommand(TyperCommand):
    """The ``detect`` command: its help lists the installed detectors' classes, worked out only when
    the help is shown (building the CLI for any other command imports no detector)."""

    _base_help: str | None = None
    _full_help: str | None = None

    @property
    def help(self) -> str | None:
        """The command's own help, then :func:`installed_help` (computed once, on first use)."""
        if self._full_help is None:
            self._full_help = f"{self._base_help or SUMMARY}\n\n{installed_help()}"
        return self._full_help

    @help.setter
    def help(self, value: str | None) -> None:
        self._base_help = value
        self._full_help = None


def register(app: typer.Typer) -> None:
    """Add the ``detect`` command to APP."""
    app.command("detect", cls=DetectCommand, short_help=SUMMARY)(detect)


def detect(
    image: Annotated[Path, typer.Argument(help="Image: a raster file (GeoTIFF, PNG, JPEG) of any size.")],
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", help="OUT.txt (DOTA format with score) or OUT.geojson (WGS84, georeferenced input)."
        ),
    ],
    gsd: Annotated[
        float | None, typer.Option("--gsd", help="Metres per pixel, for images without a georeference.")
    ] = None,
    min_score: Annotated[
        float | None,
        typer.Option("--min-score", help="Write detections with score >= S [default: the detector's operating score]."),
    ] = None,
    detector: Annotated[str, typer.Option("--detector", metavar="NAME", help=DETECTOR_HELP)] = AUTO,
    models: Annotated[
        Path | None,
        typer.Option("--models", metavar="DIR", help="Folder to load model files from (evaluation).", hidden=True),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Find vehicles in IMAGE as oriented boxes (DOTA classes, plus container where a model has it)."""
    from sitewatch.detect import base, sliced
    from sitewatch.errors import GeoreferenceError, InputError
    from sitewatch.io.files import atomic_path
    from sitewatch.io.raster import georef_of, gsd_of, open_raster

    start = time.perf_counter()
    suffix = output.suffix.lower()
    if suffix not in (".txt", ".geojson", ".json"):
        raise InputError(output, "output must end in .txt or .geojson")
    if models is not None and not models.is_dir():
        raise InputError(models, "--models must be a folder of model files")
    chosen = base.get(detector, models)
    with open_raster(image) as src:
        georef = georef_of(src, image)
        width, height = src.width, src.height
    if georef is not None:
        gsd_m = gsd_of(georef, width, height)
    elif gsd is not None:
        if not gsd > 0:
            raise InputError(image, f"--gsd must be positive, got {gsd}")
        gsd_m = gsd
    else:
        raise GeoreferenceError(image, "no georeference, so the GSD is unknown; give --gsd METRES")
    if suffix != ".txt" and georef is None:
        raise GeoreferenceError(image, "GeoJSON output needs a georeferenced image; write OUT.txt instead")

    result = sliced.detect_file(image, gsd_m, chosen)
    threshold = chosen.operating_score() if min_score is None else min_score
    found = [d for d in result.detections if d.score >= threshold]
    if suffix == ".txt":
        text = "".join(
            " ".join(f"{v:.1f}" for xy in d.corners for v in xy) + f" {d.cls} {d.score:.4f}\n" for d in found
        )
    else:
        assert georef is not None
        text = json.dumps(_geojson(found, georef)) + "\n"
    with atomic_path(output) as tmp:
        tmp.write_text(text, encoding="utf-8")

    counts = _counts(found, result.classes)
    summary: dict[str, Any] = {
        "gsd_m": round(gsd_m, 4),
        "resolvable": result.resolvable,
        "counts": counts,
        "seconds": round(time.perf_counter() - start, 3),
        "detector": chosen.name,
    }
    if not result.resolvable:
        summary["reason"] = result.reason
    if as_json:
        print_json(summary)
    elif not result.resolvable:
        typer.echo(f"{output}: empty ({result.reason})")
    else:
        total = sum(counts.values())
        typer.echo(
            f"{output}: {total} vehicles ({counts}) at {gsd_m:.2f} m by {chosen.name}, {summary['seconds']:.2f} s"
        )


def _counts(found: Sequence[Detection], classes: Sequence[str]) -> dict[str, int]:
    """Written detections per class: every class the detector reports, zero included."""
    counts = dict.fromkeys(classes, 0)
    for d in found:
        counts[d.cls] = counts.get(d.cls, 0) + 1
    return counts


def _geojson(found: Sequence[Detection], georef: Georef) -> dict[str, Any]:
    """FOUND as WGS84 polygons. Box corners count pixel centres as whole numbers, the transform
    pixel corners, hence the half pixel."""
    from pyproj import Transformer

    to_wgs84 = Transformer.from_crs(georef.crs, "EPSG:4326", always_xy=True)
    features = []
    for d in found:
        ring = [georef.transform @ (x + 0.5, y + 0.5) for x, y in d.corners]
        ring.append(ring[0])
        xs, ys = to_wgs84.transform([p[0] for p in ring], [p[1] for p in ring])
        coords = [[round(float(x), 8), round(float(y), 8)] for x, y in zip(xs, ys, strict=True)]
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [coords]},
                "properties": {"class": d.cls, "score": d.score},
            }
        )
    return {"type": "FeatureCollection", "features": features}
