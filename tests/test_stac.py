"""STAC into scene sources, and every way a hostile STAC document is refused.

Remote cases run against a ThreadingHTTPServer on 127.0.0.1 in a background thread (its host is
passed as user-named, so loopback is allowed for it and nothing else); DNS answers are faked by
patching ``socket.getaddrinfo``. Nothing here touches the internet.
"""

from __future__ import annotations

import functools
import http.server
import json
import re
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pystac
import pytest
from pystac.extensions.eo import Band, EOExtension

import sitewatch.ingest.stac as ingest_stac
from sitewatch.errors import GeometryError, StacError, UnsafeHref
from sitewatch.ingest.stac import (
    CollectionNotReadWarning,
    SkippedItemWarning,
    scenes_from_stac_api,
    scenes_from_stac_file,
    sources_from_stac_api,
    sources_from_stac_file,
    sources_from_stac_url,
)
from sitewatch.io.raster import open_raster
from sitewatch.io.stac import (
    HostPolicy,
    check_url,
    download,
    fetch_json,
    resolve_href,
    safe_file_name,
)
from sitewatch.settings import Limits
from tests.conftest import UTM_GRID, write_tif

LOOPBACK = "127.0.0.1"
REAL_GETADDRINFO = socket.getaddrinfo


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy from the environment would carry loopback requests elsewhere."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


# A loopback HTTP server: files from a folder, plus routes for redirects, JSON and oddities.

Route = Callable[["_Handler"], None]


class _Server(http.server.ThreadingHTTPServer):
    routes: dict[str, Route]
    requests: list[tuple[str, str, dict[str, Any]]]


