"""The workbench's JSON API over the analyzed demo site: the watchlist, the timeline, the changes between
two images (the scripted expansion found in its interval and nothing outside it), activity, search,
the analyst's records (annotations, reviews, events) and the alert inbox; and the pages that use them."""

from __future__ import annotations

import html
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from shapely.geometry import shape
from shapely.ops import unary_union

from sitewatch.demo.generator import DemoSite
from sitewatch.grid import to_crs
from sitewatch.watch.evaluate import evaluate_rules
from sitewatch.watch.rules import ChangeWatch, add_rule
from sitewatch.web.app import create_app
from sitewatch.web.security import CSRF_COOKIE, CSRF_HEADER
from sitewatch.workspace import Workspace
from tests.test_watch import NEW_BUILDINGS, analyzed_demo, built_area

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DemoSite]:
    """The demo site, every date ingested and analyzed (no object counts), with an alert on the expansion."""
    root, truth = analyzed_demo(tmp_path_factory.mktemp("web"))
    with Workspace.open(root) as ws:
        rule = add_rule(ws, truth.name, ChangeWatch("appeared", 1000.0, NEW_BUILDINGS), "expansion")
        ws.catalog.rule_evaluated(rule, [], None)  # as if the rule had been there before the images came
        assert len(evaluate_rules(ws, truth.name)) == 1
    return root, truth


@pytest.fixture(scope="module")
def client(demo: tuple[Path, DemoSite]) -> Iterator[TestClient]:
    """A client of the workbench on loopback, holding the CSRF cookie a page load gives."""
    with TestClient(create_app(demo[0]), base_url="http://127.0.0.1") as client:
        assert client.get("/").status_code == 200
        client.headers[CSRF_HEADER] = client.cookies[CSRF_COOKIE]
        yield client


def api(name: str, rest: str = "") -> str:
    return f"/api/sites/{quote(name, safe='')}{rest}"


def features_in_grid(collection: dict[str, object], epsg: int) -> list[tuple[dict[str, object], object]]:
    """(properties, geometry in the site grid CRS) of each feature."""
    return [
        (f["properties"], to_crs(shape(f["geometry"]), "EPSG:4326", epsg))
        for f in collection["features"]  # type: ignore[attr-defined]
    ]


def expansion_of(truth: DemoSite) -> tuple[str, str]:
    event = next(e for e in truth.events if e.kind == "appeared")
    return event.date_before.date().isoformat(), event.date_after.date().isoformat()


# --- sites and their timeline -------------------------------------------------------------------


def test_sites_list_the_demo_site_with_its_latest_image_and_open_alerts(
    client: TestClient, demo: tuple[Path, DemoSite]
) -> None:
    _, truth = demo
    [site] = client.get("/api/sites").json()
    assert site["name"] == truth.name and site["url"] == f"/sites/{quote(truth.name, safe='')}"
    assert site["latest"] == truth.dates[-1].date().isoformat() and site["observations"] == len(truth.dates)
    assert {z["name"] for z in site["zones"]} == {*truth.zones, NEW_BUILDINGS}
    assert site["outline"]["type"] == "Polygon" and site["synthetic"] is True
    west, south, east, north = site["bbox"]
    assert west < east and south < north and 38 < west < 39 and 28 < south < 29  # lon/lat, not metres
    assert site["open_alerts"] == 1
    client.get(api(truth.name, "/activity")).raise_for_status()
    [site] = client.get("/api/sites").json()  # the activity is known now: the sparkline comes with it
    assert site["sparkline"]["dates"][0] == truth.dates[0].date().isoformat()
    assert len(site["sparkline"]["values"]) == len(site["sparkline"]["dates"]) == len(truth.dates) - 1  # one cloudy


def test_site_timeline_says_which_images_were_left_out_and_why(client: TestClient, demo: tuple[Path, DemoSite]) -> None:
    _, truth = demo
    data = client.get(api(truth.name)).json()
    timeline = data["observations"]
    assert [o["date"] for o in timeline] == [d.date().isoformat() for d in truth.dates]
    cloudy = [o for o in timeline if not o["usable"]]
    assert [o["date"] for o in cloudy] == [s.acquired.date().isoformat() for s in truth.scenes if s.cloudy]
    assert "cloudy" in cloudy[0]["flags"] and "cloudy" in cloudy[0]["left_out"]
    assert timeline[0]["align_status"] == "reference" and timeline[0]["gsd_m"] == pytest.approx(truth.gsd)
    assert all(
        o["tiles"].startswith(f"/tiles/{quote(truth.name, safe='')}/{o['id']}/{{z}}/{{x}}/{{y}}.png") for o in timeline
    )
    assert data["kind_colours"]["appeared"].startswith("#")
    assert client.get(api("no such site")).status_code == 404


