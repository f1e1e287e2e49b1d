"""The workspace and watchlist commands, as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_sitewatch

BBOX = "--bbox=-94.497,37.066,-94.488,37.074"


def _ok(*args: str | Path, workspace: Path | None = None) -> str:
    result = run_sitewatch(*args, workspace=workspace)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _fails(message: str, *args: str | Path, workspace: Path | None = None) -> None:
    result = run_sitewatch(*args, workspace=workspace)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.returncode != 0
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_init_site_zone_list_show_remove(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    info = json.loads(_ok("init", ws, "--json"))
    assert Path(info["catalog"]).is_file() and info["journal"] in ("wal", "delete")
    _fails("already a sitewatch workspace", "init", ws)
    added = json.loads(_ok("site", "add", "Joplin", BBOX, "--tag", "disaster", "--json", workspace=ws))
    assert added["grid"]["epsg"] == 32615 and added["tags"] == ["disaster"]
    _ok("site", "add", "pt", "--point=12.66,52.74", "--radius", "300", workspace=ws)
    _ok("site", "zone", "add", "Joplin", "loading area", "--bbox=-94.495,37.067,-94.490,37.070", workspace=ws)
    _fails("zone is not inside site", "site", "zone", "add", "Joplin", "far", "--bbox=1,1,1.01,1.01", workspace=ws)
    listed = json.loads(_ok("site", "list", "--json", workspace=ws))
    assert [s["name"] for s in listed["sites"]] == ["Joplin", "pt"]
    shown = json.loads(_ok("site", "show", "Joplin", "--json", workspace=ws))
    assert shown["zones"] == ["loading area"] and shown["observations"] == 0
    _ok("site", "remove", "pt", workspace=ws)
    _fails("no site 'pt'", "site", "show", "pt", workspace=ws)


def test_watchlist_export_import(tmp_path: Path) -> None:
    ws, other = tmp_path / "ws", tmp_path / "other"
    _ok("init", ws)
    _ok("init", other)
    _ok("site", "add", "a", BBOX, "--tag", "x", workspace=ws)
    _ok("site", "zone", "add", "a", "yard", "--bbox=-94.495,37.067,-94.490,37.070", workspace=ws)
    out = tmp_path / "watchlist.geojson"
    _ok("site", "export", "-o", out, workspace=ws)
    data = json.loads(out.read_text())
    assert [f["properties"]["kind"] for f in data["features"]] == ["site", "zone"]
    _ok("site", "import", out, workspace=other)
    shown = json.loads(_ok("site", "show", "a", "--json", workspace=other))
    assert shown["zones"] == ["yard"] and shown["tags"] == ["x"]
    _fails("already in the workspace", "site", "import", out, workspace=other)


def test_site_from_geojson_and_bad_geojson(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    _ok("init", ws)
    good = tmp_path / "aoi.geojson"
    ring = [[-94.497, 37.066], [-94.488, 37.066], [-94.488, 37.074], [-94.497, 37.066]]
    good.write_text(
        json.dumps({"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}})
    )
    _ok("site", "add", "tri", "--geojson", good, workspace=ws)
    bad = tmp_path / "bad.geojson"
    bad.write_text('{"type": "FeatureCollection", "features": [{"type": "Feature"}]}')
    _fails("bad.geojson: feature 0 has no geometry", "site", "add", "b", "--geojson", bad, workspace=ws)
    _fails("give exactly one of", "site", "add", "c", workspace=ws)


def test_commands_need_a_workspace(tmp_path: Path) -> None:
    _fails("not a sitewatch workspace", "site", "list", workspace=tmp_path)


def test_help_lists_the_pipeline() -> None:
    out = _ok("--help")
    for command in ("init", "site", "ingest", "change", "analyze", "report", "eval", "demo"):
        assert command in out