class _Handler(http.server.SimpleHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        return

    def _route(self) -> Route | None:
        return self.server.routes.get(urlsplit(self.path).path)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        self.server.requests.append(("GET", parts.path, parse_qs(parts.query)))
        route = self._route()
        if route is None:
            super().do_GET()
        else:
            route(self)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        self.server.requests.append(("POST", urlsplit(self.path).path, body))
        route = self._route()
        if route is None:
            self.send_error(405)
        else:
            route(self)


def send(handler: _Handler, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
    handler.send_response(status)
    for name, value in (headers or {"Content-Length": str(len(body))}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


def json_route(document: dict[str, Any]) -> Route:
    return lambda h: send(h, 200, json.dumps(document).encode(), {"Content-Type": "application/json"})


def redirect_route(location: str) -> Route:
    return lambda h: send(h, 302, b"", {"Location": location, "Content-Length": "0"})


class Loopback:
    """A running loopback server serving FOLDER, with extra ROUTES."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.server = _Server((LOOPBACK, 0), functools.partial(_Handler, directory=str(folder)))
        self.server.routes = {}
        self.server.requests = []
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    @property
    def routes(self) -> dict[str, Route]:
        return self.server.routes

    @property
    def requests(self) -> list[tuple[str, str, dict[str, Any]]]:
        return self.server.requests

    def url(self, path: str) -> str:
        return f"http://{LOOPBACK}:{self.server.server_port}/{path.lstrip('/')}"

    @property
    def policy(self) -> HostPolicy:
        return HostPolicy.for_url(self.url("/"))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Loopback]:
    folder = tmp_path / "served"
    folder.mkdir()
    server = Loopback(folder)
    yield server
    server.close()


def fake_dns(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]) -> None:
    """Answer getaddrinfo for the hosts in ANSWERS (each call pops the next address if several)."""

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in answers:
            queue = answers[host]
            address = queue.pop(0) if len(queue) > 1 else queue[0]
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            return [(family, socket.SOCK_STREAM, 6, "", (address, port or 80))]
        return REAL_GETADDRINFO(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


# STAC builders.


def tiny_tif(path: Path, bands: int = 3) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.arange(bands * 8 * 8, dtype=np.uint8).reshape(bands, 8, 8)
    return write_tif(path, data, **UTM_GRID)


WHEN = datetime(2024, 5, 7, 9, 30, tzinfo=UTC)
GEOMETRY = {"type": "Polygon", "coordinates": [[[-93.0, 37.0], [-92.9, 37.0], [-92.9, 37.1], [-93.0, 37.0]]]}
BBOX = [-93.0, 37.0, -92.9, 37.1]


def make_item(
    item_id: str,
    assets: dict[str, pystac.Asset],
    when: datetime | None = WHEN,
    properties: dict[str, Any] | None = None,
) -> pystac.Item:
    item = pystac.Item(item_id, GEOMETRY, BBOX, when, dict(properties or {}))
    for key, asset in assets.items():
        item.add_asset(key, asset)
    if any("eo:bands" in asset.extra_fields for asset in assets.values()):
        EOExtension.add_to(item)
    return item


def image_asset(href: str, roles: tuple[str, ...] = ("data",), bands: tuple[str, ...] = ()) -> pystac.Asset:
    extra = {"eo:bands": [Band.create(name=f"B{i}", common_name=n).to_dict() for i, n in enumerate(bands, 1)]}
    return pystac.Asset(href, media_type=pystac.MediaType.COG, roles=list(roles), extra_fields=extra if bands else None)


def write_json(path: Path, document: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def item_dict(
    item_id: str, assets: dict[str, dict[str, Any]], links: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A minimal STAC 1.0 item written by hand, for hrefs pystac would not let us build."""
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": item_id,
        "geometry": GEOMETRY,
        "bbox": BBOX,
        "properties": {"datetime": "2024-05-07T09:30:00Z"},
        "links": links or [],
        "assets": assets,
    }


def catalog_dict(catalog_id: str, links: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "Catalog", "stac_version": "1.0.0", "id": catalog_id, "description": "test", "links": links}


def tiff(href: str) -> dict[str, Any]:
    return {"href": href, "type": "image/tiff; application=geotiff", "roles": ["data"]}


# Items, collections and catalogs on disk.


def test_item_with_relative_asset_gives_full_metadata(tmp_path: Path) -> None:
    folder = tmp_path / "cat"
    image = tiny_tif(folder / "scene.tif")
    tiny_tif(folder / "scene_scl.tif", bands=1)
    item = make_item(
        "ps-0507",
        {
            "thumbnail": pystac.Asset("./thumb.png", media_type=pystac.MediaType.PNG, roles=["thumbnail"]),
            "analytic": image_asset("./scene.tif", bands=("red", "green", "blue")),
            "scl": pystac.Asset("./scene_scl.tif", media_type=pystac.MediaType.GEOTIFF, roles=["data"]),
            "cloud": pystac.Asset("./missing_cloud.tif", media_type=pystac.MediaType.GEOTIFF, roles=["cloud"]),
        },
        properties={
            "gsd": 3.0,
            "license": "CC-BY-4.0",
            "constellation": "planetscope",
            "platform": "PS2",
            "instruments": ["PS2.SD"],
            "providers": [
                {"name": "Hosting Co", "roles": ["host"]},
                {"name": "Planet Labs", "roles": ["producer", "licensor"]},
            ],
        },
    )
    path = folder / "item.json"
    item.set_self_href(str(path))
    item.save_object(include_self_link=False)

    sources = sources_from_stac_file(path, tmp_path / "dl", None, Limits())

    assert len(sources) == 1
    source = sources[0]
    assert source.path == image.resolve()
    assert source.acquired == WHEN and source.acquired.tzinfo is not None
    assert source.provider == "Planet Labs"
    assert source.licence == "CC-BY-4.0"
    assert source.gsd == 3.0
    assert source.band_names == ("red", "green", "blue")
    assert source.sensor == "PS2 (PS2.SD)"
    assert source.attribution == "Hosting Co, Planet Labs"
    assert source.stac_id == "ps-0507"
    assert source.origin == str(path.resolve())
    assert not (tmp_path / "dl").exists()  # nothing remote, nothing downloaded

    (scene,) = scenes_from_stac_file(path, tmp_path / "dl")
    masks = {mask.key: mask for mask in scene.masks}
    assert set(masks) == {"scl", "cloud"}
    assert masks["scl"].path == (folder / "scene_scl.tif").resolve()
    assert masks["cloud"].path is None  # declared but not on disk
    assert masks["cloud"].roles == ("cloud",)


def test_interval_item_uses_start_datetime_and_citation(tmp_path: Path) -> None:
    tiny_tif(tmp_path / "a.tif")
    item = item_dict("iv", {"image": tiff("a.tif")})
    item["properties"] = {
        "datetime": None,
        "start_datetime": "2024-03-01T10:00:00+02:00",
        "end_datetime": "2024-03-01T10:05:00+02:00",
        "sci:citation": "Doe et al. (2024), Imagery of X.",
    }
    path = write_json(tmp_path / "item.json", item)

    (source,) = sources_from_stac_file(path, tmp_path / "dl")

    assert source.acquired == datetime(2024, 3, 1, 8, 0, tzinfo=UTC)
    assert source.attribution == "Doe et al. (2024), Imagery of X."


def test_collection_walk_takes_licence_and_provider_from_collection(tmp_path: Path) -> None:
    folder = tmp_path / "coll"
    collection = pystac.Collection(
        "site-imagery",
        "test",
        pystac.Extent(pystac.SpatialExtent([BBOX]), pystac.TemporalExtent([[WHEN, None]])),
        license="CC-BY-NC-4.0",
        providers=[pystac.Provider("Maxar", roles=[pystac.ProviderRole.PRODUCER])],
    )
    for n in (1, 2):
        collection.add_item(make_item(f"scene-{n}", {"visual": image_asset(f"./scene-{n}.tif", roles=("visual",))}))
    collection.normalize_hrefs(str(folder))
    collection.make_all_asset_hrefs_relative()
    collection.save(pystac.CatalogType.SELF_CONTAINED)
    for n in (1, 2):
        tiny_tif(folder / f"scene-{n}" / f"scene-{n}.tif")

    sources = sources_from_stac_file(folder / "collection.json", tmp_path / "dl")

    assert sorted(s.stac_id for s in sources if s.stac_id) == ["scene-1", "scene-2"]
    assert {s.licence for s in sources} == {"CC-BY-NC-4.0"}
    assert {s.provider for s in sources} == {"Maxar"}
    assert all(s.path.is_file() and s.path.is_relative_to(folder.resolve()) for s in sources)


def test_catalog_walk_through_nested_catalogs(tmp_path: Path) -> None:
    folder = tmp_path / "root"
    root = pystac.Catalog("root", "test")
    for region in ("north", "south"):
        child = pystac.Catalog(region, "test")
        child.add_item(make_item(f"{region}-1", {"image": image_asset(f"./{region}-1.tif")}))
        root.add_child(child)
    root.normalize_hrefs(str(folder))
    root.make_all_asset_hrefs_relative()
    root.save(pystac.CatalogType.SELF_CONTAINED)
    for region in ("north", "south"):
        tiny_tif(folder / region / f"{region}-1" / f"{region}-1.tif")

    sources = sources_from_stac_file(folder / "catalog.json", tmp_path / "dl")

    assert sorted(s.stac_id for s in sources if s.stac_id) == ["north-1", "south-1"]


def test_band_per_file_item_is_represented_by_its_visual_asset(tmp_path: Path) -> None:
    for name in ("B02", "B03", "TCI"):
        tiny_tif(tmp_path / f"{name}.tif", bands=3 if name == "TCI" else 1)
    item = make_item(
        "s2",
        {
            "blue": image_asset("./B02.tif", bands=("blue",)),
            "green": image_asset("./B03.tif", bands=("green",)),
            "visual": image_asset("./TCI.tif", roles=("visual",), bands=("red", "green", "blue")),
        },
    )
    item.set_self_href(str(tmp_path / "item.json"))
    item.save_object(include_self_link=False)

    (source,) = sources_from_stac_file(tmp_path / "item.json", tmp_path / "dl")

    assert source.path.name == "TCI.tif"


def test_item_without_imagery_is_skipped_with_a_warning(tmp_path: Path) -> None:
    path = write_json(tmp_path / "item.json", item_dict("meta", {"meta": {"href": "m.xml", "type": "application/xml"}}))
    with pytest.warns(SkippedItemWarning, match="no imagery asset"):
        assert sources_from_stac_file(path, tmp_path / "dl") == []


def test_link_cycle_terminates(tmp_path: Path) -> None:
    tiny_tif(tmp_path / "a.tif")
    write_json(tmp_path / "item.json", item_dict("only", {"image": tiff("a.tif")}))
    write_json(
        tmp_path / "a.json",
        catalog_dict("a", [{"rel": "child", "href": "./b.json"}, {"rel": "item", "href": "./item.json"}]),
    )
    write_json(
        tmp_path / "b.json",
        catalog_dict("b", [{"rel": "child", "href": "./a.json"}, {"rel": "item", "href": "item.json"}]),
    )

    sources = sources_from_stac_file(tmp_path / "a.json", tmp_path / "dl")

    assert [s.stac_id for s in sources] == ["only"]


def test_walk_depth_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest_stac, "MAX_DEPTH", 3)
    for n in range(6):
        write_json(tmp_path / f"c{n}.json", catalog_dict(f"c{n}", [{"rel": "child", "href": f"c{n + 1}.json"}]))
    with pytest.raises(StacError, match="nest more than 3 levels"):
        sources_from_stac_file(tmp_path / "c0.json", tmp_path / "dl")


# Malformed documents.


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"type": "Feature", "id": ', "malformed JSON"),
        ("[1, 2]", "JSON top level is a list"),
        ('{"hello": "world"}', "no stac_version"),
        ('{"type": "Catalog", "stac_version": "1.0.0", "id": "x"}', "not a valid STAC"),
        ('{"type": "Feature", "stac_version": "0.9.0", "id": "x"}', "STAC 0.9.0 is not supported"),
        ('{"type": "FeatureCollection", "features": [{"nope": 1}]}', "not a valid STAC"),
    ],
)
def test_malformed_documents_name_the_file(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "broken.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(StacError, match=problem) as caught:
        sources_from_stac_file(path, tmp_path / "dl")
    assert str(caught.value).startswith(str(path.resolve()))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("asset", "problem"),
    [
        ({"href": "a.tif", "type": 42, "roles": ["data"]}, "malformed item 'odd'"),
        ({"href": "a.tif", "type": "image/tiff", "roles": ["data"], "eo:bands": ["red", 7]}, "malformed item 'odd'"),
        ({"href": "", "type": "image/tiff", "roles": ["data"]}, "asset 'image' has no href"),
        ({"href": 5, "type": "image/tiff", "roles": ["data"]}, "not a valid STAC Item"),
    ],
    ids=["media-type", "bands", "empty-href", "number-href"],
)
def test_malformed_item_fields_are_a_stac_error(tmp_path: Path, asset: dict[str, Any], problem: str) -> None:
    tiny_tif(tmp_path / "a.tif")
    path = write_json(tmp_path / "item.json", item_dict("odd", {"image": asset}))
    with pytest.raises(StacError, match=problem) as caught:
        sources_from_stac_file(path, tmp_path / "dl")
    assert caught.value.source == str(path.resolve())


