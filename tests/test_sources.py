"""Each site's own monitoring sources: saving them (every bad input refused in one line, nothing
written), the ``sitewatch site source`` commands, the monitor polling each site's sources for that
site only (a watched folder for one site, the real STAC API on loopback for another, with no source
given to the pass), ``sitewatch monitor --once`` with saved sources and without any, and the site
page's "Watching" data."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from sitewatch.catalog.schema import MIGRATIONS
from sitewatch.demo.generator import EXPANSION_INDEX, DemoSite, generate
from sitewatch.errors import InputError, NotFound
from sitewatch.sites import from_bbox, new_site
from sitewatch.watch.monitor import NOTHING_TO_WATCH, Sources, monitor_once
from sitewatch.watch.rules import ChangeWatch, add_rule
from sitewatch.watch.sources import add_source, list_sources, remove_source
from sitewatch.web.app import create_app
from sitewatch.workspace import Workspace
from tests.conftest import run_sitewatch
from tests.stac_api import StacApi, demo_api

pytestmark = pytest.mark.usefixtures("no_proxies")

LOOPBACK_API = "http://127.0.0.1:8089/stac/"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A workspace with one small site, "alpha", and nothing else."""
    root = tmp_path / "ws"
    with Workspace.create(root) as ws:
        ws.catalog.add_site(new_site("alpha", from_bbox("10.0,50.0,10.01,50.01")))
    return root


# --- the library ------------------------------------------------------------------------------------


def test_a_source_of_each_kind_is_saved_listed_and_removed(root: Path, tmp_path: Path) -> None:
    (tmp_path / "incoming").mkdir()
    with Workspace.open(root) as ws:
        folder = add_source(ws, "alpha", folder=tmp_path / "incoming")
        stac = add_source(ws, "alpha", stac=LOOPBACK_API, collections=("s2", "s2"), allow_hosts=(".example.org",))
        assert (folder.kind, folder.target) == ("folder", str((tmp_path / "incoming").resolve()))
        assert (stac.kind, stac.target, stac.collections, stac.allow_hosts) == (
            "stac",
            LOOPBACK_API,  # a loopback API is allowed: the user names it, as with --stac
            ("s2",),
            (".example.org",),
        )
        assert list_sources(ws, "alpha") == list_sources(ws) == [folder, stac]
        assert remove_source(ws, "alpha", folder.id or 0) == folder
        assert list_sources(ws) == [stac]
        with pytest.raises(NotFound, match=rf"no source #{folder.id} \(its sources: {stac.id}\)"):
            remove_source(ws, "alpha", folder.id or 0)
        ws.catalog.remove_site("alpha")
        assert list_sources(ws) == []  # a site's sources go with it


def test_a_relative_folder_is_stored_as_its_absolute_path(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "drop").mkdir()
    monkeypatch.chdir(tmp_path)
    with Workspace.open(root) as ws:
        assert add_source(ws, "alpha", folder="drop").target == str((tmp_path / "drop").resolve())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stac": "ftp://example.org/stac"}, "ftp://example.org/stac: not an http(s) URL with a host"),
        ({"stac": "example.org/stac"}, "example.org/stac: not an http(s) URL with a host"),
        ({"stac": "http://user:pw@127.0.0.1:8089/"}, "credentials in them are refused"),
        ({"stac": "http://127.0.0.1:8089/a b"}, "spaces or control characters"),
        ({"stac": "http://127.0.0.1:99999/"}, "invalid port"),
        ({"stac": LOOPBACK_API, "allow_hosts": ("https://cdn.example.org/",)}, "https://cdn.example.org/: not a host"),
        ({"stac": LOOPBACK_API, "allow_hosts": ("cdn.example.org:443",)}, "cdn.example.org:443: not a host"),
        ({"stac": LOOPBACK_API, "collections": (" ",)}, "collection id cannot be empty"),
        ({"folder": "MISSING"}, "missing: no such folder"),
        ({"folder": "FILE"}, "scene.tif: not a folder"),
        ({"folder": "FOLDER", "collections": ("s2",)}, "--collection and --allow-host go with --stac"),
        ({"stac": LOOPBACK_API, "folder": "FOLDER"}, "give exactly one of --stac URL or --folder DIR"),
        ({}, "give exactly one of --stac URL or --folder DIR"),
    ],
)
def test_bad_sources_are_refused_in_one_line_and_nothing_is_written(
    root: Path, tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "scene.tif").write_bytes(b"not a folder")
    paths = {"MISSING": tmp_path / "missing", "FILE": tmp_path / "scene.tif", "FOLDER": tmp_path / "folder"}
    if "folder" in kwargs:
        kwargs["folder"] = paths[str(kwargs["folder"])]
    with Workspace.open(root) as ws:
        with pytest.raises(InputError) as raised:
            add_source(ws, "alpha", **kwargs)  # type: ignore[arg-type]
        assert message in str(raised.value) and "\n" not in str(raised.value)
        assert list_sources(ws) == []


