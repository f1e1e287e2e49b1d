"""Search by description: colour names in CIELAB, boxes measured in metres on synthetic arrays (with
haze and dim light), the catalog's detections and watch rules, and the demo site's red trailer
found end to end, stored, and caught again by a watch rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from affine import Affine
from shapely.geometry import Polygon

from sitewatch.analyze import analyze_site
from sitewatch.catalog.db import Catalog
from sitewatch.catalog.models import Detection
from sitewatch.catalog.schema import MIGRATIONS
from sitewatch.demo.build import DemoResult, build_demo
from sitewatch.detect.colour import colour_range, name_of
from sitewatch.detect.find import CLASS, SOURCE, Candidate, Query, find_objects, parse_span, resolvable, search
from sitewatch.errors import AlreadyExists, InputError, UnknownName
from sitewatch.watch.evaluate import evaluate_rules
from sitewatch.watch.rules import save_search
from sitewatch.workspace import Workspace
from tests.conftest import run_sitewatch

GSD = 0.5
GROUND = (150.0, 150.0, 146.0)
RED = (206.0, 26.0, 30.0)
BLUE = (40.0, 72.0, 150.0)
TRANSFORM = Affine(GSD, 0.0, 500_000.0, 0.0, -GSD, 4_000_000.0)


def scene(
    colour: tuple[float, float, float],
    length_m: float,
    width_m: float,
    angle_deg: float = 0.0,
    size: int = 160,
    seed: int = 0,
) -> np.ndarray:
    """Textured grey ground ``(3, size, size)`` with one rotated box of COLOUR in the middle, drawn
    8 times finer and averaged down, so edge pixels mix box and ground as a sensor's do."""
    fine = 8
    cover = np.zeros((size * fine, size * fine), np.float32)
    rect = ((size * fine / 2, size * fine / 2), (length_m / GSD * fine, width_m / GSD * fine), angle_deg)
    cv2.fillPoly(cover, [np.rint(cv2.boxPoints(rect)).astype(np.int32)], 1.0)
    share = cv2.resize(cover, (size, size), interpolation=cv2.INTER_AREA)[..., None]
    noise = np.random.default_rng(seed).normal(0.0, 4.0, (size, size, 1)).astype(np.float32)
    image = (1 - share) * (np.asarray(GROUND, np.float32) + noise) + share * np.asarray(colour, np.float32)
    return np.moveaxis(np.clip(image, 0, 255), -1, 0)


def search_red(image: np.ndarray, length: str = "12-20m", colour: str = "red") -> list[Candidate]:
    valid = np.ones(image.shape[1:], bool)
    return find_objects(image, valid, TRANSFORM, GSD, colour_range(colour), parse_span(length))


# --- pure: arrays in, boxes out -----------------------------------------------------------------


@pytest.mark.parametrize("angle", [0.0, 30.0, 90.0])
def test_red_box_is_found_with_its_length_and_width(angle: float) -> None:
    [best, *_] = search_red(scene(RED, 16.0, 3.0, angle))
    assert best.length_m == pytest.approx(16.0, abs=GSD)
    assert best.width_m == pytest.approx(3.0, abs=GSD)
    assert best.score > 0.8
    assert best.box.area == pytest.approx(best.length_m * best.width_m, rel=0.01)
    middle = TRANSFORM @ (80, 80)  # the centre of the picture
    assert best.box.centroid.distance(Polygon.from_bounds(*middle, *middle).centroid) < 1.0


def test_red_box_under_haze_and_dim_light_is_still_found() -> None:
    clear = scene(RED, 16.0, 3.0, 20.0)
    hazy = 0.7 * clear + 0.3 * 255.0  # 30 % of the way to white
    dim = 0.7 * hazy  # and a lower sun
    [clear_best, *_] = search_red(clear)
    [best, *_] = search_red(dim)
    assert best.length_m == pytest.approx(16.0, abs=GSD) and best.width_m == pytest.approx(3.0, abs=GSD)
    assert best.score > 0.8
    assert name_of(best.lab, (60.0, 0.0, 0.0)) == "red"
    assert best.box.centroid.distance(clear_best.box.centroid) < GSD


def test_blue_box_is_not_red_and_red_box_is_not_blue() -> None:
    assert search_red(scene(BLUE, 16.0, 3.0)) == []
    [blue] = search_red(scene(BLUE, 16.0, 3.0), colour="blue")
    assert blue.length_m == pytest.approx(16.0, abs=GSD)
    assert search_red(scene(RED, 16.0, 3.0), colour="blue") == []


