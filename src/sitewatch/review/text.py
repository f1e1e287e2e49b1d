"""The analyst's words and dates, checked once for annotations, reviews and events.

They are shown in terminals, reports and the web app: control characters (terminal escapes, NULs) are
refused everywhere, and a label is one line. HTML is not refused here; it is escaped where it is shown.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, date, datetime, time

from sitewatch.errors import InputError

MAX_LABEL = 200
MAX_NOTE = 5000
MAX_NAME = 200  # an author's or reviewer's name
_LINE_BREAKS = frozenset("\n\r\t")  # allowed in notes and reasons, never in labels


def _controls(text: str, allowed: frozenset[str] = frozenset()) -> bool:
    return any(unicodedata.category(c) == "Cc" and c not in allowed for c in text)


def check_label(value: str, source: str) -> str:
    """A label stripped of surrounding blanks: 1 to MAX_LABEL characters on one line.

    Raises:
        InputError: If it is empty, too long or holds a control character.
    """
    label = value.strip()
    if not label:
        raise InputError(source, "is empty (a label is needed)")
    if len(label) > MAX_LABEL:
        raise InputError(source, f"is {len(label)} characters long ({MAX_LABEL} at most)")
    if _controls(label):
        raise InputError(source, "holds a control character (a label is one line of text)")
    return label


def check_text(value: str, source: str, limit: int = MAX_NOTE) -> str:
    """A note or reason of at most LIMIT characters; line breaks and tabs are allowed.

    Raises:
        InputError: If it is too long or holds another control character.
    """
    if len(value) > limit:
        raise InputError(source, f"is {len(value)} characters long ({limit} at most)")
    if _controls(value, _LINE_BREAKS):
        raise InputError(source, "holds a control character")
    return value


def check_name(value: str | None, source: str) -> str | None:
    """An author's or reviewer's name, stripped; None where none (or only blanks) is given.

    Raises:
        InputError: If it is too long or holds a control character.
    """
    if value is None or not value.strip():
        return None
    name = value.strip()
    if len(name) > MAX_NAME or _controls(name):
        raise InputError(source, f"{name[:40]!r} is not a usable name (1 to {MAX_NAME} printable characters)")
    return name


def as_utc(when: datetime | date) -> datetime:
    """A day as UTC midnight, a time as timezone-aware UTC (a naive time is taken as UTC, as pystac does)."""
    if not isinstance(when, datetime):
        return datetime(when.year, when.month, when.day, tzinfo=UTC)
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def parse_when(text: str, source: str) -> datetime:
    """A day (``2024-06-12``, UTC midnight) or an ISO 8601 time (without a zone: UTC).

    Raises:
        InputError: If TEXT is neither.
    """
    try:
        return as_utc(datetime.fromisoformat(text.strip()))
    except ValueError as exc:
        raise InputError(source, f"{text[:40]!r} is not a date (YYYY-MM-DD) or an ISO 8601 time") from exc


def describe_when(when: datetime) -> str:
    """A date as people write it: the day alone at UTC midnight (a day was given), else the time in UTC."""
    moment = as_utc(when)
    if moment.time() == time(0):
        return moment.strftime("%Y-%m-%d")
    return moment.strftime("%Y-%m-%d %H:%M UTC")