# --- changes between two images ----------------------------------------------------------------------


def test_changes_between_two_images_hold_the_expansion_and_nothing_from_outside(
    client: TestClient, demo: tuple[Path, DemoSite]
) -> None:
    _, truth = demo
    before, after = expansion_of(truth)
    data = client.get(api(truth.name, "/changes"), params={"before": before, "after": after}).json()
    changes = features_in_grid(data, truth.epsg)
    assert changes and (data["before"], data["after"]) == (before, after)
    for props, _ in changes:  # each happened between the two images
        assert before <= str(props["date_from"])[:10] and before < str(props["date_to"])[:10] <= after
    built = built_area(truth)
    appeared = unary_union([g for p, g in changes if p["kind"] == "appeared"])
    assert appeared.intersection(built).area > 0.8 * built.area
    # Between the images after the expansion the new buildings are not new any more (vehicles parked
    # beside them come and go: transient).
    later = client.get(
        api(truth.name, "/changes"), params={"before": after, "after": truth.dates[-1].date().isoformat()}
    )
    for props, geometry in features_in_grid(later.json(), truth.epsg):
        assert str(props["date_from"])[:10] >= after
        new_again = props["kind"] == "appeared" and props["persistence"] == "persistent"
        assert not new_again or geometry.intersection(built).area < 0.2 * built.area


def test_changes_of_one_zone_are_those_touching_it(client: TestClient, demo: tuple[Path, DemoSite]) -> None:
    _, truth = demo
    before, after = expansion_of(truth)
    params = {"before": before, "after": after}
    everywhere = client.get(api(truth.name, "/changes"), params=params).json()["features"]
    inside = client.get(api(truth.name, "/changes"), params={**params, "zone": NEW_BUILDINGS}).json()
    assert inside["zone"] == NEW_BUILDINGS
    zone = built_area(truth).buffer(2.5)  # the zone is the new buildings grown by 2 m
    changes = features_in_grid(inside, truth.epsg)
    assert changes and all(g.intersects(zone) for _, g in changes)
    assert {p["id"] for p, _ in changes} < {f["properties"]["id"] for f in everywhere}


def test_bad_intervals_and_zones_are_refused_in_one_line(client: TestClient, demo: tuple[Path, DemoSite]) -> None:
    _, truth = demo
    before, after = expansion_of(truth)
    response = client.get(api(truth.name, "/changes"), params={"before": after, "after": before})
    assert response.status_code == 400 and "must be later than before" in response.json()["detail"]
    response = client.get(api(truth.name, "/changes"), params={"zone": "nowhere"})
    assert response.status_code == 404 and "has no zone 'nowhere'" in response.json()["detail"]
    response = client.get(api(truth.name, "/changes"), params={"before": "last tuesday"})
    assert response.status_code == 422 and "\n" not in response.json()["detail"]


# --- detections, activity, search --------------------------------------------------------------------


def test_detections_say_when_nothing_was_counted(client: TestClient, demo: tuple[Path, DemoSite]) -> None:
    _, truth = demo
    data = client.get(api(truth.name, "/detections"), params={"date": truth.dates[3].date().isoformat()}).json()
    assert data["type"] == "FeatureCollection" and data["counted_by"] is None and data["counts"] == []
    missing = (truth.dates[0] - timedelta(days=1)).date().isoformat()
    response = client.get(api(truth.name, "/detections"), params={"date": missing})
    assert response.status_code == 404 and truth.dates[0].date().isoformat() in response.json()["detail"]