def test_oversized_document_is_refused_before_reading(tmp_path: Path) -> None:
    path = write_json(tmp_path / "item.json", item_dict("big", {"image": tiff("a.tif")}))
    with pytest.raises(StacError, match="over the JSON limit of 100 bytes"):
        sources_from_stac_file(path, tmp_path / "dl", limits=Limits(max_json_bytes=100))


def test_missing_local_asset_is_an_error(tmp_path: Path) -> None:
    path = write_json(tmp_path / "item.json", item_dict("gone", {"image": tiff("gone.tif")}))
    with pytest.raises(StacError, match="'image' of item 'gone' is not an existing file"):
        sources_from_stac_file(path, tmp_path / "dl")


# Hrefs that try to leave the catalog.


@pytest.mark.parametrize("href", ["../../../../../../etc/passwd", "sub/../../outside.tif"])
def test_relative_asset_escaping_the_catalog_is_refused(tmp_path: Path, href: str) -> None:
    tiny_tif(tmp_path / "outside.tif")
    path = write_json(tmp_path / "cat" / "item.json", item_dict("evil", {"image": tiff(href)}))
    with pytest.raises(UnsafeHref, match="outside the catalog folder"):
        sources_from_stac_file(path, tmp_path / "dl")


def test_child_link_escaping_the_catalog_is_refused(tmp_path: Path) -> None:
    write_json(tmp_path / "other" / "catalog.json", catalog_dict("other", []))
    path = write_json(
        tmp_path / "cat" / "catalog.json", catalog_dict("evil", [{"rel": "child", "href": "../other/catalog.json"}])
    )
    with pytest.raises(UnsafeHref, match=r"../other/catalog.json: resolves to .* outside the catalog folder"):
        sources_from_stac_file(path, tmp_path / "dl")


