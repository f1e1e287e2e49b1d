"""``sitewatch monitor`` against a real STAC API on loopback (stac-fastapi-geoparquet, see
:mod:`tests.stac_api`), fed the demo scenes date by date.

The search is the server's: the monitor asks for items over each site's footprint acquired after
its latest image, and the server alone filters them (an item elsewhere is never sent, nor is an
image already ingested). A rule stays quiet until the expansion's scene is published, then raises
exactly one alert, and a further pass none. The client follows the server's next links, and a
search the server refuses fails with the server's reason. A ``sitewatch monitor --once`` process
killed with SIGKILL while it ingests several new scenes is taken up by the next run, which ends
with exactly the alerts one uninterrupted run gives: none lost, none repeated, and removes the
download folder the killed run left.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from shapely.affinity import translate
from shapely.geometry import mapping, shape

import sitewatch.ingest.stac
from sitewatch.catalog.db import Catalog
from sitewatch.demo.generator import EXPANSION_INDEX, DemoSite, generate
from sitewatch.errors import StacError
from sitewatch.ingest.stac import scenes_from_stac_api
from sitewatch.io.stac import HostPolicy
from sitewatch.watch.monitor import PassReport, Sources, monitor_once
from sitewatch.watch.rules import ChangeWatch, add_rule
from sitewatch.workspace import Workspace
from tests.conftest import PROXY_VARIABLES
from tests.stac_api import StacApi, demo_api, stac_item
from tests.test_watch import NEW_BUILDINGS, logged, site_with_zones

pytestmark = pytest.mark.usefixtures("no_proxies")

#: How long a ``sitewatch monitor --once`` run may take, and how long the kill may wait for its first scene.
RUN_TIMEOUT_S = 300.0


@pytest.fixture(scope="module")
def truth(tmp_path_factory: pytest.TempPathFactory) -> DemoSite:
    return generate(tmp_path_factory.mktemp("scenes"), seed=7)


@pytest.fixture(scope="module")
def api(truth: DemoSite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StacApi]:
    with demo_api(truth, tmp_path_factory.mktemp("api")) as server:
        yield server


def elsewhere(item: dict[str, Any], degrees: float) -> dict[str, Any]:
    """ITEM moved DEGREES east and renamed."""
    footprint = translate(shape(item["geometry"]), xoff=degrees)
    return {**item, "id": f"{item['id']}-elsewhere", "geometry": mapping(footprint), "bbox": list(footprint.bounds)}


# --- four passes against the server ---------------------------------------------------------------


@dataclass
class Monitored:
    """A workspace watched through four passes, and what each pass and the server's answers held."""

    root: Path
    after: Path  # a copy of the workspace after the last pass, for the kill test
    passes: list[PassReport] = field(default_factory=list)
    answered: list[list[str]] = field(default_factory=list)  # ids of the items the server sent, per pass
    dropped: list[str] = field(default_factory=list)  # items sitewatch had to drop itself (date range)
    logs: list[list[dict[str, Any]]] = field(default_factory=list)


@pytest.fixture(scope="module")
def monitored(truth: DemoSite, api: StacApi, tmp_path_factory: pytest.TempPathFactory) -> Monitored:
    """Scenes 0 to 2 published (with an item over another place, dated after them all); a pass; a
    change rule over the new buildings and one for demolitions; a pass with nothing new; the
    expansion's scene published; a pass; and one more pass."""
    base = tmp_path_factory.mktemp("monitor")
    root = site_with_zones(base / "ws", truth)
    run = Monitored(root, base / "after")
    # Dated after every scene, its image missing: were it sent, its download would fail the pass.
    decoy = elsewhere(stac_item(truth, truth.scenes[-1], api.asset_url("missing.tif")), 0.5)
    real_overlaps = sitewatch.ingest.stac._overlaps

    def overlaps(item: Any, start: Any, end: Any) -> bool:
        """sitewatch's own date check, seeing every item the server sent."""
        run.answered[-1].append(item.id)
        kept = real_overlaps(item, start, end)
        if not kept:
            run.dropped.append(item.id)
        return kept

    def one_pass() -> None:
        run.answered.append([])
        with Workspace.open(root) as ws:
            run.passes.append(monitor_once(ws, Sources(stac_api=api.url), objects=None))
        run.logs.append(logged(root))

    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(sitewatch.ingest.stac, "_overlaps", overlaps)
        api.publish(truth.scenes[:EXPANSION_INDEX], others=[decoy])
        one_pass()
        with Workspace.open(root) as ws:
            add_rule(ws, truth.name, ChangeWatch("appeared", 1000.0, NEW_BUILDINGS), "expansion")
            add_rule(ws, truth.name, ChangeWatch("removed", 1000.0), "demolition")
        one_pass()
        api.publish([truth.scenes[EXPANSION_INDEX]])
        one_pass()
        one_pass()
    shutil.copytree(root, run.after)
    return run


