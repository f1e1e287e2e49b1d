"""Watch rules and alerts: rules added, listed and removed from the CLI (bad input refused in one line,
nothing written); change and activity rules firing on the demo site's scripted events and nowhere
else; alerts recorded once however often rules are evaluated; and the alert log repaired after a
run killed between the catalog commit and the log append, or in the middle of a line."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

import sitewatch.watch.evaluate as evaluate_module
from sitewatch.analyze import analyze_site
from sitewatch.catalog.db import Catalog
from sitewatch.catalog.models import Alert, WatchRule, Zone
from sitewatch.catalog.schema import MIGRATIONS
from sitewatch.demo.generator import DemoSite, generate
from sitewatch.detect.find import Query, parse_span
from sitewatch.errors import AlreadyExists, InputError, NotFound, UnknownName
from sitewatch.grid import to_crs
from sitewatch.ingest.pipeline import ingest
from sitewatch.ingest.sources import SceneSource
from sitewatch.sites import from_bbox, new_site
from sitewatch.watch.alerts import LOG_NAME, sync_log
from sitewatch.watch.evaluate import evaluate_rules
from sitewatch.watch.rules import ActivityWatch, ChangeWatch, Watch, add_rule, build_watch, remove_rule
from sitewatch.workspace import Workspace
from tests.conftest import run_sitewatch

#: A zone drawn over the demo's scripted expansion (the new hall and its annex).
NEW_BUILDINGS = "new buildings"


def built_area(truth: DemoSite) -> BaseGeometry:
    """The scripted new buildings' footprint (site grid CRS, metres)."""
    return unary_union([event.polygon_utm for event in truth.events if event.kind == "appeared"])


def site_with_zones(root: Path, truth: DemoSite, scenes: Sequence[int] = ()) -> Path:
    """A workspace in ROOT with the demo site, its zones and a zone over the new buildings (2 m
    larger); SCENES (indexes) ingested."""
    built = to_crs(built_area(truth).buffer(2.0), truth.epsg, "EPSG:4326")
    zones = [Zone(name, outline) for name, outline in truth.zones.items()] + [Zone(NEW_BUILDINGS, built)]
    with Workspace.create(root) as ws:
        ws.catalog.add_site(new_site(truth.name, truth.site, zones=zones))
        ingest(ws, [SceneSource(truth.scenes[i].path, truth.scenes[i].path.name) for i in scenes])
    return root


def logged(root: Path) -> list[dict[str, object]]:
    """The alert log's records."""
    path = root / LOG_NAME
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def replay(ws: Workspace, rule: WatchRule) -> None:
    """Make every observation new to RULE, as if it had been added before any arrived."""
    ws.catalog.rule_evaluated(rule, [], None)


# --- rules: the library ---------------------------------------------------------------------------


def test_build_watch_makes_each_kind_and_refuses_options_of_another() -> None:
    change = build_watch("change", zone="yard", change="appeared", min_area_m2=200)
    assert change == ChangeWatch("appeared", 200, "yard")
    assert build_watch("activity", series="vehicles") == ActivityWatch("vehicles", None, "any")
    found = build_watch("find", colour="Red", length="12-20m", zone="yard")
    assert found == Query("red", parse_span("12-20m"), zone="yard")
    for kind, options, problem in [
        ("nope", {}, "'nope' is not one of change, activity, find"),
        ("change", {"change": "sideways"}, "'sideways' is not one of appeared"),
        ("change", {"min_area_m2": -5.0}, "0 or more"),
        ("change", {"min_area_m2": float("nan")}, "0 or more"),
        ("change", {"series": "index"}, "--series: does not apply to change rules"),
        ("activity", {"min_area_m2": 5.0}, "--min-area: does not apply to activity rules"),
        ("activity", {"direction": "up"}, "'up' is not one of any, high, low"),
        ("find", {"colour": "red"}, "needs --color and --length"),
        ("find", {"colour": "red", "length": "20-12m"}, "--length"),
    ]:
        with pytest.raises(InputError, match=problem):
            build_watch(kind, **options)  # type: ignore[arg-type]
    with pytest.raises(UnknownName, match="known colours"):
        build_watch("find", colour="purple", length="12-20m")


