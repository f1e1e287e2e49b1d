"""Settings are values passed down, read from the environment once, at the edge (the CLI)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from sitewatch.errors import InputError


@dataclass(frozen=True)
class Limits:
    """Limits checked before any pixel of a hostile file is read."""

    max_pixels: int = 1_600_000_000  # width * height * bands declared by the file
    max_file_bytes: int = 8 * 1024**3
    max_json_bytes: int = 32 * 1024**2  # GeoJSON and STAC documents
    max_download_bytes: int = 4 * 1024**3


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Settings:
    """Everything a stage needs to know about its environment."""

    workspace: Path
    limits: Limits = field(default_factory=Limits)
    allowed_hosts: tuple[str, ...] = ()  # extra hosts remote STAC assets may come from
    threads: int = 1

    @classmethod
    def from_env(cls, workspace: Path) -> Settings:
        """Build settings for WORKSPACE from SITEWATCH_* variables (called by the CLI only)."""
        raw = os.environ.get("SITEWATCH_MAX_PIXELS")
        limits = Limits()
        if raw is not None:
            try:
                limits = Limits(max_pixels=int(raw))
            except ValueError as exc:
                raise InputError("SITEWATCH_MAX_PIXELS", f"not an integer: {raw!r}") from exc
        hosts = tuple(h for h in os.environ.get("SITEWATCH_ALLOWED_HOSTS", "").split(",") if h)
        return cls(workspace=workspace, limits=limits, allowed_hosts=hosts)