def test_a_duplicate_or_an_unknown_site_is_refused(root: Path, tmp_path: Path) -> None:
    with Workspace.open(root) as ws:
        add_source(ws, "alpha", stac=LOOPBACK_API)
        add_source(ws, "alpha", folder=tmp_path)
        with pytest.raises(InputError, match=rf"^{LOOPBACK_API}: already a stac source of site 'alpha'$"):
            add_source(ws, "alpha", stac=LOOPBACK_API, collections=("other",))
        with pytest.raises(InputError, match="already a folder source of site 'alpha'"):
            add_source(ws, "alpha", folder=tmp_path / "." / ".")
        with pytest.raises(NotFound, match="no site 'bravo'"):
            add_source(ws, "bravo", folder=tmp_path)
        assert len(list_sources(ws)) == 2
        assert ws.catalog.execute("PRAGMA user_version")[0][0] == len(MIGRATIONS) == 11


def test_failed_stac_items_are_kept_per_site_and_api(root: Path) -> None:
    """A site searched on two APIs retries each one's failed items on that API only; a failure recorded
    before the API was kept is retried on any, and belongs to the first that records it again."""
    when = datetime(2024, 5, 1, tzinfo=UTC)
    with Workspace.open(root) as ws:
        site = ws.catalog.site("alpha")
        ws.catalog.record_stac_failure(site, "old", when, "HTTP 500")
        ws.catalog.record_stac_failure(site, "a1", when, "HTTP 404", "http://a.example/")
        ws.catalog.record_stac_failure(site, "b1", when, "HTTP 404", "http://b.example/")
        assert [f.source for f in ws.catalog.stac_failures(site, "http://a.example/")] == ["a1", "old"]
        assert [f.source for f in ws.catalog.stac_failures(site, "http://b.example/")] == ["b1", "old"]
        again = ws.catalog.record_stac_failure(site, "old", when, "HTTP 500", "http://a.example/")
        assert (again.api, again.tries) == ("http://a.example/", 2)
        assert [f.source for f in ws.catalog.stac_failures(site, "http://b.example/")] == ["b1"]
        assert len(ws.catalog.stac_failures(site)) == 3


# --- the commands ------------------------------------------------------------------------------------


def test_cli_adds_lists_and_removes_sources_and_refuses_bad_input(root: Path, tmp_path: Path) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    added = run_sitewatch("site", "source", "add", "alpha", "--folder", incoming, workspace=root)
    assert added.returncode == 0 and f"added folder source #1 to site 'alpha': {incoming}" in added.stdout
    shown = run_sitewatch(
        "site", "source", "add", "alpha", "--stac", LOOPBACK_API, "--collection", "s2", "--json", workspace=root
    )
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) | {"created": None} == {
        "id": 2, "site": "alpha", "kind": "stac", "target": LOOPBACK_API, "collections": ["s2"], "allow_hosts": [],
        "created": None,
    }  # fmt: skip
    for args, message in [
        (("--stac", "file:///etc/passwd"), "file:///etc/passwd: not an http(s) URL with a host"),
        (("--folder", tmp_path / "nowhere"), "nowhere: no such folder"),
        (("--folder", incoming), "already a folder source of site 'alpha'"),
        (("--stac", LOOPBACK_API, "--folder", incoming), "give exactly one of --stac URL or --folder DIR"),
    ]:
        bad = run_sitewatch("site", "source", "add", "alpha", *args, workspace=root)
        assert bad.returncode == 1 and message in bad.stderr, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1
    listed = run_sitewatch("site", "source", "list", "--json", workspace=root)
    assert [(s["id"], s["kind"]) for s in json.loads(listed.stdout)["sources"]] == [(1, "folder"), (2, "stac")]
    removed = run_sitewatch("site", "source", "remove", "alpha", "1", workspace=root)
    assert removed.returncode == 0 and "removed folder source #1" in removed.stdout
    gone = run_sitewatch("site", "source", "remove", "alpha", "1", workspace=root)
    assert gone.returncode == 1 and "site 'alpha' has no source #1 (its sources: 2)" in gone.stderr
    table = run_sitewatch("site", "source", "list", "alpha", workspace=root)
    assert table.returncode == 0 and " stac " in table.stdout and " folder " not in table.stdout


