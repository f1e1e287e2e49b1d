"""One root for every error sitewatch raises on purpose, and typed warnings for users.

Each input error names its source (a file, URL or name) and the problem, so the CLI can print it
as one line: ``SOURCE: PROBLEM``.
"""

from __future__ import annotations

import os


class SitewatchError(Exception):
    """Root of every error sitewatch raises on purpose."""


class InputError(SitewatchError, ValueError):
    """Bad input: a file, URL, name or value that sitewatch refuses, with the reason."""

    def __init__(self, source: str | os.PathLike[str], problem: str) -> None:
        self.source = os.fspath(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")


class RasterRefused(InputError):
    """Not a raster, a driver that is not allowed, too large, corrupt or truncated."""


class GeoreferenceError(InputError):
    """No usable georeference: unknown CRS, no transform and no bounds, rotated grid."""


class NoOverlapError(InputError):
    """Two footprints (scene and site, or two images) do not intersect."""


class StacError(InputError):
    """Malformed STAC, or a STAC API that failed."""


class UnsafeHref(InputError):
    """A link that escapes its catalog, reaches local files or a private address."""


class GeometryError(InputError):
    """Malformed or unusable geometry (GeoJSON, bbox, point and radius)."""


class WorkspaceError(SitewatchError):
    """No workspace where one was expected, or a workspace in a bad state."""


class NotFound(SitewatchError, LookupError):
    """A site, zone, scene or observation that the catalog does not hold."""


class AlreadyExists(SitewatchError):
    """A name that is already taken (site, zone)."""


class UnknownName(SitewatchError, LookupError):
    """A registry has nothing under that name; the message lists what it has."""


class SitewatchWarning(UserWarning):
    """Root of warnings for users: something worth knowing that did not stop the work."""


class GsdEstimatedWarning(SitewatchWarning):
    """The ground sample distance was not in the georeference and was estimated or assumed."""


class SyntheticDataWarning(SitewatchWarning):
    """The imagery is synthetic (demo)."""