def test_migration_keeps_saved_find_rules_and_admits_the_new_kinds(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite"
    before = next(i for i, script in enumerate(MIGRATIONS) if "CREATE TABLE alerts" in script)
    with sqlite3.connect(path) as conn:  # a catalog from before alerts, holding a saved search
        for script in MIGRATIONS[:before]:
            for statement in script.split(";"):
                if statement.strip():
                    conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {before}")
        conn.execute(
            "INSERT INTO sites (name, geometry_wkt, epsg, origin_x, origin_y, extent_x, extent_y, created)"
            " VALUES ('plant', 'POINT (38.35 28.1)', 32637, 0, 0, 10, 10, '2024-01-01T00:00:00Z')"
        )
        conn.execute(
            "INSERT INTO watch_rules (site_id, name, kind, query, created, seen) VALUES"
            ' (1, \'red trailer\', \'find\', \'{"colour": "red", "length": "12-20m"}\','
            " '2024-01-01T00:00:00Z', '[3, 5]')"
        )
    conn.close()
    with Catalog(path) as catalog:
        assert catalog.execute("PRAGMA user_version")[0][0] == len(MIGRATIONS)
        site = catalog.site("plant")
        [kept] = catalog.rules(site)
        assert (kept.name, kept.kind, kept.seen, kept.query["length"]) == ("red trailer", "find", (3, 5), "12-20m")
        catalog.add_rule(WatchRule(site.id or 0, "grows", "change", ChangeWatch().to_json(), kept.created))
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            catalog.add_rule(WatchRule(site.id or 0, "odd", "bogus", {}, kept.created))
        tables = {row[0] for row in catalog.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"alerts", "alert_deliveries", "notify_targets", "monitor_files"} <= tables
        assert "watch_rules_v7" not in tables and catalog.integrity_ok()


# --- rules: the CLI ------------------------------------------------------------------------------


@pytest.fixture
def plant(tmp_path: Path) -> Path:
    """A workspace with one site, "plant", and one zone, "yard" (no imagery)."""
    root = tmp_path / "ws"
    outline = from_bbox("38.340,28.090,38.360,28.110")
    yard = Zone("yard", from_bbox("38.345,28.095,38.350,28.100"))
    with Workspace.create(root) as ws:
        ws.catalog.add_site(new_site("plant", outline, zones=[yard]))
    return root


def rule_names(root: Path) -> list[str]:
    with Workspace.open(root) as ws:
        return [rule.name for rule in ws.catalog.rules(ws.catalog.site("plant"))]


def test_cli_adds_lists_and_removes_rules(plant: Path) -> None:
    added = run_sitewatch(
        "watch", "add", "--site", "plant", "--kind", "change", "--zone", "yard", "--change", "appeared",
        "--min-area", "200", workspace=plant,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "appeared-200m2-yard" in added.stdout and "any appeared change over 200 m² in zone 'yard'" in added.stdout
    busy = run_sitewatch(
        "watch", "add", "--site", "plant", "--kind", "activity", "--series", "vehicles", "--zone", "yard",
        "--name", "busy yard", "--json", workspace=plant,
    )  # fmt: skip
    assert busy.returncode == 0, busy.stderr
    assert json.loads(busy.stdout)["rule"] == "vehicle count anomaly in zone 'yard'"
    listed = run_sitewatch("watch", "list", "--json", workspace=plant)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)["rules"]
    assert [(r["name"], r["site"], r["kind"]) for r in rows] == [
        ("appeared-200m2-yard", "plant", "change"),
        ("busy yard", "plant", "activity"),
    ]
    assert rows[0]["query"] == {"change": "appeared", "min_area_m2": 200.0, "zone": "yard"}
    again = run_sitewatch("watch", "add", "--site", "plant", "--zone", "yard", "--name", "busy yard", workspace=plant)
    assert again.returncode == 1 and len(again.stderr.strip().splitlines()) == 1
    assert "watch rule 'busy yard' already exists" in again.stderr
    removed = run_sitewatch("watch", "remove", "busy yard", workspace=plant)
    assert removed.returncode == 0 and "removed watch rule 'busy yard' of plant" in removed.stdout
    assert rule_names(plant) == ["appeared-200m2-yard"]
    shown = run_sitewatch("watch", "list", workspace=plant)
    assert "any appeared change over 200 m² in zone 'yard'" in shown.stdout and "busy yard" not in shown.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("add", "--site", "plant", "--kind", "nope"), "'nope' is not one of change, activity, find"),
        (("add", "--site", "plant", "--change", "sideways"), "'sideways' is not one of appeared"),
        (("add", "--site", "plant", "--min-area=-5"), "--min-area"),
        (("add", "--site", "plant", "--zone", "nowhere"), "site 'plant' has no zone 'nowhere' (zones: yard)"),
        (("add", "--site", "plant", "--kind", "activity", "--min-area", "5"), "does not apply to activity rules"),
        (("add", "--site", "plant", "--kind", "find", "--color", "red"), "needs --color and --length"),
        (("add", "--site", "elsewhere"), "no site 'elsewhere'"),
        (("add", "--site", "plant", "--name", " "), "not a usable rule name"),
        (("remove", "nothing"), "no watch rule 'nothing' (rules: none)"),
    ],
)
def test_cli_bad_rule_input_is_one_line_and_writes_nothing(plant: Path, args: tuple[str, ...], message: str) -> None:
    shown = run_sitewatch("watch", *args, workspace=plant)
    assert shown.returncode == 1, shown.stdout
    assert message in shown.stderr and len(shown.stderr.strip().splitlines()) == 1
    assert rule_names(plant) == []


