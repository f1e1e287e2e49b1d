"""``sitewatch monitor`` comes back for what failed: STAC items, and download folders of killed runs.

Against the real STAC API on loopback (:mod:`tests.stac_api`): five items over the site, of which an
older one's image is missing at first (HTTP 404), one is a truncated GeoTIFF and one names a host the
API's policy refuses. The first pass ingests the two good ones and records the three failures; once
the missing image is published, the next pass searches again at the failed items' own times only
(no good image is downloaded again), ingests the older item and the rules evaluate it. The two that
stay broken are given up after three passes, reported once, and not searched for again.

Download folders: one left by a run killed with SIGKILL (its lock died with it) and one with no lock
file are removed at the start of the next pass; one a live process holds is left alone.
"""

from __future__ import annotations

import json
import select
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest

from sitewatch.catalog.models import StacFailure
from sitewatch.cli.monitor import _print
from sitewatch.demo.generator import EXPANSION_INDEX, DemoSite, generate
from sitewatch.ingest.resolve import IN_USE
from sitewatch.watch.monitor import MAX_TRIES, PassReport, Sources, monitor_once
from sitewatch.watch.rules import ChangeWatch, add_rule
from sitewatch.workspace import Workspace
from tests.stac_api import REPO_ROOT, StacApi, demo_api, stac_item
from tests.test_watch import NEW_BUILDINGS, site_with_zones

pytestmark = pytest.mark.usefixtures("no_proxies")

#: How long a helper process may take to start and report its download folder.
HELPER_TIMEOUT_S = 60.0
LATE, TRUNCATED, REFUSED = 2, 4, 5  # scene indexes of the items that fail at first
GOOD = (0, EXPANSION_INDEX)


@pytest.fixture(scope="module")
def truth(tmp_path_factory: pytest.TempPathFactory) -> DemoSite:
    return generate(tmp_path_factory.mktemp("scenes"), seed=7)


@pytest.fixture(scope="module")
def api(truth: DemoSite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StacApi]:
    with demo_api(truth, tmp_path_factory.mktemp("api")) as server:
        yield server


# --- failed STAC items ----------------------------------------------------------------------------


@dataclass
class Retried:
    """A workspace watched through four passes, what each gave, the assets each fetched, and the
    failure records after each."""

    root: Path
    passes: list[PassReport] = field(default_factory=list)
    fetched: list[list[tuple[str, int]]] = field(default_factory=list)
    records: list[list[StacFailure]] = field(default_factory=list)


