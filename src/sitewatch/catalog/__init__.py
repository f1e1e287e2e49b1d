"""The workspace catalog: schema, migrations and queries, behind one module (SQLite by default)."""

from sitewatch.catalog.db import Catalog, parse_utc, utc_text
from sitewatch.catalog.models import Change, Observation, Scene, Site, Zone

__all__ = ["Catalog", "Change", "Observation", "Scene", "Site", "Zone", "parse_utc", "utc_text"]
