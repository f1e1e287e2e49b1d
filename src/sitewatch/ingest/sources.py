"""What an ingest source resolves to before pixels are read: a local file plus what is known of it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from affine import Affine
from pyproj import CRS


@dataclass(frozen=True)
class SceneSource:
    """One local raster to ingest, with metadata from STAC, the command line or the file itself.

    Fields left ``None`` are filled from the file's own metadata where possible (TIFF tags such as
    DATETIME, SOURCE, ATTRIBUTION), else ingest fails with a clear message (``--datetime``).
    """

    path: Path  # local file (downloaded STAC assets land in a temporary folder first)
    origin: str  # what the user named: a path, STAC item href or URL (kept for provenance)
    acquired: datetime | None = None  # timezone-aware UTC
    provider: str | None = None
    sensor: str | None = None
    licence: str | None = None
    attribution: str | None = None
    gsd: float | None = None  # metres, when the metadata says so
    band_names: tuple[str, ...] = ()
    crs: CRS | None = None  # for plain images: --crs, else world file + --crs
    transform: Affine | None = None  # for plain images: from --bounds
    stac_id: str | None = None
    masks: tuple[tuple[str, Path], ...] = ()  # sensor-provided masks: (kind, local file), e.g. ("scl", ...)