def test_activity_has_the_surge_as_an_anomaly_against_its_baseline_band(
    client: TestClient, demo: tuple[Path, DemoSite]
) -> None:
    _, truth = demo
    data = client.get(api(truth.name, "/activity")).json()
    assert data["areas"][0]["zone"] is None
    loading = next(a for a in data["areas"] if a["zone"] == "loading area")["index"]
    surge = truth.surge_date.date().isoformat()
    assert [p["date"] for p in loading["anomalies"]] == [surge] and loading["anomalies"][0]["anomaly"] == "high"
    for low, median, high in zip(loading["low"], loading["median"], loading["high"], strict=True):
        assert (low, median, high) == (None, None, None) or low <= median <= high
    at = loading["dates"].index(surge)
    assert loading["values"][at] > loading["high"][at]
    assert data["sparkline"]["dates"] == data["areas"][0]["index"]["dates"]


def test_find_returns_the_red_trailer_with_a_chip_and_a_compare_link(
    client: TestClient, demo: tuple[Path, DemoSite]
) -> None:
    _, truth = demo
    response = client.post(api(truth.name, "/find"), json={"colour": "red", "length": "12-20", "limit": 5})
    data = response.json()
    assert response.status_code == 200, data
    assert data["query"]["length"] == "12-20m"
    best = data["results"][0]
    assert best["date"] == truth.red_trailer_date.date().isoformat() and best["zone"] == truth.red_trailer.zone
    assert 11 <= best["length_m"] <= 21 and best["geometry"]["type"] == "Polygon"
    assert best["compare_url"].endswith(f"after={best['date']}&zone={quote(best['zone']).replace('%20', '+')}")
    chip = client.get(best["chip"])
    assert chip.status_code == 200 and chip.headers["content-type"] == "image/png"
    assert chip.content.startswith(b"\x89PNG")
    bad = client.post(api(truth.name, "/find"), json={"colour": "purple", "length": "12-20"})
    assert bad.status_code == 400 and "purple" in bad.json()["detail"]


# --- the analyst's records ------------------------------------------------------------------------------


def test_annotation_create_list_edit_export_import_delete(client: TestClient, demo: tuple[Path, DemoSite]) -> None:
    _, truth = demo
    after = client.get(api(truth.name)).json()["observations"][3]
    centre = truth.site.centroid
    square = centre.buffer(0.0001, cap_style="square")
    body = {
        "geometry": json.loads(json.dumps(square.__geo_interface__)),
        "label": "new hall",
        "note": "roof done",
        "scene_id": after["scene_id"],
    }
    created = client.post(api(truth.name, "/annotations"), json=body)
    assert created.status_code == 200, created.json()
    feature = created.json()
    assert feature["properties"]["label"] == "new hall" and feature["properties"]["scene_id"] == after["scene_id"]
    assert feature["properties"]["image_date"][:10] == after["date"]
    listed = client.get(api(truth.name, "/annotations")).json()["features"]
    assert [f["properties"]["label"] for f in listed] == ["new hall"]
    edited = client.patch(f"/api/annotations/{feature['properties']['id']}", json={"label": "new hall (finished)"})
    assert edited.json()["properties"]["label"] == "new hall (finished)"
    download = client.get(api(truth.name, "/annotations.geojson"))
    assert download.headers["content-type"] == "application/geo+json"
    assert download.headers["content-disposition"].startswith("attachment; filename=")
    imported = client.post(
        api(truth.name, "/annotations/import"),
        content=download.content,
        headers={"content-type": "application/geo+json"},
    )
    assert imported.status_code == 200 and imported.json()["imported"] == 1
    for item in client.get(api(truth.name, "/annotations")).json()["features"]:
        assert client.delete(f"/api/annotations/{item['properties']['id']}").json()["removed"] is True
    assert client.get(api(truth.name, "/annotations")).json()["features"] == []
    assert client.delete(f"/api/annotations/{feature['properties']['id']}").status_code == 404
    outside = {**body, "geometry": {"type": "Point", "coordinates": [0.0, 0.0]}}
    refused = client.post(api(truth.name, "/annotations"), json=outside)
    assert refused.status_code == 400 and "\n" not in refused.json()["detail"]


