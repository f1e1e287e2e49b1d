"""The workbench in a real headless Chromium (Debian's ``chromium``, driven by Playwright), against
``sitewatch serve`` on the demo site as an analyst would use it: the watchlist, the two dates around
the scripted expansion compared with the new buildings outlined, an annotation that is still there
after a reload, a change confirmed, and the alert that ``sitewatch monitor --once`` raised for a new
image in a watched folder. Each step leaves a screenshot in ``test-artifacts/e2e/``.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sitewatch.analyze import analyze_site
from sitewatch.demo.generator import DEMOLITION_INDEX, RED_TRAILER_INDEX, DemoSite, generate
from sitewatch.workspace import Workspace
from tests.conftest import run_sitewatch
from tests.test_watch import site_with_zones

playwright_sync = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (dev extra)")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(os.environ.get("SITEWATCH_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))
SHOTS = ARTIFACTS / "e2e"
RULE = "demolition"
READY = "body[data-ready='1']"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)"),
]


@dataclass(frozen=True)
class Served:
    url: str
    root: Path
    truth: DemoSite


def _day(index: int, truth: DemoSite) -> str:
    return f"{truth.scenes[index].acquired:%Y-%m-%d}"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The demo site up to the scripted surge, analyzed with object counts; a rule for removed
    buildings; the demolition image dropped in a watched folder and picked up by ``monitor --once``;
    then ``sitewatch serve`` on a free loopback port."""
    base = tmp_path_factory.mktemp("e2e")
    truth = generate(base / "imagery", seed=7)
    root = site_with_zones(base / "ws", truth, range(DEMOLITION_INDEX))
    with Workspace.open(root) as ws:
        analyze_site(ws, truth.name, objects="auto")
    added = run_sitewatch(
        "watch", "add", "--site", truth.name, "--change", "removed", "--min-area", "1000", "--name", RULE,
        workspace=root,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    watched = base / "incoming"
    watched.mkdir()
    shutil.copy(truth.scenes[DEMOLITION_INDEX].path, watched)
    monitored = run_sitewatch("monitor", "--once", "--folder", watched, workspace=root, timeout=600)
    assert monitored.returncode == 0, monitored.stderr

    exe = Path(sys.executable).parent / "sitewatch"
    server = subprocess.Popen(
        [str(exe), "serve", "--workspace", str(root), "--port", str(_free_port())],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = _served_url(server)
        yield Served(url=url, root=root, truth=truth)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _served_url(server: subprocess.Popen[str], timeout_s: float = 60.0) -> str:
    """The URL ``sitewatch serve`` prints once it listens (read line by line, bounded in time)."""
    assert server.stdout is not None
    deadline = time.monotonic() + timeout_s
    seen: list[str] = []
    while time.monotonic() < deadline:
        line = server.stdout.readline()
        if not line:
            break
        seen.append(line)
        found = re.search(r"serving .* at (http://\S+)", line)
        if found:
            return found.group(1).rstrip("/")
    raise AssertionError("sitewatch serve did not say where it listens:\n" + "".join(seen))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_sync.sync_playwright() as play:
        launched = play.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh page per test; any script error on it fails the test."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)  # the whole suite shares two cores with these pages
    errors: list[str] = []
    console: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    yield page
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:  # what the page looked like and said, for the CI log
        shot(page, f"FAILED-{request.node.name}")
        print("page console:", *console, sep="\n  ")
    context.close()
    assert not errors, f"script errors on the page: {errors}"


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def open_view(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_selector(READY, timeout=60_000)


def compare_url(served: Served) -> str:
    expansion = next(e for e in served.truth.events if e.kind == "appeared")
    return (
        f"{served.url}/sites/{served.truth.name}/compare"
        f"?before={expansion.date_before:%Y-%m-%d}&after={expansion.date_after:%Y-%m-%d}"
    )


def test_watchlist_shows_the_site_its_latest_image_and_the_open_alert(served: Served, page: Any) -> None:
    open_view(page, served.url + "/")
    row = page.locator(f"[data-testid=site-row][data-site='{served.truth.name}']")
    assert row.count() == 1
    assert _day(DEMOLITION_INDEX, served.truth) in row.inner_text()
    assert row.locator("[data-testid=open-alerts]").inner_text().strip().startswith("1")
    assert row.locator("[data-testid=sparkline]").count() == 1
    assert page.locator("#map .leaflet-interactive").count() >= 1
    shot(page, "01-watchlist")


def test_compare_around_the_expansion_outlines_the_new_buildings(served: Served, page: Any) -> None:
    expansion = next(e for e in served.truth.events if e.kind == "appeared")
    before, after = f"{expansion.date_before:%Y-%m-%d}", f"{expansion.date_after:%Y-%m-%d}"
    open_view(page, f"{served.url}/sites/{served.truth.name}")
    assert page.locator("[data-testid=obs-row]").count() == DEMOLITION_INDEX + 1
    shot(page, "02-site")
    page.select_option("[data-testid=compare-before]", before)
    page.select_option("[data-testid=compare-after]", after)
    page.click("[data-testid=compare-go]")
    page.wait_for_selector(READY, timeout=60_000)
    assert f"before={before}" in page.url and f"after={after}" in page.url
    page.wait_for_selector("#map-after path.sw-change-appeared", timeout=30_000)
    assert page.locator("[data-testid=change-item][data-kind=appeared]").count() >= 1
    assert page.locator("#map-after img.leaflet-tile-loaded").count() >= 1
    shot(page, "03-compare-side-by-side")

    page.click("[data-testid=mode-swipe]")
    page.wait_for_selector("#map-swipe path.sw-change-appeared", timeout=30_000)
    assert "mode=swipe" in page.url
    page.fill("[data-testid=swipe-range]", "30")
    shot(page, "04-compare-swipe")


def test_annotation_is_there_after_a_reload(served: Served, page: Any) -> None:
    open_view(page, compare_url(served))
    page.click("[data-testid=annotate-point]")
    box = page.locator("#map-after").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    page.fill("[data-testid=annotation-label]", "guard post")
    page.fill("[data-testid=annotation-note]", "new since June; seen from the gate")
    page.click("[data-testid=annotation-save]")
    page.wait_for_selector("[data-testid=annotation-item]:has-text('guard post')")
    page.reload()
    page.wait_for_selector(READY, timeout=60_000)
    item = page.locator("[data-testid=annotation-item]:has-text('guard post')")
    assert item.count() == 1
    shot(page, "05-annotation-after-reload")

    from sitewatch.review.annotations import list_annotations

    with Workspace.open(served.root) as ws:
        saved = [a for a in list_annotations(ws, served.truth.name) if a.label == "guard post"]
    assert len(saved) == 1 and saved[0].note == "new since June; seen from the gate"
    assert saved[0].geometry.geom_type == "Point" and saved[0].scene_id is not None


def test_confirming_a_change_is_stored_and_shown(served: Served, page: Any) -> None:
    open_view(page, compare_url(served))
    item = page.locator("[data-testid=change-item][data-kind=appeared]").first
    change_id = int(item.get_attribute("data-change-id"))
    item.click()
    popup = page.locator(f".leaflet-popup .popup[data-change-id='{change_id}']")
    popup.locator("[data-testid=review-reason]").fill("hall and annex visible on the after image")
    popup.locator("[data-testid=confirm-change]").click()
    listed = page.locator(f"[data-testid=change-item][data-change-id='{change_id}'] [data-testid=review-state]")
    listed.filter(has_text="confirmed").wait_for()
    page.reload()
    page.wait_for_selector(READY, timeout=60_000)
    again = page.locator(f"[data-testid=change-item][data-change-id='{change_id}']")
    assert "confirmed" in again.inner_text()
    shot(page, "06-change-confirmed")

    from sitewatch.review.reviews import current_reviews

    with Workspace.open(served.root) as ws:
        review = current_reviews(ws, served.truth.name)[change_id]
    assert (review.verdict, review.reason) == ("confirmed", "hall and annex visible on the after image")


def test_inbox_shows_the_alert_monitor_raised_and_links_to_its_evidence(served: Served, page: Any) -> None:
    open_view(page, served.url + "/alerts")
    rows = page.locator("[data-testid=alert-row]")
    assert rows.count() == 1
    assert RULE in rows.first.inner_text()
    assert _day(DEMOLITION_INDEX, served.truth) in rows.first.inner_text()
    shot(page, "07-alert-inbox")
    rows.first.locator("[data-testid=alert-evidence]").click()
    page.wait_for_selector(READY, timeout=60_000)
    assert f"after={_day(DEMOLITION_INDEX, served.truth)}" in page.url
    page.wait_for_selector("path.sw-change-removed", timeout=30_000)
    shot(page, "08-alert-evidence")


def test_search_form_gives_result_chips(served: Served, page: Any) -> None:
    open_view(page, f"{served.url}/sites/{served.truth.name}/search")
    page.select_option("[data-testid=find-colour]", "red")
    page.fill("[data-testid=find-length]", "12-20m")
    page.click("[data-testid=find-go]")
    page.wait_for_selector("[data-testid=find-chip]", timeout=120_000)
    shot(page, "09-search")
    assert _day(RED_TRAILER_INDEX, served.truth) in page.locator("[data-testid=find-chip]").first.inner_text()