def test_remove_names_the_site_where_two_have_the_rule(plant: Path) -> None:
    with Workspace.open(plant) as ws:
        ws.catalog.add_site(new_site("depot", from_bbox("38.400,28.090,38.410,28.100")))
        for site in ("plant", "depot"):
            add_rule(ws, site, ChangeWatch(), "big change")
        with pytest.raises(AlreadyExists):
            add_rule(ws, "depot", ActivityWatch(), "big change")
        with pytest.raises(NotFound, match="exists in sites depot, plant: name one with --site"):
            remove_rule(ws, "big change")
        assert remove_rule(ws, "big change", "depot").site == "depot"
        assert [r.name for r in ws.catalog.rules(ws.catalog.site("plant"))] == ["big change"]


def test_cli_notify_refuses_bad_targets_in_one_line(plant: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SITEWATCH_ALLOWED_HOSTS", raising=False)
    for args, message in [
        (("--webhook", "http://127.0.0.1:9/hook"), "resolves to 127.0.0.1, a loopback address"),
        (("--webhook", "file:///etc/passwd"), "not an http(s) URL with a host"),
        (("--smtp", "127.0.0.1:port", "--mail-to", "a@example.org"), "is not HOST:PORT"),
        (("--smtp", "127.0.0.1:2525", "--mail-to", "nobody"), "'nobody' is not an e-mail address"),
        (("--smtp", "127.0.0.1:2525"), "at least one recipient"),
        (("--mail-to", "a@example.org"), "needs --smtp"),
        (("--off", "fax"), "'fax' is not one of webhook, email"),
    ]:
        shown = run_sitewatch("watch", "notify", *args, workspace=plant)
        assert shown.returncode == 1 and message in shown.stderr, (args, shown.stderr)
        assert len(shown.stderr.strip().splitlines()) == 1
    with Workspace.open(plant) as ws:
        assert ws.catalog.notify_targets() == []
    monkeypatch.setenv("SITEWATCH_ALLOWED_HOSTS", "127.0.0.1")  # the setting that lets STAC data come from it
    args = ("--webhook", "http://127.0.0.1:9/hook", "--smtp", "127.0.0.1:2525", "--mail-to", "a@example.org")
    shown = run_sitewatch("watch", "notify", *args, "--json", workspace=plant)
    assert shown.returncode == 0, shown.stderr
    targets = {t["channel"]: t for t in json.loads(shown.stdout)["targets"]}
    assert targets["webhook"]["url"] == "http://127.0.0.1:9/hook"
    assert (targets["email"]["host"], targets["email"]["port"], targets["email"]["to"]) == (
        "127.0.0.1",
        2525,
        ["a@example.org"],
    )
    off = run_sitewatch("watch", "notify", "--off", "webhook", workspace=plant)
    assert off.returncode == 0 and "email: a@example.org via 127.0.0.1:2525" in off.stdout
    assert "webhook" not in off.stdout


# --- rules on the demo site ----------------------------------------------------------------------


def analyzed_demo(base: Path) -> tuple[Path, DemoSite]:
    """The demo site in BASE, every date ingested and analyzed (no object counts: rules over changes
    and the activity index do not need them)."""
    truth = generate(base / "imagery", seed=7)
    root = site_with_zones(base / "ws", truth, range(len(truth.scenes)))
    with Workspace.open(root) as ws:
        analyze_site(ws, truth.name, objects=None)
    return root, truth


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DemoSite]:
    return analyzed_demo(tmp_path_factory.mktemp("watch"))