def test_cli_monitor_once_needs_no_flags_when_a_site_has_sources(root: Path, tmp_path: Path) -> None:
    bare = run_sitewatch("monitor", "--once", workspace=root)
    assert bare.returncode == 1 and NOTHING_TO_WATCH in bare.stderr and "sitewatch site source add" in bare.stderr
    assert len(bare.stderr.strip().splitlines()) == 1
    with Workspace.open(root) as ws:
        add_source(ws, "alpha", folder=tmp_path)
    quiet = run_sitewatch("monitor", "--once", "--json", workspace=root)
    assert quiet.returncode == 0, quiet.stderr
    assert json.loads(quiet.stdout)["failures"] == []


# --- the monitor, polling each site's own sources ------------------------------------------------------

FOLDER_SCENES, STAC_SCENES = (0, 2), (EXPANSION_INDEX, 5)


@pytest.fixture(scope="module")
def truth(tmp_path_factory: pytest.TempPathFactory) -> DemoSite:
    return generate(tmp_path_factory.mktemp("scenes"), seed=7)


@pytest.fixture(scope="module")
def api(truth: DemoSite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StacApi]:
    with demo_api(truth, tmp_path_factory.mktemp("api")) as server:
        server.publish([truth.scenes[i] for i in STAC_SCENES])
        yield server


@pytest.mark.slow
def test_each_site_is_polled_on_its_own_sources_only(truth: DemoSite, api: StacApi, tmp_path: Path) -> None:
    """Two sites over the same ground: "alpha" watches a folder, "bravo" the STAC API. Every scene
    covers both, so only the sources' scoping keeps each site's images its own."""
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    for i in FOLDER_SCENES:
        shutil.copy2(truth.scenes[i].path, incoming)
    with Workspace.create(tmp_path / "ws") as ws:
        for name in ("alpha", "bravo"):
            ws.catalog.add_site(new_site(name, truth.site))
        add_source(ws, "alpha", folder=incoming)
        add_source(ws, "bravo", stac=api.url)
        first = monitor_once(ws, Sources(), objects=None)
        second = monitor_once(ws, Sources(), objects=None)
        sites = {name: ws.catalog.site(name) for name in ("alpha", "bravo")}
        acquired = {name: [obs.acquired for obs in ws.catalog.observations(site)] for name, site in sites.items()}
    assert first.failures == ()
    assert (
        sorted((o.status, o.sites) for o in first.ingested)
        == [("ingested", ("alpha",))] * 2 + [("ingested", ("bravo",))] * 2
    )
    assert acquired == {
        "alpha": [truth.scenes[i].acquired for i in FOLDER_SCENES],
        "bravo": [truth.scenes[i].acquired for i in STAC_SCENES],
    }
    assert sorted(first.analyzed) == ["alpha", "bravo"]
    assert second.ingested == second.failures == second.analyzed == ()


# --- the site page ------------------------------------------------------------------------------------


def test_site_payload_lists_the_saved_sources_and_watch_rules(root: Path, tmp_path: Path) -> None:
    with Workspace.open(root) as ws:
        add_source(ws, "alpha", folder=tmp_path)
        add_source(ws, "alpha", stac=LOOPBACK_API, collections=("<s2>",))
        add_rule(ws, "alpha", ChangeWatch("appeared", 200.0), "new buildings")
    with TestClient(create_app(root), base_url="http://127.0.0.1") as client:
        response = client.get(f"/api/sites/{quote('alpha', safe='')}")
    assert response.status_code == 200, response.text
    watching = response.json()["watching"]
    assert [(s["kind"], s["target"], s["collections"]) for s in watching["sources"]] == [
        ("folder", str(tmp_path.resolve()), []),
        ("stac", LOOPBACK_API, ["<s2>"]),
    ]
    described = "any appeared change over 200 m² anywhere on the site"
    assert watching["rules"] == [{"name": "new buildings", "kind": "change", "description": described}]