def test_review_round_trip(client: TestClient, demo: tuple[Path, DemoSite]) -> None:
    _, truth = demo
    before, after = expansion_of(truth)
    params = {"before": before, "after": after, "zone": NEW_BUILDINGS}
    changes = client.get(api(truth.name, "/changes"), params=params).json()["features"]
    target = max(
        (f for f in changes if f["properties"]["kind"] == "appeared"), key=lambda f: f["properties"]["area_m2"]
    )
    change_id = target["properties"]["id"]
    url = api(truth.name, f"/changes/{change_id}/review")
    confirmed = client.post(url, json={"verdict": "confirmed"})
    assert confirmed.status_code == 200 and confirmed.json()["verdict"] == "confirmed"
    again = {
        f["properties"]["id"]: f for f in client.get(api(truth.name, "/changes"), params=params).json()["features"]
    }
    assert again[change_id]["properties"]["review"]["verdict"] == "confirmed"
    refused = client.post(url, json={"verdict": "rejected"})
    assert refused.status_code == 400 and "needs a reason" in refused.json()["detail"]
    rejected = client.post(url, json={"verdict": "rejected", "reason": "shadow of the hall"})
    assert rejected.json()["verdict"] == "rejected"
    again = {
        f["properties"]["id"]: f for f in client.get(api(truth.name, "/changes"), params=params).json()["features"]
    }
    assert again[change_id]["properties"]["review"] == {**rejected.json()}
    assert client.post(api(truth.name, "/changes/999999/review"), json={"verdict": "confirmed"}).status_code == 404


def test_events_round_trip(client: TestClient, demo: tuple[Path, DemoSite]) -> None:
    _, truth = demo
    created = client.post(api(truth.name, "/events"), json={"date": "2024-06-12", "label": "summit", "note": "Geneva"})
    assert created.status_code == 200, created.json()
    event = created.json()
    assert (event["date"], event["label"], event["note"]) == ("2024-06-12", "summit", "Geneva")
    assert [e["label"] for e in client.get(api(truth.name, "/events")).json()] == ["summit"]
    assert client.delete(f"/api/events/{event['id']}").json()["removed"] is True
    assert client.get(api(truth.name, "/events")).json() == []
    bad = client.post(api(truth.name, "/events"), json={"date": "2024-13-40", "label": "x"})
    assert bad.status_code == 422 and bad.json()["detail"].startswith("date:")


# --- alerts ---------------------------------------------------------------------------------------------


def test_alerts_link_to_their_evidence_and_can_be_acknowledged(client: TestClient, demo: tuple[Path, DemoSite]) -> None:
    _, truth = demo
    before, after = expansion_of(truth)
    [alert] = client.get("/api/alerts").json()
    assert alert["rule"] == "expansion" and alert["kind"] == "change" and alert["day"] == after
    assert alert["site"] == truth.name and "appeared change" in alert["summary"]
    site = quote(truth.name, safe="")
    zone = NEW_BUILDINGS.replace(" ", "+")
    assert alert["evidence_url"] == f"/sites/{site}/compare?before={before}&after={after}&zone={zone}"
    assert alert["acknowledged"] is None
    first = client.post(f"/api/alerts/{alert['id']}/ack", json={}).json()["acknowledged"]
    assert client.post(f"/api/alerts/{alert['id']}/ack", json={}).json()["acknowledged"] == first  # once
    assert client.get("/api/alerts").json()[0]["acknowledged"] == first
    assert client.get("/api/sites").json()[0]["open_alerts"] == 0
    assert client.post("/api/alerts/999/ack", json={}).status_code == 404


# --- pages ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("view", ["", "/compare", "/search"])
def test_site_pages_are_shells_carrying_their_data(client: TestClient, demo: tuple[Path, DemoSite], view: str) -> None:
    _, truth = demo
    response = client.get(f"/sites/{quote(truth.name, safe='')}{view}")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page = response.text
    start = page.index('<script type="application/json" id="page-data">') + len(
        '<script type="application/json" id="page-data">'
    )
    data = json.loads(page[start : page.index("</script>", start)])
    assert data["site"] == truth.name and data["page"] == (view.strip("/") or "site")
    assert '<script type="module" src="/static/' in page and "onclick" not in page


def test_missing_site_page_is_a_404_naming_the_sites(client: TestClient, demo: tuple[Path, DemoSite]) -> None:
    response = client.get("/sites/nowhere/compare")
    text = html.unescape(response.text)
    assert response.status_code == 404 and "no site 'nowhere'" in text and demo[1].name in text
