"""``sitewatch detect IMAGE -o OUT.txt|OUT.geojson``: the vehicle detection contract of DESIGN.md."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from sitewatch.cli.common import JsonOption, print_json

CLASSES_HELP = "Classes: small-vehicle, large-vehicle (classic baseline detector; no container model installed)."


def register(app: typer.Typer) -> None:
    """Add the ``detect`` command to APP."""
    app.command("detect", help=f"Find vehicles in IMAGE as oriented boxes. {CLASSES_HELP}")(detect)


def detect(
    image: Annotated[Path, typer.Argument(help="Image: a raster file (GeoTIFF, PNG, JPEG).")],
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", help="OUT.txt (DOTA format with score) or OUT.geojson (WGS84, georeferenced input)."
        ),
    ],
    gsd: Annotated[
        float | None, typer.Option("--gsd", help="Metres per pixel, for images without a georeference.")
    ] = None,
    min_score: Annotated[float, typer.Option("--min-score", help="Write detections with score >= S.")] = 0.3,
    as_json: JsonOption = False,
) -> None:
    """Find vehicles in IMAGE as oriented boxes."""
    from sitewatch.detect.vehicles import CLASSES, MAX_GSD_M, detect_vehicles, resolvable
    from sitewatch.errors import GeoreferenceError, InputError
    from sitewatch.io.files import atomic_path
    from sitewatch.io.raster import gsd_of, read_array

    start = time.perf_counter()
    suffix = output.suffix.lower()
    if suffix not in (".txt", ".geojson", ".json"):
        raise InputError(output, "output must end in .txt or .geojson")
    data, georef = read_array(image)
    if georef is not None:
        gsd_m = gsd_of(georef, data.shape[2], data.shape[1])
    elif gsd is not None:
        if not gsd > 0:
            raise InputError(image, f"--gsd must be positive, got {gsd}")
        gsd_m = gsd
    else:
        raise GeoreferenceError(image, "no georeference, so the GSD is unknown; give --gsd METRES")
    if suffix != ".txt" and georef is None:
        raise GeoreferenceError(image, "GeoJSON output needs a georeferenced image; write OUT.txt instead")

    ok = resolvable(gsd_m)
    found = [d for d in detect_vehicles(data, gsd_m) if d.score >= min_score] if ok else []
    if suffix == ".txt":
        text = "".join(
            " ".join(f"{v:.1f}" for xy in d.corners for v in xy) + f" {d.cls} {d.score:.4f}\n" for d in found
        )
    else:
        assert georef is not None
        text = json.dumps(_geojson(found, georef)) + "\n"
    with atomic_path(output) as tmp:
        tmp.write_text(text, encoding="utf-8")

    counts = {cls: sum(1 for d in found if d.cls == cls) for cls in CLASSES}
    summary: dict[str, Any] = {
        "gsd_m": round(gsd_m, 4),
        "resolvable": ok,
        "counts": counts,
        "seconds": round(time.perf_counter() - start, 3),
    }
    if not ok:
        summary["reason"] = f"GSD {gsd_m:.2f} m is coarser than {MAX_GSD_M} m: vehicles cannot be resolved"
    if as_json:
        print_json(summary)
    elif not ok:
        typer.echo(f"{output}: empty ({summary['reason']})")
    else:
        total = sum(counts.values())
        typer.echo(f"{output}: {total} vehicles ({counts}) at {gsd_m:.2f} m, {summary['seconds']:.2f} s")


def _geojson(found: list[Any], georef: Any) -> dict[str, Any]:
    from pyproj import Transformer

    to_wgs84 = Transformer.from_crs(georef.crs, "EPSG:4326", always_xy=True)
    features = []
    for d in found:
        ring = [georef.transform * xy for xy in d.corners]
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