def alerts_of(ws: Workspace, rule: str) -> list[Alert]:
    return [alert for alert in ws.catalog.alerts() if alert.rule == rule]


def fire(root: Path, site: str, name: str, watch: Watch) -> list[Alert]:
    """Add rule NAME, check it ignores what is already there, then evaluate it on every observation."""
    with Workspace.open(root) as ws:
        rule = add_rule(ws, site, watch, name)
        assert evaluate_rules(ws, site) == []  # a new rule watches what arrives from now on
        replay(ws, rule)
        return evaluate_rules(ws, site)


@pytest.mark.parametrize(
    ("name", "watch", "event"),
    [
        ("expansion", ChangeWatch("appeared", 1000.0, NEW_BUILDINGS), "expansion"),
        ("hall grows", ChangeWatch("appeared", 200.0, "assembly hall"), None),  # nothing is built there
        ("demolition", ChangeWatch("removed", 1000.0), "demolition"),
        ("surge", ActivityWatch("index", "loading area", "high"), "surge"),
    ],
)
def test_demo_rules_fire_on_their_scripted_date_and_nowhere_else(
    demo: tuple[Path, DemoSite], name: str, watch: Watch, event: str | None
) -> None:
    root, truth = demo
    dates = {
        "expansion": next(e.date_after for e in truth.events if e.kind == "appeared"),
        "demolition": next(e.date_after for e in truth.events if e.kind == "removed"),
        "surge": truth.surge_date,
    }
    alerts = fire(root, truth.name, name, watch)
    assert [a.acquired for a in alerts] == ([] if event is None else [dates[event]])
    records = {record["id"]: record for record in logged(root)}
    for alert in alerts:
        assert records[alert.id]["summary"] == alert.summary and records[alert.id]["rule"] == name
        assert records[alert.id]["site"] == truth.name


def test_demo_change_alert_carries_its_dated_outline(demo: tuple[Path, DemoSite]) -> None:
    root, truth = demo
    expansion = next(e for e in truth.events if e.kind == "appeared")
    [alert] = fire(root, truth.name, "expansion evidence", ChangeWatch("appeared", 1000.0, NEW_BUILDINGS))
    assert alert.kind == "change" and f"in zone '{NEW_BUILDINGS}'" in alert.summary
    assert f"between {expansion.date_before:%Y-%m-%d} and {expansion.date_after:%Y-%m-%d}" in alert.summary
    [change] = alert.evidence["changes"]
    assert (change["kind"], change["date_from"], change["date_to"]) == (
        "appeared",
        expansion.date_before.isoformat(),
        expansion.date_after.isoformat(),
    )
    outline = to_crs(shape(change["geometry"]), "EPSG:4326", truth.epsg)
    built = built_area(truth)
    assert outline.intersection(built).area > 0.8 * built.area
    assert change["area_counted_m2"] >= 1000.0


def test_demo_activity_alert_carries_its_series_point(demo: tuple[Path, DemoSite]) -> None:
    root, truth = demo
    [alert] = fire(root, truth.name, "surge evidence", ActivityWatch("index", "loading area", "any"))
    point = alert.evidence["point"]
    assert point["anomaly"] == "high" and point["z"] >= 3.5 and point["value"] > point["median"]
    assert point["date"] == truth.surge_date.isoformat()
    assert "activity index high anomaly in zone 'loading area'" in alert.summary