@pytest.mark.parametrize("length", [6.0, 30.0])
def test_red_box_of_the_wrong_length_is_filtered_out(length: float) -> None:
    assert search_red(scene(RED, length, 3.0, size=200)) == []


def test_width_range_filters_too() -> None:
    image = scene(RED, 16.0, 3.0)
    valid = np.ones(image.shape[1:], bool)
    red, length = colour_range("red"), parse_span("12-20m")
    assert find_objects(image, valid, TRANSFORM, GSD, red, length, parse_span("2-4m", "--width"))
    assert find_objects(image, valid, TRANSFORM, GSD, red, length, parse_span("6-8m", "--width")) == []


@pytest.mark.parametrize(
    ("rgb", "name"),
    [
        ((206, 26, 30), "red"),
        ((255, 0, 0), "red"),
        ((204, 112, 46), "orange"),
        ((214, 180, 44), "yellow"),
        ((42, 98, 64), "green"),
        ((40, 72, 150), "blue"),
        ((0, 0, 255), "blue"),
        ((236, 236, 232), "white"),
        ((30, 32, 36), "black"),
        ((92, 92, 92), "grey"),
    ],
)
def test_colour_names_from_lab(rgb: tuple[int, int, int], name: str) -> None:
    from skimage.color import rgb2lab

    lab = rgb2lab(np.asarray([[rgb]], float) / 255.0)[0, 0]
    ground = (55.0, 0.0, 0.0) if name != "grey" else (70.0, 0.0, 0.0)
    assert name_of((float(lab[0]), float(lab[1]), float(lab[2])), ground) == name


def test_neutral_on_its_own_ground_has_no_colour_name() -> None:
    assert name_of((60.0, 1.0, 2.0), (60.0, 0.0, 0.0)) is None


def test_bad_colour_and_ranges_are_refused_in_one_line() -> None:
    with pytest.raises(UnknownName, match=r"unknown colour 'purple'; known colours: red, orange, .*grey"):
        colour_range("purple")
    assert colour_range(" Gray ").name == "grey" and colour_range("dark").name == "black"
    for text in ("20-12m", "abc", "0-5m", "12m-"):
        with pytest.raises(InputError, match="--length"):
            parse_span(text)
    assert parse_span("12-20m") == parse_span("12 .. 20") and str(parse_span("2.5-4m")) == "2.5-4m"


def test_resolvable_needs_three_pixels_over_the_shortest_length() -> None:
    assert resolvable(0.5, parse_span("12-20m")) and resolvable(3.0, parse_span("12-20m"))
    assert not resolvable(10.0, parse_span("12-20m")) and not resolvable(0.5, parse_span("1-2m"))


# --- catalog: detections and watch rules --------------------------------------------------------


def test_catalog_migration_adds_detections_and_watch_rules(tmp_path: Path) -> None:
    with Catalog(tmp_path / "catalog.sqlite", create=True) as catalog:
        assert catalog.execute("PRAGMA user_version")[0][0] == len(MIGRATIONS)
        tables = {row[0] for row in catalog.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"detections", "watch_rules"} <= tables
        columns = {row[1] for row in catalog.execute("PRAGMA table_info(detections)")}
        assert {"class", "score", "geometry_wkt", "colour", "length_m", "width_m", "source", "attrs"} <= columns
        assert catalog.integrity_ok()


# --- end to end on the demo site ----------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoResult:
    return build_demo(tmp_path_factory.mktemp("find") / "ws", seed=7)