@pytest.mark.parametrize("kind", ["absolute", "file-url"])
def test_absolute_local_path_outside_the_catalog_is_refused(tmp_path: Path, kind: str) -> None:
    outside = tiny_tif(tmp_path / "elsewhere" / "x.tif")
    href = str(outside) if kind == "absolute" else outside.as_uri()
    path = write_json(tmp_path / "cat" / "item.json", item_dict("abs", {"image": tiff(href)}))
    with pytest.raises(UnsafeHref, match="outside the catalog folder"):
        sources_from_stac_file(path, tmp_path / "dl")


def test_absolute_local_path_inside_the_catalog_is_allowed(tmp_path: Path) -> None:
    inside = tiny_tif(tmp_path / "cat" / "data" / "x.tif")
    path = write_json(tmp_path / "cat" / "item.json", item_dict("abs", {"image": tiff(str(inside))}))
    (source,) = sources_from_stac_file(path, tmp_path / "dl")
    assert source.path == inside.resolve()


def test_symlink_out_of_the_catalog_is_refused(tmp_path: Path) -> None:
    outside = tiny_tif(tmp_path / "elsewhere" / "x.tif")
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "link.tif").symlink_to(outside)
    path = write_json(tmp_path / "cat" / "item.json", item_dict("sym", {"image": tiff("link.tif")}))
    with pytest.raises(UnsafeHref, match="outside the catalog folder"):
        sources_from_stac_file(path, tmp_path / "dl")


def test_symlink_loop_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.tif").symlink_to(tmp_path / "b.tif")
    (tmp_path / "b.tif").symlink_to(tmp_path / "a.tif")
    path = write_json(tmp_path / "item.json", item_dict("loop", {"image": tiff("a.tif")}))
    with pytest.raises(UnsafeHref, match="cannot be resolved to a real path"):
        sources_from_stac_file(path, tmp_path / "dl")


def test_collection_link_that_cannot_be_followed_is_a_warning(tmp_path: Path) -> None:
    tiny_tif(tmp_path / "a.tif")
    collection_link = {"rel": "collection", "href": "https://earth-search.example.com/v1/collections/s2"}
    item = item_dict("downloaded", {"image": tiff("a.tif")}, links=[collection_link])
    item["properties"]["license"] = "CC-BY-4.0"
    path = write_json(tmp_path / "item.json", item)
    with pytest.warns(CollectionNotReadWarning, match="host earth-search.example.com is not allowed"):
        (source,) = sources_from_stac_file(path, tmp_path / "dl")
    assert source.licence == "CC-BY-4.0"


def _collection_file(path: Path) -> Path:
    return write_json(
        path,
        {
            "type": "Collection",
            "stac_version": "1.0.0",
            "id": "c",
            "description": "d",
            "license": "CC0-1.0",
            "providers": [{"name": "AWS", "roles": ["host"]}, {"name": "ESA", "roles": ["licensor"]}],
            "extent": {"spatial": {"bbox": [BBOX]}, "temporal": {"interval": [[None, None]]}},
            "links": [],
        },
    )