def test_demo_evaluating_again_never_repeats_an_alert(demo: tuple[Path, DemoSite]) -> None:
    root, truth = demo
    [first] = fire(root, truth.name, "expansion twice", ChangeWatch("appeared", 1000.0, NEW_BUILDINGS))
    with Workspace.open(root) as ws:
        assert evaluate_rules(ws, truth.name) == []  # every observation is seen now
        [rule] = [r for r in ws.catalog.rules(ws.catalog.site(truth.name)) if r.name == "expansion twice"]
        assert rule.last_fired_observation_id == first.observation_id
        replay(ws, rule)  # even evaluated once more on everything, the image has its alert already
        assert evaluate_rules(ws, truth.name) == []
        assert alerts_of(ws, "expansion twice") == [first]
        assert len(ws.catalog.alerts()) == len(logged(root)) == len({r["id"] for r in logged(root)})


def test_demo_kill_between_catalog_and_log_is_repaired_by_the_next_run(
    demo: tuple[Path, DemoSite], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, truth = demo
    with Workspace.open(root) as ws:
        replay(ws, add_rule(ws, truth.name, ChangeWatch("removed", 1000.0), "demolition kill"))

        def killed(_ws: Workspace) -> list[Alert]:
            raise KeyboardInterrupt  # the process dies after the catalog commit, before the log append

        monkeypatch.setattr(evaluate_module, "sync_log", killed)
        with pytest.raises(KeyboardInterrupt):
            evaluate_rules(ws, truth.name)
        monkeypatch.undo()
        [alert] = alerts_of(ws, "demolition kill")
        before = logged(root)
        assert alert.id not in {r["id"] for r in before}
        assert evaluate_rules(ws, truth.name) == []  # the next run: nothing new to evaluate ...
    after = logged(root)
    assert after[: len(before)] == before and [r["id"] for r in after[len(before) :]] == [alert.id]  # ... one line


def test_demo_torn_log_line_is_written_again_whole(demo: tuple[Path, DemoSite]) -> None:
    root, truth = demo
    fire(root, truth.name, "expansion torn", ChangeWatch("appeared", 1000.0, NEW_BUILDINGS))
    path = root / LOG_NAME
    whole = path.read_bytes()
    last = whole.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    path.write_bytes(whole[: -len(last) - 1] + last[: len(last) // 2])  # killed in the middle of the last line
    with Workspace.open(root) as ws:
        assert [a.id for a in sync_log(ws)] == [json.loads(last)["id"]]
        assert sync_log(ws) == []
    assert path.read_bytes() == whole


def test_demo_removing_a_rule_keeps_its_alerts(demo: tuple[Path, DemoSite]) -> None:
    root, truth = demo
    [alert] = fire(root, truth.name, "expansion removed", ChangeWatch("appeared", 1000.0, NEW_BUILDINGS))
    removed = run_sitewatch("watch", "remove", "expansion removed", workspace=root)
    assert removed.returncode == 0, removed.stderr
    with Workspace.open(root) as ws:
        [kept] = alerts_of(ws, "expansion removed")
    assert kept.id == alert.id and kept.rule_id is None and kept.summary == alert.summary


def test_demo_analyze_prints_the_alerts_it_raised(demo: tuple[Path, DemoSite]) -> None:
    root, truth = demo
    demolished = next(e.date_after for e in truth.events if e.kind == "removed")
    with Workspace.open(root) as ws:
        replay(ws, add_rule(ws, truth.name, ChangeWatch("removed", 1000.0), "demolition via analyze"))
    done = run_sitewatch("analyze", "--site", truth.name, "--objects", "none", "--json", workspace=root)
    assert done.returncode == 0, done.stderr
    [raised] = [a for a in json.loads(done.stdout)["alerts"] if a["rule"] == "demolition via analyze"]
    assert raised["kind"] == "change" and raised["acquired"] == demolished.isoformat()
    assert "removed" in raised["summary"]
    again = run_sitewatch("analyze", "--site", truth.name, "--objects", "none", workspace=root)
    assert again.returncode == 0 and "alert [" not in again.stdout  # once only