@pytest.fixture(scope="module")
def found(demo: DemoResult) -> dict[str, Any]:
    shown = run_sitewatch(
        "find", "--site", demo.truth.name, "--color", "red", "--length", "12-20m", "--limit", "50", "--json",
        workspace=demo.workspace,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    result: dict[str, Any] = json.loads(shown.stdout)
    return result


def test_demo_red_trailer_is_the_top_result_on_its_date_and_zone(demo: DemoResult, found: dict[str, Any]) -> None:
    truth = demo.truth.red_trailer
    [top, *others] = found["results"]
    assert top["date"][:10] == f"{demo.truth.red_trailer_date:%Y-%m-%d}"
    assert top["zone"] == truth.zone == "loading area"
    from shapely import wkt

    assert wkt.loads(top["box_wkt"]).centroid.distance(Polygon(truth.corners_utm).centroid) < 2.0
    assert 10.0 <= top["length_m"] <= 16.0 and 2.0 <= top["width_m"] <= 4.5
    assert all(other["score"] < top["score"] for other in others)  # nothing on another date scores above it
    assert all(o["zone"] != "loading area" for o in others)  # the trailer is the only red thing there
    assert Path(top["chip"]).is_file() and Path(top["chip"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [u["reason"][:6] for u in found["unsearched"]] == ["cloudy"]


def test_demo_results_are_stored_as_detections(demo: DemoResult, found: dict[str, Any]) -> None:
    with Workspace.open(demo.workspace) as ws:
        site = ws.catalog.site(demo.truth.name)
        stored = ws.catalog.detections(site, source=SOURCE)
    assert {d.id for d in stored} >= {r["detection_id"] for r in found["results"]}
    best: Detection = stored[0]
    assert best.id == found["results"][0]["detection_id"]
    assert (best.cls, best.colour, best.attrs["zone"]) == (CLASS, "red", "loading area")


def test_demo_searching_again_replaces_rather_than_duplicates(demo: DemoResult, found: dict[str, Any]) -> None:
    with Workspace.open(demo.workspace) as ws:
        site = ws.catalog.site(demo.truth.name)
        before = len(ws.catalog.detections(site, source=SOURCE))
        again = search(ws, demo.truth.name, Query("red", parse_span("12-20m")), chips=False)
        assert len(ws.catalog.detections(site, source=SOURCE)) == before
    assert again.results[0].acquired == demo.truth.red_trailer_date


def test_demo_bad_input_is_one_line(demo: DemoResult) -> None:
    name = demo.truth.name
    for args, message in [
        (("--color", "purple", "--length", "12-20m"), "known colours: red"),
        (("--color", "red", "--length", "20-12m"), "--length"),
        (("--color", "red", "--length", "abc"), "--length"),
        (("--color", "red", "--length", "12-20m", "--zone", "nowhere"), "no zone 'nowhere'"),
    ]:
        shown = run_sitewatch("find", "--site", name, *args, workspace=demo.workspace)
        assert shown.returncode == 1 and message in shown.stderr and len(shown.stderr.strip().splitlines()) == 1
    tiny = run_sitewatch("find", "--site", name, "--color", "red", "--length", "0.5-1m", workspace=demo.workspace)
    assert tiny.returncode == 0 and "not resolvable at this GSD" in tiny.stdout and "no matches" in tiny.stdout


def test_demo_watch_rule_fires_once_on_a_new_matching_observation(demo: DemoResult) -> None:
    name = demo.truth.name
    saved = run_sitewatch(
        "find", "--site", name, "--color", "red", "--length", "12-20m", "--zone", "loading area",
        "--save-rule", "red trailer", workspace=demo.workspace,
    )  # fmt: skip
    assert saved.returncode == 0 and "saved watch rule 'red trailer'" in saved.stdout, saved.stderr
    with Workspace.open(demo.workspace) as ws:
        site = ws.catalog.site(name)
        [rule] = ws.catalog.rules(site)
        assert rule.kind == "find" and rule.query["zone"] == "loading area"
        assert evaluate_rules(ws, name) == []  # everything there was at saving is seen
        with pytest.raises(AlreadyExists):
            save_search(ws, search(ws, name, Query("red", parse_span("12-20m")), chips=False), "red trailer")
        # The 07-07 observation arrives "new": the rule has not seen it.
        trailer = next(o for o in ws.catalog.observations(site) if o.acquired == demo.truth.red_trailer_date)
        ws.catalog.rule_evaluated(rule, [i for i in rule.seen if i != trailer.id], None)
        result = analyze_site(ws, name, align=False)
        [alert] = result.alerts
        assert (alert.rule, alert.observation_id) == ("red trailer", trailer.id)
        ids = set(alert.evidence["detection_ids"])
        caught = [d for d in ws.catalog.detections(site, observation_id=trailer.id) if d.id in ids]
        assert [d.attrs["zone"] for d in caught] == ["loading area"]
        assert all(d.attrs["rule"] == "red trailer" for d in caught)
        assert evaluate_rules(ws, name) == []  # idempotent: never twice for one observation
        [rule] = ws.catalog.rules(site)
        assert rule.last_fired_observation_id == trailer.id
        assert len(rule.seen) == len(ws.catalog.observations(site))