def test_item_collection_link_gives_licence_and_provider(tmp_path: Path) -> None:
    tiny_tif(tmp_path / "a.tif")
    _collection_file(tmp_path / "collection.json")
    links = [{"rel": "collection", "href": "./collection.json"}]
    path = write_json(tmp_path / "item.json", item_dict("a", {"image": tiff("a.tif")}, links=links))
    (source,) = sources_from_stac_file(path, tmp_path / "dl")
    assert source.licence == "CC0-1.0"
    assert source.provider == "ESA"


def test_collection_outside_the_catalog_folder_is_not_read(tmp_path: Path) -> None:
    tiny_tif(tmp_path / "items" / "a.tif")
    _collection_file(tmp_path / "collection.json")
    links = [{"rel": "collection", "href": "../collection.json"}]
    path = write_json(tmp_path / "items" / "item.json", item_dict("a", {"image": tiff("a.tif")}, links=links))
    with pytest.warns(CollectionNotReadWarning, match="outside the catalog folder"):
        (source,) = sources_from_stac_file(path, tmp_path / "dl")
    assert source.licence is None


@pytest.mark.parametrize("href", ["/vsicurl/http://10.0.0.1/x.tif", "s3://bucket/x.tif", "ftp://host/x.tif"])
def test_other_schemes_and_gdal_paths_are_refused(tmp_path: Path, href: str) -> None:
    path = write_json(tmp_path / "item.json", item_dict("odd", {"image": tiff(href)}))
    with pytest.raises(UnsafeHref, match="not allowed"):
        sources_from_stac_file(path, tmp_path / "dl")


def test_remote_asset_on_a_host_not_allowed_is_refused(tmp_path: Path) -> None:
    path = write_json(tmp_path / "item.json", item_dict("far", {"image": tiff("http://imagery.example.org/x.tif")}))
    with pytest.raises(UnsafeHref, match=r"host imagery.example.org is not allowed \(allowed: none"):
        sources_from_stac_file(path, tmp_path / "dl")


# Remote documents.


@pytest.mark.parametrize(
    ("href", "problem"),
    [
        ("file:///etc/passwd", "may not point to local files"),
        ("/etc/passwd", "may not name a local path"),
        ("http://elsewhere.example.org/x.tif", "host elsewhere.example.org is not allowed"),
    ],
)
def test_remote_document_may_not_reach_local_files_or_other_hosts(
    served: Loopback, tmp_path: Path, href: str, problem: str
) -> None:
    write_json(served.folder / "item.json", item_dict("remote", {"image": tiff(href)}))
    with pytest.raises(UnsafeHref, match=problem):
        sources_from_stac_url(served.url("item.json"), tmp_path / "dl", served.policy)
    assert not (tmp_path / "dl").exists()


def test_remote_catalog_child_link_to_a_local_file_is_refused(served: Loopback, tmp_path: Path) -> None:
    write_json(served.folder / "catalog.json", catalog_dict("r", [{"rel": "child", "href": "file:///etc/passwd"}]))
    with pytest.raises(UnsafeHref, match="may not point to local files"):
        sources_from_stac_url(served.url("catalog.json"), tmp_path / "dl", served.policy)


def test_local_catalog_may_link_to_an_allowed_remote_catalog_but_not_back(served: Loopback, tmp_path: Path) -> None:
    tiny_tif(tmp_path / "cat" / "mine.tif")
    write_json(served.folder / "item.json", item_dict("r", {"image": tiff(str(tmp_path / "cat" / "mine.tif"))}))
    path = write_json(
        tmp_path / "cat" / "catalog.json", catalog_dict("local", [{"rel": "item", "href": served.url("item.json")}])
    )
    with pytest.raises(UnsafeHref, match="a remote document may not name a local path"):
        sources_from_stac_file(path, tmp_path / "dl", served.policy)


def test_remote_item_assets_are_downloaded(served: Loopback, tmp_path: Path) -> None:
    tiny_tif(served.folder / "img" / "scene.tif")
    tiny_tif(served.folder / "img" / "udm2.tif", bands=1)
    item = item_dict(
        "remote-ok",
        {
            "image": tiff("img/scene.tif"),
            "udm2": {"href": "img/udm2.tif", "type": "image/tiff", "roles": ["data"]},
        },
    )
    write_json(served.folder / "item.json", item)

    (scene,) = ingest_stac.scenes_from_stac_url(
        served.url("item.json"), tmp_path / "dl", served.policy, download_masks=True
    )

    assert scene.source.path.parent == tmp_path / "dl"
    assert scene.source.path.name.endswith("remote-ok_image.tif")
    assert scene.source.path.read_bytes() == (served.folder / "img" / "scene.tif").read_bytes()
    with open_raster(scene.source.path) as src:  # the lead's reader takes it as it is
        assert src.count == 3
    assert scene.source.origin == served.url("item.json")
    (mask,) = scene.masks
    assert mask.key == "udm2" and mask.href == served.url("img/udm2.tif")
    assert mask.path is not None and mask.path.is_file()