def test_first_pass_ingests_what_the_server_holds_over_the_site(monitored: Monitored, truth: DemoSite) -> None:
    first = monitored.passes[0]
    stems = [s.path.stem for s in truth.scenes[:EXPANSION_INDEX]]
    assert sorted(monitored.answered[0]) == stems  # not the item elsewhere: the server filtered by bbox
    assert [(o.status, o.acquired) for o in first.ingested] == [
        ("ingested", s.acquired.isoformat()) for s in truth.scenes[:EXPANSION_INDEX]
    ]  # oldest first, though the server answers newest first
    assert all("/collections/sitewatch-demo/items/demo_" in o.source for o in first.ingested)  # the items' own URLs
    assert first.analyzed == (truth.name,) and first.failures == () and first.alerts == ()


def test_rules_stay_quiet_until_the_expansion_is_published(monitored: Monitored) -> None:
    assert monitored.passes[1] == PassReport((), (), (), (), (), ())
    assert monitored.answered[1] == []  # the server sent nothing: every image it holds is known
    assert monitored.logs[1] == []


def test_the_expansion_raises_exactly_one_alert(monitored: Monitored, truth: DemoSite) -> None:
    third = monitored.passes[2]
    expansion = truth.scenes[EXPANSION_INDEX]
    assert monitored.answered[2] == [expansion.path.stem]
    assert [(o.status, o.acquired) for o in third.ingested] == [("ingested", expansion.acquired.isoformat())]
    [alert] = third.alerts
    assert (alert.rule, alert.acquired) == ("expansion", expansion.acquired)
    assert [record["id"] for record in monitored.logs[2]] == [alert.id]


def test_a_further_pass_finds_nothing(monitored: Monitored) -> None:
    assert monitored.passes[3] == PassReport((), (), (), (), (), ())
    assert monitored.answered[3] == [] and monitored.logs[3] == monitored.logs[2]
    assert monitored.dropped == []  # the server did all the date filtering


def test_search_follows_the_servers_next_links(truth: DemoSite, tmp_path: Path) -> None:
    """130 items, served 100 a page: every one arrives once (their one image is fetched once)."""
    first = truth.scenes[0]
    with demo_api(truth, tmp_path) as server:
        item = stac_item(truth, first, server.asset_url(first.path.name))
        hourly = [
            {**item, "id": f"hour-{hour:03d}",
             "properties": {**item["properties"], "datetime": (first.acquired + timedelta(hours=hour)).strftime(
                 "%Y-%m-%dT%H:%M:%SZ")}}
            for hour in range(131)
        ]  # fmt: skip
        server.publish([], others=hourly)
        scenes = scenes_from_stac_api(
            server.url, [], truth.site.bounds, first.acquired + timedelta(minutes=30), None, tmp_path / "dl",
            HostPolicy.for_url(server.url),
        )  # fmt: skip
    assert sorted(s.source.stac_id or "" for s in scenes) == [f"hour-{hour:03d}" for hour in range(1, 131)]
    assert len({s.source.path for s in scenes}) == 1


def test_a_refused_search_says_why(monitored: Monitored, api: StacApi, truth: DemoSite, tmp_path: Path) -> None:
    """The server's own reason comes with the HTTP status (here: an interval that ends before it starts)."""
    with pytest.raises(StacError, match=r"/search: HTTP 400 Bad Request: .*datetime"):
        scenes_from_stac_api(
            api.url, [], truth.site.bounds, date(2024, 5, 1), date(2024, 4, 1), tmp_path, HostPolicy.for_url(api.url)
        )


