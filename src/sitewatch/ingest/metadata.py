"""What a raster says about itself: acquisition time, provider, sensor, licence (TIFF/GDAL tags)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

from sitewatch.errors import InputError

_TIME_TAGS = (
    "DATETIME",
    "ACQUISITION_DATETIME",
    "ACQUISITIONDATETIME",
    "SENSING_TIME",
    "TIFFTAG_DATETIME",
    "DATE",
)
_PROVIDER_TAGS = ("PROVIDER", "SOURCE", "PRODUCER")
_SENSOR_TAGS = ("SENSOR", "PLATFORM", "SATELLITE")
_LICENCE_TAGS = ("LICENSE", "LICENCE")
_ATTRIBUTION_TAGS = ("ATTRIBUTION", "TIFFTAG_COPYRIGHT", "COPYRIGHT")
_TIFF_TIME = re.compile(r"^(\d{4}):(\d{2}):(\d{2}) (\d{2}):(\d{2}):(\d{2})$")
_ISO_PREFIX = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?")
_COMPACT_TIME = re.compile(r"^(\d{4})(\d{2})(\d{2})(?:T(\d{2})(\d{2})(\d{2}))?$")


def parse_datetime(text: str, source: str = "--datetime") -> datetime:
    """A timezone-aware UTC datetime from ISO 8601, a date, TIFF's ``YYYY:MM:DD HH:MM:SS`` or ``YYYYMMDDTHHMMSS``.

    Times without a zone are taken as UTC (as pystac does).
    """
    value = text.strip()
    tiff = _TIFF_TIME.match(value)
    compact = _COMPACT_TIME.match(value)
    try:
        if tiff:
            year, month, day, hour, minute, second = (int(g) for g in tiff.groups())
            parsed = datetime(year, month, day, hour, minute, second)
        elif compact:
            year, month, day, hour, minute, second = (int(g or 0) for g in compact.groups())
            parsed = datetime(year, month, day, hour, minute, second)
        elif len(value) == 10:
            parsed = datetime.combine(date.fromisoformat(value), datetime.min.time())
        else:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InputError(source, f"not a date or time: {text!r} (use ISO 8601, e.g. 2024-05-01T10:30Z)") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _first(tags: dict[str, str], names: tuple[str, ...]) -> str | None:
    upper = {k.upper(): v for k, v in tags.items()}
    for name in names:
        value = upper.get(name)
        if value and value.strip():
            return value.strip()[:500]
    return None


def acquired_from_tags(tags: dict[str, str], source: str) -> datetime | None:
    """The acquisition time the file's tags state, if any (the leading date-time of a longer text)."""
    text = _first(tags, _TIME_TAGS)
    if text is None:
        return None
    found = _ISO_PREFIX.match(text)
    return parse_datetime(found.group(0) if found else text, f"{source} (time tag)")


def provenance_from_tags(tags: dict[str, str]) -> dict[str, str | None]:
    """Provider, sensor, licence and attribution from the file's tags, where present."""
    return {
        "provider": _first(tags, _PROVIDER_TAGS),
        "sensor": _first(tags, _SENSOR_TAGS),
        "licence": _first(tags, _LICENCE_TAGS),
        "attribution": _first(tags, _ATTRIBUTION_TAGS),
    }
