"""Sites from bbox, point and GeoJSON; the watchlist round trip; bad outlines refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sitewatch.catalog.models import Zone
from sitewatch.errors import AlreadyExists, GeometryError, NotFound
from sitewatch.grid import SiteGrid
from sitewatch.sites import from_bbox, from_point, import_watchlist, new_site, read_geojson_geometry
from sitewatch.sites.watchlist import export_watchlist
from sitewatch.workspace import Workspace


def test_bbox_site_gets_local_utm_grid() -> None:
    site = new_site("joplin", from_bbox("-94.497,37.066,-94.488,37.074"))
    assert site.epsg == 32615
    assert 700 < site.extent_x < 900 and 800 < site.extent_y < 1000
    assert site.origin_x == int(site.origin_x) and site.base_gsd is None


@pytest.mark.parametrize("text", ["1,2,3", "a,b,c,d", "10,5,5,10", "-200,0,0,1", "0,0,nan,1"])
def test_bad_bbox(text: str) -> None:
    with pytest.raises(GeometryError, match="--bbox"):
        from_bbox(text)


def test_point_radius_area() -> None:
    circle = from_point(12.66, 52.74, 500)
    site = new_site("c", circle)
    assert site.epsg == 32633
    assert 990 <= site.extent_x <= 1003


def test_geojson_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.geojson"
    bad.write_text("{not json")
    with pytest.raises(GeometryError, match=r"bad\.geojson: not valid JSON"):
        read_geojson_geometry(bad)
    line = tmp_path / "line.geojson"
    line.write_text(json.dumps({"type": "LineString", "coordinates": [[0, 0], [1, 1]]}))
    with pytest.raises(GeometryError, match="must be a polygon"):
        read_geojson_geometry(line)
    bowtie = tmp_path / "bowtie.geojson"
    bowtie.write_text(
        json.dumps({"type": "Polygon", "coordinates": [[[0, 0], [0.01, 0.01], [0.01, 0], [0, 0.01], [0, 0]]]})
    )
    with pytest.raises(GeometryError, match="invalid polygon"):
        read_geojson_geometry(bowtie)
    utm = tmp_path / "utm.geojson"
    utm.write_text(
        json.dumps({"type": "Polygon", "coordinates": [[[500000, 0], [500100, 0], [500100, 100], [500000, 0]]]})
    )
    with pytest.raises(GeometryError, match="lon/lat"):
        read_geojson_geometry(utm)


def test_watchlist_round_trip(tmp_path: Path) -> None:
    outline = from_bbox("-94.497,37.066,-94.488,37.074")
    zone = Zone("loading area", from_bbox("-94.495,37.067,-94.490,37.070"))
    site = new_site("joplin", outline, tags=["disaster", "2011"], zones=[zone], gsd=0.5)
    path = tmp_path / "watchlist.geojson"
    path.write_text(json.dumps(export_watchlist([site])))
    (back,) = import_watchlist(path)
    assert back.name == "joplin" and back.tags == ("2011", "disaster")
    assert back.zones[0].name == "loading area" and back.zones[0].geometry.equals(zone.geometry)
    assert back.gsd_pinned and back.base_gsd == 0.5 and back.epsg == site.epsg


def test_zone_outside_site_is_refused() -> None:
    with pytest.raises(GeometryError, match="zone is not inside its site"):
        new_site("s", from_bbox("0,0,0.01,0.01"), zones=[Zone("far", from_bbox("1,1,1.01,1.01"))])


def test_catalog_sites(tmp_path: Path) -> None:
    with Workspace.create(tmp_path / "ws") as ws:
        ws.catalog.add_site(new_site("a", from_bbox("0,0,0.01,0.01"), tags=["x"]))
        with pytest.raises(AlreadyExists):
            ws.catalog.add_site(new_site("a", from_bbox("0,0,0.01,0.01")))
        with pytest.raises(NotFound, match="no site 'b' \\(sites: a\\)"):
            ws.catalog.site("b")
        ws.catalog.add_zone("a", Zone("yard", from_bbox("0.001,0.001,0.002,0.002")))
        assert [z.name for z in ws.catalog.site("a").zones] == ["yard"]
        ws.catalog.remove_site("a")
        assert ws.catalog.sites() == []
        assert ws.catalog.integrity_ok()


def test_grid_levels_nest() -> None:
    site = new_site("g", from_bbox("-94.497,37.066,-94.488,37.074"))
    grid = SiteGrid.of(site, 0.5)
    assert grid.level_for(0.5) == 0 and grid.level_for(0.6) == 0 and grid.level_for(3.0) == 3
    assert grid.level_for(10.0) == 4 and grid.level_for(0.3) == 0  # never finer than the base
    t0, t3 = grid.transform_at(0), grid.transform_at(3)
    assert (t0.c, t0.f) == (t3.c, t3.f) and t3.a == 8 * t0.a
    _rows0, cols0 = grid.shape_at(0)
    _rows3, cols3 = grid.shape_at(3)
    assert cols3 * 8 >= cols0 > (cols3 - 1) * 8