# --- killed mid-run ---------------------------------------------------------------------------------


def _env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES}
    env["SITEWATCH_WORKSPACE"] = str(root)
    return env


def _command(api: StacApi) -> list[str]:
    exe = Path(sys.executable).parent / "sitewatch"
    return [str(exe), "monitor", "--once", "--stac", api.url, "--objects", "none", "--json"]


def _monitor(api: StacApi, root: Path) -> dict[str, Any]:
    """One uninterrupted ``sitewatch monitor --once`` run; its JSON summary."""
    done = subprocess.run(
        _command(api), env=_env(root), capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
    )
    assert done.returncode == 0, done.stderr
    summary: dict[str, Any] = json.loads(done.stdout)
    return summary


def _observations(root: Path) -> int:
    """How many observations the catalog holds now (read-only, beside a writer); -1 while it is busy."""
    try:
        conn = sqlite3.connect(f"file:{root / Catalog.FILENAME}?mode=ro", uri=True, timeout=1.0)
    except sqlite3.OperationalError:
        return -1
    try:
        return int(conn.execute("SELECT count(*) FROM observations").fetchone()[0])
    except sqlite3.OperationalError:
        return -1
    finally:
        conn.close()


def _kill_after_first_new_observation(api: StacApi, root: Path, log: Path) -> bool:
    """Run the monitor in a process and SIGKILL it as soon as the catalog shows a new observation;
    whether it was still running then."""
    known = _observations(root)
    seen = known
    with log.open("wb") as out:
        process = subprocess.Popen(_command(api), env=_env(root), stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while process.poll() is None and seen <= known and time.monotonic() < deadline:
            time.sleep(0.05)
            seen = _observations(root)
        running = process.poll() is None
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait(30)
    assert seen > known, f"no new observation seen before the run ended or the deadline:\n{log.read_text()}"
    return running


def _alerts(root: Path) -> tuple[list[tuple[str, str]], list[tuple[str, str]], list[int], list[int]]:
    """The alerts as (rule, date), from the catalog and from alerts.jsonl, and their ids in each."""
    with Workspace.open(root) as ws:
        recorded = ws.catalog.alerts()
    lines = logged(root)
    return (
        sorted((a.rule, a.acquired.isoformat()) for a in recorded),
        sorted((str(r["rule"]), str(r["date"])) for r in lines),
        [a.id or 0 for a in recorded],
        [int(str(r["id"])) for r in lines],
    )


@pytest.mark.slow
def test_a_monitor_killed_mid_run_is_taken_up_with_exactly_the_missing_alerts(
    monitored: Monitored, truth: DemoSite, api: StacApi, tmp_path: Path
) -> None:
    api.publish(truth.scenes[EXPANSION_INDEX + 1 :])
    control = tmp_path / "control"
    shutil.copytree(monitored.after, control)
    uninterrupted = _monitor(api, control)
    expected, expected_log, ids, log_ids = _alerts(control)
    demolition = next(e for e in truth.events if e.kind == "removed")
    assert ("demolition", demolition.date_after.isoformat()) in expected and expected == expected_log
    assert ids == log_ids and len(set(ids)) == len(ids)
    assert len(uninterrupted["ingested"]) == len(truth.scenes) - EXPANSION_INDEX - 1

    killed = tmp_path / "killed"
    shutil.copytree(monitored.after, killed)
    assert _kill_after_first_new_observation(api, killed, tmp_path / "killed.log"), "the run ended before the kill"
    assert 0 < _observations(killed) < _observations(control)  # killed while it was still ingesting
    [left] = (killed / ".downloads").iterdir()  # SIGKILL: its download folder stayed
    resumed = _monitor(api, killed)
    assert not left.exists()  # the next run removed it: no live process held its lock

    alerts, log, ids, log_ids = _alerts(killed)
    assert alerts == expected and log == expected  # none lost, none repeated, in the catalog and the log
    assert ids == log_ids and len(set(ids)) == len(ids)
    assert _observations(killed) == _observations(control)
    assert resumed["failures"] == [] and len(resumed["ingested"]) < len(uninterrupted["ingested"])
    assert _monitor(api, killed)["alerts"] == []  # and a further run raises none