def test_failed_download_removes_what_the_call_downloaded(served: Loopback, tmp_path: Path) -> None:
    tiny_tif(served.folder / "ok.tif")
    features = [item_dict("ok", {"image": tiff("ok.tif")}), item_dict("gone", {"image": tiff("gone.tif")})]
    write_json(served.folder / "items.json", {"type": "FeatureCollection", "features": features})
    with pytest.raises(StacError, match="HTTP 404"):
        sources_from_stac_url(served.url("items.json"), tmp_path / "dl", served.policy)
    assert list((tmp_path / "dl").iterdir()) == []


# URL checks, redirects and downloads.


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("100.64.0.1", "non-public"),
        ("240.0.0.1", "reserved"),
        ("::1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("fd00::1", "private"),
    ],
)
def test_check_url_refuses_hosts_resolving_to_non_public_addresses(
    monkeypatch: pytest.MonkeyPatch, address: str, kind: str
) -> None:
    fake_dns(monkeypatch, {"tiles.example.com": [address]})
    policy = HostPolicy(allowed_hosts=("tiles.example.com",))
    with pytest.raises(UnsafeHref, match=re.escape(f"resolves to {address}, a {kind} address")):
        check_url("https://tiles.example.com/x.tif", policy)


def test_check_url_allows_public_hosts_and_private_hosts_the_user_named(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dns(monkeypatch, {"tiles.example.com": ["93.184.216.34"], "stac.home.arpa": ["10.0.0.5"]})
    check_url("https://tiles.example.com/x.tif", HostPolicy(allowed_hosts=(".example.com",)))
    named = HostPolicy.for_url("http://stac.home.arpa/api")
    check_url("http://stac.home.arpa/api/search", named)
    with pytest.raises(UnsafeHref, match="private address"):
        check_url("http://stac.home.arpa/api", HostPolicy.for_url("http://stac.home.arpa/", private_named=False))


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("file:///etc/passwd", "scheme 'file' is not allowed"),
        ("gopher://host/x", "scheme 'gopher' is not allowed"),
        ("http://user:secret@tiles.example.com/x", "credentials"),
        ("http://tiles.example.com/a b", "spaces or control characters"),
        ("http:///nohost", "no host"),
        ("http://other.example.net/x", "host other.example.net is not allowed"),
    ],
)
def test_check_url_refuses_malformed_and_foreign_urls(url: str, problem: str) -> None:
    with pytest.raises(UnsafeHref, match=problem):
        check_url(url, HostPolicy(allowed_hosts=("tiles.example.com",)))


def test_redirect_to_a_private_address_is_refused(
    served: Loopback, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_dns(monkeypatch, {"internal.example.com": ["10.0.0.7"]})
    served.routes["/hop.tif"] = redirect_route("http://internal.example.com/secret.tif")
    policy = HostPolicy(("internal.example.com",), (LOOPBACK,))
    with pytest.raises(UnsafeHref, match=re.escape("internal.example.com resolves to 10.0.0.7, a private address")):
        download(served.url("hop.tif"), tmp_path / "dl", policy)
    assert list((tmp_path / "dl").iterdir()) == []


def test_redirect_to_loopback_by_another_name_is_refused(served: Loopback, tmp_path: Path) -> None:
    port = served.server.server_port
    served.routes["/hop.json"] = redirect_route(f"http://localhost:{port}/item.json")
    policy = HostPolicy(("localhost",), (LOOPBACK,))
    with pytest.raises(UnsafeHref, match="a loopback address"):
        fetch_json(served.url("hop.json"), policy)


def test_redirects_are_followed_when_each_hop_is_allowed(served: Loopback) -> None:
    write_json(served.folder / "item.json", {"hello": "there"})
    served.routes["/a"] = redirect_route("/b")
    served.routes["/b"] = redirect_route(served.url("item.json"))
    assert fetch_json(served.url("a"), served.policy) == {"hello": "there"}


def test_redirect_loops_are_cut_off(served: Loopback) -> None:
    served.routes["/loop"] = redirect_route("/loop")
    with pytest.raises(StacError, match="more than 5 redirects"):
        fetch_json(served.url("loop"), served.policy)


def test_dns_rebinding_is_caught_at_connection_time(
    served: Loopback, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The check sees a public address; the connection then goes to loopback.
    fake_dns(monkeypatch, {"rebind.example.com": ["93.184.216.34", LOOPBACK]})
    tiny_tif(served.folder / "x.tif")
    port = served.server.server_port
    policy = HostPolicy(allowed_hosts=("rebind.example.com",))
    with pytest.raises(UnsafeHref, match=re.escape("connected to 127.0.0.1, a loopback address")):
        download(f"http://rebind.example.com:{port}/x.tif", tmp_path / "dl", policy)


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "no-content-length"])
def test_download_over_the_limit_is_refused_and_leaves_nothing(
    served: Loopback, tmp_path: Path, declared: bool
) -> None:
    body = b"x" * 200_000
    headers = {"Content-Length": str(len(body))} if declared else {"Connection": "close"}
    served.routes["/big.tif"] = lambda h: send(h, 200, body, headers)
    dest = tmp_path / "dl"
    with pytest.raises(StacError, match="over the download limit of 1000 bytes"):
        download(served.url("big.tif"), dest, served.policy, Limits(max_download_bytes=1000))
    assert list(dest.iterdir()) == []


