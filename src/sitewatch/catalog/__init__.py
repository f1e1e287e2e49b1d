"""The workspace catalog: schema, migrations and queries, behind one module (SQLite by default)."""

from sitewatch.catalog.models import Change, Observation, Scene, Site, Zone

__all__ = ["Change", "Observation", "Scene", "Site", "Zone"]
