"""Sites and zones: outlines from GeoJSON, bboxes or a point and radius; watchlist import and export."""

from sitewatch.sites.geometry import from_bbox, from_point, read_geojson_geometry
from sitewatch.sites.watchlist import export_watchlist, import_watchlist, new_site

__all__ = [
    "export_watchlist",
    "from_bbox",
    "from_point",
    "import_watchlist",
    "new_site",
    "read_geojson_geometry",
]