def test_download_writes_a_safe_name_inside_the_folder(served: Loopback, tmp_path: Path) -> None:
    (served.folder / "x.tif").write_bytes(b"tiff")
    path = download(served.url("x.tif"), tmp_path / "dl", served.policy, name="../../etc/passwd")
    assert path.parent == tmp_path / "dl"
    assert path.read_bytes() == b"tiff"
    assert ".." not in path.name and "/" not in path.name


@pytest.mark.parametrize(
    ("url", "hint", "expected_tail"),
    [
        ("http://h/a/scene.TIF", None, "-scene.tif"),
        ("http://h/..%2F..%2Fetc%2Fpasswd", None, "-passwd"),
        ("http://h/", None, "-asset"),
        ("http://h/x", "item 1/../vis:ual.jp2", "-item_1_.._vis_ual.jp2"),
    ],
)
def test_safe_file_name(url: str, hint: str | None, expected_tail: str) -> None:
    name = safe_file_name(url, hint)
    assert name.endswith(expected_tail)
    assert "/" not in name and not name.startswith(".")


def test_fetch_json_refuses_oversized_documents(served: Loopback) -> None:
    write_json(served.folder / "big.json", {"data": "x" * 5000})
    with pytest.raises(StacError, match="over the JSON limit of 1000 bytes"):
        fetch_json(served.url("big.json"), served.policy, Limits(max_json_bytes=1000))


def test_resolve_href_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_dns(monkeypatch, {"tiles.example.com": ["93.184.216.34"]})
    policy = HostPolicy(allowed_hosts=("tiles.example.com",))
    base = tmp_path / "cat" / "sub" / "item.json"
    assert resolve_href("../x.tif", base, policy, root=tmp_path / "cat") == (tmp_path / "cat" / "x.tif").resolve()
    with pytest.raises(UnsafeHref, match="outside the catalog folder"):
        resolve_href("../x.tif", base, policy)  # root defaults to the document's folder
    remote = "https://tiles.example.com/stac/items/a.json"
    assert resolve_href("../b/x.tif", remote, policy) == "https://tiles.example.com/stac/b/x.tif"
    with pytest.raises(UnsafeHref, match="not allowed"):
        resolve_href("//evil.example.net/x.tif", remote, policy)


# A tiny fake STAC API.

CONFORMANCE = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0/collections",
]


def _api_item(server: Loopback, item_id: str, when: str) -> dict[str, Any]:
    item = item_dict(item_id, {"image": tiff(server.url(f"files/{item_id}.tif"))})
    item["properties"] = {"datetime": when, "platform": "worldview-3"}
    item["collection"] = "wv"
    item["links"] = [{"rel": "self", "href": server.url(f"collections/wv/items/{item_id}")}]
    return item


def _parse_stamp(text: str) -> datetime | None:
    return None if text in ("..", "") else datetime.fromisoformat(text.replace("Z", "+00:00"))


def _within(when: str, start: datetime | None, end: datetime | None) -> bool:
    moment = datetime.fromisoformat(when.replace("Z", "+00:00"))
    return (start is None or moment >= start) and (end is None or moment <= end)


def fake_api(server: Loopback) -> None:
    """Serve a landing page, /search (filtering by datetime) and /collections/wv, for items a, b, c."""
    held = {"a": "2024-04-30T23:00:00Z", "b": "2024-05-02T12:00:00Z", "c": "2024-05-20T08:00:00Z"}
    for item_id in held:
        tiny_tif(server.folder / "files" / f"{item_id}.tif")
    server.routes["/"] = json_route(
        {
            "type": "Catalog",
            "stac_version": "1.0.0",
            "id": "fake-api",
            "description": "test",
            "conformsTo": CONFORMANCE,
            "links": [
                {"rel": "self", "href": server.url("/")},
                {"rel": "root", "href": server.url("/")},
                {"rel": "search", "href": server.url("search"), "type": "application/geo+json", "method": "POST"},
                {"rel": "search", "href": server.url("search"), "type": "application/geo+json", "method": "GET"},
                {"rel": "data", "href": server.url("collections")},
            ],
        }
    )
    server.routes["/collections/wv"] = json_route(
        {
            "type": "Collection",
            "stac_version": "1.0.0",
            "id": "wv",
            "description": "test",
            "license": "proprietary",
            "providers": [{"name": "Maxar", "roles": ["producer"]}],
            "extent": {"spatial": {"bbox": [BBOX]}, "temporal": {"interval": [[None, None]]}},
            "links": [],
        }
    )

    def search(handler: _Handler) -> None:
        _method, _path, params = server.requests[-1]
        interval = params.get("datetime", "../..")
        interval = interval[0] if isinstance(interval, list) else interval
        start, end = (_parse_stamp(part) for part in interval.split("/"))
        features = [_api_item(server, item_id, when) for item_id, when in held.items() if _within(when, start, end)]
        json_route({"type": "FeatureCollection", "features": features, "links": []})(handler)

    server.routes["/search"] = search