@pytest.fixture(scope="module")
def retried(truth: DemoSite, api: StacApi, tmp_path_factory: pytest.TempPathFactory) -> Retried:
    """Scenes 0 and 3 published as they are, 2 with its image missing, 4 truncated and 5 on a host
    the API's policy refuses; a pass; scene 2's image published; three more passes."""
    root = site_with_zones(tmp_path_factory.mktemp("retry") / "ws", truth)
    with Workspace.open(root) as ws:
        add_rule(ws, truth.name, ChangeWatch("appeared", 1000.0, NEW_BUILDINGS), "expansion")
    served = truth.scenes[0].path.parent
    whole = truth.scenes[TRUNCATED].path.read_bytes()
    (served / "truncated.tif").write_bytes(whole[: len(whole) // 2])
    broken = [
        stac_item(truth, truth.scenes[LATE], api.asset_url("late.tif")),
        stac_item(truth, truth.scenes[TRUNCATED], api.asset_url("truncated.tif")),
        stac_item(truth, truth.scenes[REFUSED], api.asset_url("refused.tif").replace("127.0.0.1", "localhost")),
    ]
    api.publish([truth.scenes[i] for i in GOOD], others=broken)
    run = Retried(root)

    def one_pass() -> None:
        first = len(api.fetched)
        with Workspace.open(root) as ws:
            run.passes.append(monitor_once(ws, Sources(stac_api=api.url), objects=None))
            run.records.append(ws.catalog.stac_failures(ws.catalog.site(truth.name)))
        run.fetched.append(api.fetched[first:])

    one_pass()
    shutil.copyfile(truth.scenes[LATE].path, served / "late.tif")
    for _ in range(3):
        one_pass()
    return run


def _item(source: str) -> str:
    """The STAC item id in an item's URL."""
    return source.rsplit("/", 1)[-1]


def _statuses(report: PassReport) -> dict[str, str]:
    return {_item(o.source): o.status for o in report.ingested}


def _stem(truth: DemoSite, index: int) -> str:
    return truth.scenes[index].path.stem


@pytest.mark.slow
def test_a_failed_item_is_recorded_and_the_newer_one_ingested(retried: Retried, truth: DemoSite) -> None:
    first = retried.passes[0]
    assert _statuses(first) == {
        _stem(truth, 0): "ingested",
        _stem(truth, EXPANSION_INDEX): "ingested",
        _stem(truth, LATE): "failed",
        _stem(truth, TRUNCATED): "failed",
        _stem(truth, REFUSED): "failed",
    }
    lines = {_item(line.split(": ", 1)[0]): line for line in first.failures}
    assert "HTTP 404" in lines[_stem(truth, LATE)]
    assert "not a readable raster" in lines[_stem(truth, TRUNCATED)]
    assert "localhost" in lines[_stem(truth, REFUSED)]
    assert all(line.endswith(f"(failed 1 of {MAX_TRIES} tries; tried again next pass)") for line in first.failures)
    assert len(first.failures) == 3 and first.retried == ()
    assert [(_item(r.source), r.acquired, r.tries) for r in retried.records[0]] == [
        (_stem(truth, i), truth.scenes[i].acquired, 1) for i in (LATE, TRUNCATED, REFUSED)
    ]
    assert not any(path.endswith("refused.tif") for path, _ in retried.fetched[0])  # refused before any request


@pytest.mark.slow
def test_the_next_pass_ingests_the_older_item_and_its_rules_see_it(retried: Retried, truth: DemoSite) -> None:
    second = retried.passes[1]
    assert [(_item(r.source), r.tries) for r in second.retried] == [
        (_stem(truth, i), 1) for i in (LATE, TRUNCATED, REFUSED)
    ]
    assert _statuses(second) == {
        _stem(truth, LATE): "ingested",
        _stem(truth, TRUNCATED): "failed",
        _stem(truth, REFUSED): "failed",
    }
    assert all(line.endswith(f"(failed 2 of {MAX_TRIES} tries; tried again next pass)") for line in second.failures)
    assert len(second.failures) == 2
    # Searched at the failed items' own times only: no good image was downloaded again.
    assert sorted(retried.fetched[1]) == [("/late.tif", 200), ("/truncated.tif", 200)]
    assert [_item(r.source) for r in retried.records[1]] == [_stem(truth, TRUNCATED), _stem(truth, REFUSED)]
    # The older scene is a new observation to the rules: analyzed, evaluated, and no alert (it shows
    # no new buildings).
    assert second.analyzed == (truth.name,) and second.alerts == ()
    with Workspace.open(retried.root) as ws:
        site = ws.catalog.site(truth.name)
        late = next(o for o in ws.catalog.observations(site) if o.acquired == truth.scenes[LATE].acquired)
        [rule] = ws.catalog.rules(site)
    assert late.id in rule.seen


@pytest.mark.slow
def test_an_item_that_stays_broken_is_given_up_once(retried: Retried, truth: DemoSite) -> None:
    third, fourth = retried.passes[2], retried.passes[3]
    assert [(_item(r.source), r.tries) for r in third.retried] == [(_stem(truth, i), 2) for i in (TRUNCATED, REFUSED)]
    assert _statuses(third) == {_stem(truth, TRUNCATED): "failed", _stem(truth, REFUSED): "failed"}
    assert len(third.failures) == 2
    assert all(line.endswith(f"(failed {MAX_TRIES} tries; given up)") for line in third.failures)
    assert retried.fetched[2] == [("/truncated.tif", 200)]
    # Given up: not searched for, nor reported, again; the records stay.
    assert fourth == PassReport((), (), (), (), (), ()) and retried.fetched[3] == []
    assert [(_item(r.source), r.tries) for r in retried.records[3]] == [
        (_stem(truth, i), MAX_TRIES) for i in (TRUNCATED, REFUSED)
    ]


@pytest.mark.slow
def test_the_cli_shows_retries_and_what_is_given_up(
    retried: Retried, truth: DemoSite, capsys: pytest.CaptureFixture[str]
) -> None:
    with Workspace.open(retried.root) as ws:
        _print(ws, retried.passes[1], as_json=False)
        shown = capsys.readouterr()
        late = _stem(truth, LATE)
        assert any(
            line.startswith("retrying  ")
            and line.split()[1].endswith(late)
            and f"failed 1 of {MAX_TRIES} tries before" in line
            for line in shown.out.splitlines()
        ), shown.out
        assert any(line.startswith("ingested  ") and late in line for line in shown.out.splitlines()), shown.out
        _print(ws, retried.passes[2], as_json=False)
        shown = capsys.readouterr()
        given_up = [line for line in shown.err.splitlines() if line.endswith("given up)")]
        assert len(given_up) == 2 and all(line.startswith("error: ") for line in given_up), shown.err
        _print(ws, retried.passes[2], as_json=True)
        summary = json.loads(capsys.readouterr().out)
    assert [(r["site"], _item(r["source"]), r["tries"]) for r in summary["retried"]] == [
        (truth.name, _stem(truth, i), 2) for i in (TRUNCATED, REFUSED)
    ]
    assert summary["failures"] == list(retried.passes[2].failures)
    assert [(o["source"], o["status"]) for o in summary["ingested"]] == [
        (o.source, o.status) for o in retried.passes[2].ingested
    ]


# --- download folders of killed runs --------------------------------------------------------------

_HOLD = """
import sys
from pathlib import Path
from sitewatch.ingest.resolve import downloads
from sitewatch.workspace import Workspace

with Workspace.open(Path(sys.argv[1])) as ws, downloads(ws) as folder:
    (folder / "asset.tif").write_bytes(b"half an image")
    print(folder, flush=True)
    sys.stdin.readline()
"""


def _holder(root: Path) -> tuple[subprocess.Popen[str], Path]:
    """A process inside ``downloads()`` on ROOT's workspace, waiting on its stdin; its folder."""
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(root)],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    stdout: IO[str] | None = process.stdout
    assert stdout is not None
    ready, _, _ = select.select([stdout], [], [], HELPER_TIMEOUT_S)
    if not ready:
        process.kill()
        process.wait(HELPER_TIMEOUT_S)
        pytest.fail(f"the helper did not report its download folder within {HELPER_TIMEOUT_S:.0f} s")
    return process, Path(stdout.readline().strip())


def _end(process: subprocess.Popen[str]) -> None:
    """Let a holder leave ``downloads()`` (closing its stdin); kill it if it does not."""
    if process.stdin is not None:
        process.stdin.close()
    try:
        process.wait(HELPER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(HELPER_TIMEOUT_S)


@pytest.mark.slow
def test_a_pass_removes_download_folders_of_killed_runs_only(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    Workspace.create(root).close()
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    killed, stale = _holder(root)
    live, in_use = _holder(root)
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait(HELPER_TIMEOUT_S)
        unlocked = root / ".downloads" / "made-but-never-locked"
        unlocked.mkdir()
        assert (stale / IN_USE).is_file() and (stale / "asset.tif").is_file()  # SIGKILL ran no clean-up
        with Workspace.open(root) as ws:
            report = monitor_once(ws, Sources(folders=(incoming,)), objects=None)
        assert report == PassReport((), (), (), (), (), ())
        assert not stale.exists() and not unlocked.exists()
        assert (in_use / "asset.tif").read_bytes() == b"half an image"  # its process is alive: left alone
    finally:
        _end(live)
        killed.kill()
        killed.wait(HELPER_TIMEOUT_S)
    assert live.returncode == 0 and not in_use.exists()  # and it removed its own folder on the way out