def test_stac_api_search_returns_items_in_the_date_range(served: Loopback, tmp_path: Path) -> None:
    fake_api(served)

    sources = sources_from_stac_api(
        served.url("/"),
        ["wv"],
        (-93.0, 37.0, -92.9, 37.1),
        date(2024, 5, 1),
        date(2024, 5, 10),
        tmp_path / "dl",
    )

    assert [s.stac_id for s in sources] == ["b"]
    (source,) = sources
    assert source.acquired == datetime(2024, 5, 2, 12, tzinfo=UTC)
    assert source.provider == "Maxar" and source.licence == "proprietary"
    assert source.sensor == "worldview-3"
    assert source.origin == served.url("collections/wv/items/b")
    assert source.path.parent == tmp_path / "dl" and source.path.is_file()
    (sent,) = [params for method, path, params in served.requests if path == "/search"]
    assert sent["datetime"].startswith("2024-05-01T00:00:00") and sent["collections"] == ["wv"]


def test_stac_api_items_outside_the_range_are_dropped_even_if_the_server_sends_them(
    served: Loopback, tmp_path: Path
) -> None:
    fake_api(served)
    served.routes["/search"] = json_route(
        {"type": "FeatureCollection", "features": [_api_item(served, "a", "2024-04-30T23:00:00Z")], "links": []}
    )
    scenes = scenes_from_stac_api(served.url("/"), [], (-93.0, 37.0, -92.9, 37.1), date(2024, 5, 1), None, tmp_path)
    assert scenes == []


@pytest.mark.parametrize(
    ("landing", "problem"),
    [
        ({"hello": "world"}, "expected type=Catalog"),
        ({"type": "Catalog", "stac_version": "1.0.0", "id": "x", "description": "d", "links": []}, "item search"),
    ],
)
def test_non_stac_api_is_a_stac_error(served: Loopback, tmp_path: Path, landing: dict[str, Any], problem: str) -> None:
    served.routes["/"] = json_route(landing)
    with pytest.raises(StacError, match=problem):
        sources_from_stac_api(served.url("/"), [], (0.0, 0.0, 1.0, 1.0), None, None, tmp_path)


def test_failing_api_is_a_stac_error(served: Loopback, tmp_path: Path) -> None:
    served.routes["/"] = lambda h: send(h, 500, b"boom")
    with pytest.raises(StacError, match="HTTP 500"):
        sources_from_stac_api(served.url("/"), [], (0.0, 0.0, 1.0, 1.0), None, None, tmp_path)


def test_api_asset_on_another_host_is_refused(served: Loopback, tmp_path: Path) -> None:
    fake_api(served)
    item = _api_item(served, "b", "2024-05-02T12:00:00Z")
    item["assets"]["image"]["href"] = "http://169.254.169.254/latest/meta-data"
    served.routes["/search"] = json_route({"type": "FeatureCollection", "features": [item], "links": []})
    with pytest.raises(UnsafeHref, match=re.escape("host 169.254.169.254 is not allowed")):
        sources_from_stac_api(served.url("/"), [], (-93.0, 37.0, -92.9, 37.1), None, None, tmp_path)


def test_api_bbox_is_checked(tmp_path: Path) -> None:
    with pytest.raises(GeometryError, match="bbox"):
        sources_from_stac_api("http://127.0.0.1:9/", [], (0.0, 10.0, 1.0, 5.0), None, None, tmp_path)


def _paged_search(served: Loopback, next_href: str) -> None:
    first = {
        "type": "FeatureCollection",
        "features": [_api_item(served, "b", "2024-05-02T12:00:00Z")],
        "links": [{"rel": "next", "href": next_href, "method": "GET", "type": "application/geo+json"}],
    }
    second = {"type": "FeatureCollection", "features": [_api_item(served, "c", "2024-05-20T08:00:00Z")], "links": []}
    served.routes["/search"] = json_route(first)
    served.routes["/search-page-2"] = json_route(second)


def test_api_pages_are_followed(served: Loopback, tmp_path: Path) -> None:
    fake_api(served)
    _paged_search(served, served.url("search-page-2"))
    sources = sources_from_stac_api(served.url("/"), ["wv"], (-93.0, 37.0, -92.9, 37.1), None, None, tmp_path)
    assert [s.stac_id for s in sources] == ["b", "c"]


@pytest.mark.parametrize(
    ("next_href", "problem"),
    [
        ("http://169.254.169.254/latest/meta-data", "host 169.254.169.254 is not allowed"),
        ("/etc/passwd", "scheme 'none' is not allowed"),
    ],
)
def test_api_next_link_is_checked_like_any_url(served: Loopback, tmp_path: Path, next_href: str, problem: str) -> None:
    fake_api(served)
    _paged_search(served, next_href)
    with pytest.raises(UnsafeHref, match=re.escape(problem)):
        sources_from_stac_api(served.url("/"), ["wv"], (-93.0, 37.0, -92.9, 37.1), None, None, tmp_path / "dl")
    assert not (tmp_path / "dl").exists()  # refused before any download
