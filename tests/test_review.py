"""The analyst's records: annotations (checked, exported and imported back, all or nothing), reviews of
changes (kept across re-analysis, matched by place and date, not id), events, the precision reviews
give, the CLI over them (bad input refused in one line, nothing written) and the site report that
shows them, escaped."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from shapely import affinity
from shapely.geometry import LineString, Point, Polygon, box, mapping

from sitewatch.analyze import analyze_site
from sitewatch.catalog.db import Catalog
from sitewatch.catalog.models import Annotation, Change, Review, SiteEvent
from sitewatch.catalog.schema import MIGRATIONS
from sitewatch.demo.generator import DemoSite, generate
from sitewatch.errors import InputError, NotFound
from sitewatch.ingest.pipeline import ingest
from sitewatch.ingest.sources import SceneSource
from sitewatch.report.site import write_site_report
from sitewatch.review.annotations import (
    MAX_FEATURES,
    add_annotation,
    annotations_geojson,
    export_annotations,
    image_on,
    import_annotations,
    list_annotations,
    parse_annotation_geometry,
    parse_point,
    read_annotation_geometry,
    remove_annotation,
    update_annotation,
)
from sitewatch.review.events import add_event, list_events, remove_event, update_event
from sitewatch.review.reviews import (
    ReviewPrecision,
    current_reviews,
    list_reviews,
    remove_review,
    review_change,
    review_precision,
)
from sitewatch.settings import Limits
from sitewatch.sites import from_bbox, new_site
from sitewatch.workspace import Workspace
from tests.conftest import run_sitewatch

PLANT = "plant"
CENTRE = Point(38.35, 28.10)  # inside the plant, and inside the demo site


@pytest.fixture
def plant(tmp_path: Path) -> Path:
    """A workspace with one site and no imagery."""
    root = tmp_path / "plant"
    with Workspace.create(root) as ws:
        ws.catalog.add_site(new_site(PLANT, from_bbox("38.340,28.090,38.360,28.110")))
    return root


@pytest.fixture(scope="module")
def demo_built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DemoSite]:
    """The demo site's first four dates, ingested and analyzed by CVA without alignment (a few seconds:
    the tests need changes to judge, not good ones)."""
    base = tmp_path_factory.mktemp("review")
    truth = generate(base / "imagery", seed=7)
    root = base / "ws"
    with Workspace.create(root) as ws:
        ws.catalog.add_site(new_site(truth.name, truth.site))
        ingest(ws, [SceneSource(scene.path, scene.path.name) for scene in truth.scenes[:4]])
        analyze_site(ws, truth.name, detector="cva", align=False, objects=None)
    return root, truth


@pytest.fixture
def demo(demo_built: tuple[Path, DemoSite], tmp_path: Path) -> tuple[Path, str]:
    """A copy of the analyzed demo workspace for one test to change, and its site's name."""
    root, truth = demo_built
    return Path(shutil.copytree(root, tmp_path / "ws")), truth.name


def snapshot(root: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of the analyst's tables."""
    with sqlite3.connect(root / Catalog.FILENAME) as conn:
        return {t: conn.execute(f"SELECT * FROM {t}").fetchall() for t in ("annotations", "reviews", "site_events")}


def one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


# --- the catalog ---------------------------------------------------------------------------------


def test_catalog_round_trips_each_record_and_migrates_an_older_catalog(tmp_path: Path, plant: Path) -> None:
    now = datetime(2024, 6, 12, 9, 30, tzinfo=UTC)
    with Workspace.open(plant) as ws:
        site = ws.catalog.site(PLANT)
        sid = site.id or 0
        [mark] = ws.catalog.add_annotations([Annotation(sid, CENTRE, "gate", "north", None, None, "ann", now, now)])
        assert (mark.geometry.equals(CENTRE), mark.label, mark.note, mark.author, mark.created) == (
            True,
            "gate",
            "north",
            "ann",
            now,
        )
        moved = ws.catalog.update_annotation(replace(mark, label="gate 2", acquired=now))
        assert (moved.label, moved.acquired, ws.catalog.annotations(site)) == ("gate 2", now, [moved])
        outline = box(0, 0, 10, 10)
        review = ws.catalog.add_review(
            Review(sid, "rejected", "shadow", "appeared", outline, now, now, None, "cva", None, now)
        )
        assert (review.verdict, review.reason, review.geometry.equals(outline), review.change_id) == (
            "rejected",
            "shadow",
            True,
            None,
        )
        event = ws.catalog.add_event(SiteEvent(sid, now, "summit", "", now))
        assert ws.catalog.update_event(replace(event, note="day 1")).note == "day 1"
        assert ws.catalog.remove_annotation(mark.id or 0) == moved and ws.catalog.annotations(site) == []
        with pytest.raises(NotFound, match="no annotation with id"):
            ws.catalog.remove_annotation(mark.id or 0)
        ws.catalog.add_annotations([mark])
        ws.catalog.remove_site(PLANT)  # everything of the site goes with it
        assert snapshot(plant) == {"annotations": [], "reviews": [], "site_events": []}
        assert ws.catalog.integrity_ok()

    path = tmp_path / "old.sqlite"  # a catalog from before these tables
    before = next(i for i, script in enumerate(MIGRATIONS) if "CREATE TABLE annotations" in script)
    with sqlite3.connect(path) as conn:
        for script in MIGRATIONS[:before]:
            conn.executescript(script)
        conn.execute(f"PRAGMA user_version = {before}")
    conn.close()
    with Catalog(path) as catalog:
        assert catalog.execute("PRAGMA user_version")[0][0] == len(MIGRATIONS)
        assert {"annotations", "reviews", "site_events"} <= {
            row[0] for row in catalog.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }


def test_a_removed_scene_leaves_its_annotations_with_their_date(demo: tuple[Path, str]) -> None:
    root, name = demo
    with Workspace.open(root) as ws:
        image = image_on(ws, name, date(2024, 5, 9))
        mark = add_annotation(ws, name, CENTRE, "crane", scene_id=image.scene_id)
        assert (mark.scene_id, mark.acquired) == (image.scene_id, image.acquired)
    with sqlite3.connect(root / Catalog.FILENAME) as conn:
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("DELETE FROM scenes WHERE id = ?", (image.scene_id,))
    conn.close()
    with Workspace.open(root) as ws:
        [kept] = list_annotations(ws, name)
        assert (kept.scene_id, kept.acquired, kept.label) == (None, image.acquired, "crane")


# --- annotations ---------------------------------------------------------------------------------

BOWTIE = Polygon([(38.35, 28.10), (38.351, 28.101), (38.351, 28.10), (38.35, 28.101)])
CROWDED = Point(38.35, 28.10).buffer(0.001, quad_segs=2600)  # 10,401 vertices


@pytest.mark.parametrize(
    ("geometry", "fields", "problem"),
    [
        (CENTRE, {"label": "  "}, "annotation label: is empty"),
        (CENTRE, {"label": "x" * 201}, "annotation label: is 201 characters long \\(200 at most\\)"),
        (CENTRE, {"label": "red\x1b[31m"}, "annotation label: holds a control character"),
        (CENTRE, {"note": "n" * 5001}, "annotation note: is 5001 characters long"),
        (CENTRE, {"note": "a\x00b"}, "annotation note: holds a control character"),
        (CENTRE, {"author": "a" * 201}, "annotation author: 'aaa.* is not a usable name"),
        (LineString([(38.35, 28.1), (38.351, 28.1)]), {}, "not a LineString"),
        (Polygon(), {}, "empty Polygon"),
        (BOWTIE, {}, "invalid Polygon \\(Self-intersection"),
        (CROWDED, {}, "10401 vertices \\(10000 at most\\)"),
        (Point(float("nan"), 28.1), {}, "not a finite number"),
        (Point(200, 28.1), {}, "not lon/lat degrees"),
        (Point(28.10, 38.35), {}, "not within 1 km of site 'plant' \\(lon and lat swapped"),
        (Point(38.38, 28.10), {}, "not within 1 km"),  # 2 km east of the site
        (CENTRE, {"scene_id": 1}, "annotation scene_id: scene 1 is not an image of site 'plant'"),
    ],
)
def test_add_annotation_refuses_bad_input_in_one_line(
    plant: Path, geometry: Point, fields: dict[str, object], problem: str
) -> None:
    with Workspace.open(plant) as ws:
        args = {"label": "gate", **fields}
        with pytest.raises(InputError, match=problem) as exc:
            add_annotation(ws, PLANT, geometry, **args)  # type: ignore[arg-type]
        one_line(exc)
    assert snapshot(plant)["annotations"] == []


def test_annotations_are_added_edited_and_removed(plant: Path) -> None:
    near = Point(38.365, 28.10)  # outside the site, within a kilometre of it
    square = box(38.349, 28.099, 38.351, 28.101)
    with Workspace.open(plant) as ws:
        point = add_annotation(ws, PLANT, near, "  gate ", "line 1\nline 2", author=" ann ")
        area = add_annotation(ws, PLANT, square, "yard")
        assert (point.label, point.author, point.note, point.scene_id, point.acquired) == (
            "gate",
            "ann",
            "line 1\nline 2",
            None,
            None,
        )
        edited = update_annotation(ws, point.id or 0, note="")
        assert (edited.label, edited.note, edited.created) == ("gate", "", point.created)
        assert edited.updated > point.updated
        with pytest.raises(InputError, match="annotation label: is empty"):
            update_annotation(ws, point.id or 0, label="")
        assert [a.label for a in list_annotations(ws, PLANT)] == ["gate", "yard"]
        assert remove_annotation(ws, area.id or 0).label == "yard"
        with pytest.raises(NotFound):
            update_annotation(ws, area.id or 0, label="gone")
        [feature] = annotations_geojson(ws, PLANT)["features"]
        assert feature["geometry"] == {"type": "Point", "coordinates": (38.365, 28.1)}
        assert feature["properties"]["site"] == PLANT and feature["properties"]["image_date"] is None


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ("nope", "no geometry object"),
        ({"type": "Point", "coordinates": "x"}, "malformed Point"),
        ({"type": "Polygon", "coordinates": [[[0, 0], [1]]]}, "malformed Polygon"),
        ({"type": "GeometryCollection", "geometries": []}, "not 'GeometryCollection'"),
    ],
)
def test_parse_annotation_geometry_names_the_problem(data: object, problem: str) -> None:
    with pytest.raises(InputError, match=f"^drawn: .*{problem}") as exc:
        parse_annotation_geometry(data, "drawn")  # type: ignore[arg-type]
    one_line(exc)


def test_a_drawn_geometry_comes_from_a_point_or_a_file_of_one_feature(tmp_path: Path) -> None:
    assert parse_point(" 38.35, 28.1").equals(Point(38.35, 28.1))
    with pytest.raises(InputError, match=r"^--point: expected LON,LAT in degrees, got '38.35;28.1'$"):
        parse_point("38.35;28.1")
    one, two = tmp_path / "one.geojson", tmp_path / "two.geojson"
    one.write_text(json.dumps({"type": "FeatureCollection", "features": [feature()]}))
    two.write_text(json.dumps({"type": "FeatureCollection", "features": [feature(), feature()]}))
    assert read_annotation_geometry(one).equals(CENTRE)
    bare = tmp_path / "bare.geojson"
    bare.write_text(json.dumps(mapping(box(38.3495, 28.0995, 38.3505, 28.1005))))
    assert read_annotation_geometry(bare).geom_type == "Polygon"
    with pytest.raises(InputError, match=r"two\.geojson: expected one feature"):
        read_annotation_geometry(two)
    with pytest.raises(InputError, match=r"none\.geojson: no such file"):
        read_annotation_geometry(tmp_path / "none.geojson")


def feature(label: object = "gate", geometry: object = None, **props: object) -> dict[str, object]:
    return {
        "type": "Feature",
        "geometry": mapping(CENTRE) if geometry is None else geometry,
        "properties": {"label": label, **props},
    }


def collection(*features: object) -> bytes:
    return json.dumps({"type": "FeatureCollection", "features": list(features)}).encode()


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"x" * 101, "larger than the 100 byte limit"),
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[" * 50, "not valid JSON"),
        (b'{"type": "Point", "coordinates": [38.35, 28.1]}', "not a GeoJSON FeatureCollection or Feature"),
        (b'{"type": "FeatureCollection"}', "not a GeoJSON FeatureCollection or Feature"),
        (collection(*[{}] * (MAX_FEATURES + 1)), "5001 features \\(5000 at most in one import\\)"),
        (collection(feature(), {"type": "Feature"}), "features\\[1\\]: has no properties.label"),
        (collection(feature(), feature(label=None)), "features\\[1\\]: has no properties.label"),
        (collection(feature(label="")), "features\\[0\\] label: is empty"),
        (collection(feature(note=5)), "features\\[0\\] note: is not a string or null"),
        (collection(feature(scene_id="3")), "features\\[0\\] scene_id: '3' is not a scene id"),
        (collection(feature(image_date="June")), "features\\[0\\] image_date: 'June' is not a date"),
        (
            collection(feature(geometry={"type": "Point", "coordinates": [28.1, 38.35]})),
            "features\\[0\\] geometry: not within",
        ),
        (collection(feature(), {**feature(), "geometry": None}), "features\\[1\\] geometry: missing"),
    ],
)
def test_import_refuses_a_bad_file_whole_in_one_line(plant: Path, data: bytes, problem: str) -> None:
    limits = Limits(max_json_bytes=100) if problem.startswith("larger") else Limits()
    with Workspace.open(plant) as ws:
        with pytest.raises(InputError, match=f"^marks.geojson:? .*{problem}") as exc:
            import_annotations(ws, PLANT, data, source="marks.geojson", limits=limits)
        one_line(exc)
    assert snapshot(plant)["annotations"] == []


def test_export_imports_back_with_its_images(demo: tuple[Path, str], tmp_path: Path) -> None:
    root, name = demo
    square = box(38.3495, 28.0995, 38.3505, 28.1005)
    with Workspace.open(root) as ws:
        image = image_on(ws, name, date(2024, 5, 9))
        made = [
            add_annotation(
                ws, name, CENTRE, "crane", "on the image\nnorth side", scene_id=image.scene_id, author="ann"
            ),
            add_annotation(ws, name, square, "yard «B»", "éèü"),
        ]
        path = export_annotations(ws, name)
        assert path == ws.exports / "Demo-works--synthetic-annotations.geojson"
        exported = json.loads(path.read_text(encoding="utf-8"))
        back = import_annotations(ws, name, path.read_bytes(), source=str(path))
        for before, after in zip(made, back, strict=True):
            assert after.id != before.id and after.geometry.equals(before.geometry)
            assert (after.label, after.note, after.scene_id, after.acquired, after.author) == (
                before.label,
                before.note,
                before.scene_id,
                before.acquired,
                before.author,
            )
        # From another workspace: an unknown scene id is matched by the image's date, else kept as a date.
        crane = exported["features"][0]
        elsewhere = [
            {**crane, "properties": {**crane["properties"], "scene_id": 999}},
            {**crane, "properties": {**crane["properties"], "scene_id": None, "image_date": "2024-05-09"}},
            {**crane, "properties": {**crane["properties"], "scene_id": None, "image_date": "2023-01-01"}},
        ]
        moved = import_annotations(ws, name, collection(*elsewhere), source="other.geojson")
        assert [(a.scene_id, a.acquired) for a in moved] == [
            (image.scene_id, image.acquired),
            (image.scene_id, image.acquired),
            (None, datetime(2023, 1, 1, tzinfo=UTC)),
        ]
        assert len(list_annotations(ws, name)) == 7
        with pytest.raises(
            InputError, match=r"^2024-05-10: site .* has no image that day \(the nearest is 2024-05-09\)"
        ):
            image_on(ws, name, date(2024, 5, 10))


# --- reviews -------------------------------------------------------------------------------------


def stored(ws: Workspace, name: str) -> list[Change]:
    return ws.catalog.changes(ws.catalog.site(name))


def test_review_follows_its_change_through_reanalysis_not_its_id(demo: tuple[Path, str]) -> None:
    root, name = demo
    with Workspace.open(root) as ws:
        changes = stored(ws, name)
        first, second = changes[0], next(c for c in changes[1:] if c.kind == changes[0].kind)
        rejected = review_change(ws, name, first.id or 0, "rejected", " shadow of the hall ", reviewer="bob")
        confirmed = review_change(ws, name, second.id or 0, "confirmed")
        assert (rejected.reason, rejected.reviewer, rejected.change_id, rejected.kind) == (
            "shadow of the hall",
            "bob",
            first.id,
            first.kind,
        )
        assert current_reviews(ws, name) == {first.id: rejected, second.id: confirmed}  # a neighbour is not matched

        analyze_site(ws, name, detector="cva", align=False, objects=None)  # the change stage again
        again = stored(ws, name)
        assert len(again) == len(changes)
        verdicts = {c.geometry.wkt: r.verdict for i, r in current_reviews(ws, name).items() for c in again if c.id == i}
        assert verdicts == {first.geometry.wkt: "rejected", second.geometry.wkt: "confirmed"}
        assert [r.change_id for r in list_reviews(ws, name)] == [None, None]  # the rows judged are gone

        # Stored in another order, the changes get other ids: the verdicts follow the outlines.
        site = ws.catalog.site(name)
        shuffled = ws.catalog.replace_changes(site, "cva", [replace(c, id=None) for c in reversed(again)])
        by_id = {c.id: c for c in shuffled}
        now = current_reviews(ws, name)
        assert {by_id[i].geometry.wkt: r.verdict for i, r in now.items()} == verdicts
        assert {i for i in now} != {first.id, second.id}

        # A little moved it is the same change; far moved, of a later image or another kind, it is not.
        later = next(obs for obs in ws.catalog.observations(site) if obs.acquired > first.date_to)
        variants = {
            "moved 1 m": replace(first, geometry=affinity.translate(first.geometry, 1.0, 0.0)),
            "moved 500 m": replace(first, geometry=affinity.translate(first.geometry, 500.0, 0.0)),
            "a later image": replace(first, after_id=later.id or 0, date_to=later.acquired),
            "another kind": replace(first, kind="appeared" if first.kind != "appeared" else "removed"),
        }
        kept = {}  # stored under a detector each (matching does not look at the detector)
        for label, variant in variants.items():
            fresh = ws.catalog.replace_changes(site, label, [replace(variant, id=None, detector=label)])
            kept[label] = next(c.id or 0 for c in fresh if c.detector == label)
        current = current_reviews(ws, name)
        assert {label: i in current for label, i in kept.items()} == {
            "moved 1 m": True,
            "moved 500 m": False,
            "a later image": False,
            "another kind": False,
        }

        # Judged again, the latest verdict holds; withdrawn, the earlier one applies again.
        again_confirmed = review_change(ws, name, kept["moved 1 m"], "confirmed", reviewer="carol")
        assert current_reviews(ws, name)[kept["moved 1 m"]] == again_confirmed
        assert len(list_reviews(ws, name)) == 3
        remove_review(ws, again_confirmed.id or 0)
        assert current_reviews(ws, name)[kept["moved 1 m"]].verdict == "rejected"


def test_review_change_refuses_bad_verdicts(demo: tuple[Path, str]) -> None:
    root, name = demo
    with Workspace.open(root) as ws:
        change = stored(ws, name)[0].id or 0
        for verdict, reason, error, problem in [
            ("maybe", "", InputError, "verdict: 'maybe' is not one of confirmed, rejected"),
            ("rejected", "  ", InputError, "reason: a rejection needs a reason"),
            ("confirmed", "r" * 1001, InputError, "reason: is 1001 characters long \\(1000 at most\\)"),
            ("confirmed", "", NotFound, "has no change 99999 \\(see `sitewatch review list 'Demo works"),
        ]:
            with pytest.raises(error, match=problem):
                review_change(ws, name, 99999 if error is NotFound else change, verdict, reason)
    assert snapshot(root)["reviews"] == []


def test_precision_counts_the_verdicts_on_current_changes(demo: tuple[Path, str]) -> None:
    root, name = demo
    with Workspace.open(root) as ws:
        ws.catalog.add_site(new_site(PLANT, from_bbox("38.340,28.090,38.360,28.110")))
        changes = stored(ws, name)
        for change, verdict in zip(changes, ("confirmed", "confirmed", "rejected"), strict=False):
            review_change(ws, name, change.id or 0, verdict, "not real" if verdict == "rejected" else "")
        review_change(ws, name, changes[0].id or 0, "confirmed", "still")  # judged twice: counted once
        rows = review_precision(ws)
        assert [(r.site, r.confirmed, r.rejected, r.unreviewed, r.changes) for r in rows] == [
            (name, 2, 1, len(changes) - 3, len(changes)),
            (PLANT, 0, 0, 0, 0),
        ]
        assert rows[0].precision == pytest.approx(2 / 3) and rows[1].precision is None
        total = ReviewPrecision.total(rows)
        assert (total.site, total.changes, total.precision) == ("all sites", len(changes), rows[0].precision)
        assert review_precision(ws, [PLANT]) == [rows[1]]
        with pytest.raises(NotFound, match="no site 'nowhere'"):
            review_precision(ws, ["nowhere"])


# --- events --------------------------------------------------------------------------------------


def test_events_are_dated_in_utc_and_kept_in_date_order(plant: Path) -> None:
    with Workspace.open(plant) as ws:
        summit = add_event(ws, PLANT, date(2024, 6, 12), "summit", "heads of state")
        strike = add_event(ws, PLANT, datetime(2024, 3, 1, 14, 30), " strike ")  # naive: UTC
        assert summit.when == datetime(2024, 6, 12, tzinfo=UTC)
        assert (strike.when, strike.label) == (datetime(2024, 3, 1, 14, 30, tzinfo=UTC), "strike")
        assert [e.label for e in list_events(ws, PLANT)] == ["strike", "summit"]
        moved = update_event(ws, strike.id or 0, when=date(2024, 9, 1), note="postponed")
        assert (moved.when.month, moved.note, moved.label) == (9, "postponed", "strike")
        with pytest.raises(InputError, match="event label: holds a control character"):
            add_event(ws, PLANT, date(2024, 1, 1), "a\nb")
        assert remove_event(ws, summit.id or 0) == summit
        assert list_events(ws, PLANT) == [moved]


# --- the CLI -------------------------------------------------------------------------------------


def test_cli_annotate_commands_and_bad_input(demo: tuple[Path, str], tmp_path: Path) -> None:
    root, name = demo
    added = run_sitewatch(
        "annotate", "add", name, "--label", "crane", "--point", "38.35,28.10", "--date", "2024-05-09", workspace=root
    )
    assert added.returncode == 0, added.stderr
    assert "added annotation 1" in added.stdout and "on the image of 2024-05-09" in added.stdout
    outline = tmp_path / "yard.geojson"
    outline.write_text(json.dumps({"type": "Feature", "geometry": mapping(box(38.3495, 28.0995, 38.3505, 28.1005))}))
    assert run_sitewatch("annotate", "add", name, "-l", "yard", "--geojson", outline, workspace=root).returncode == 0
    before = snapshot(root)
    for args, problem in [
        (("--label", "far", "--point", "28.10,38.35"), "error: annotation geometry: not within 1 km of site"),
        (("--label", "x", "--point", "38.35"), "error: --point: expected LON,LAT in degrees, got '38.35'"),
        (("--label", "x"), "error: annotation: give exactly one of --point LON,LAT or --geojson FILE"),
    ]:
        bad = run_sitewatch("annotate", "add", name, *args, workspace=root)
        assert bad.returncode == 1 and bad.stderr.startswith("error: ") and problem in bad.stderr, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1
    bad_file = tmp_path / "bad.geojson"
    bad_file.write_bytes(collection(feature(), feature(label="")))
    bad = run_sitewatch("annotate", "import", name, bad_file, workspace=root)
    assert (
        bad.returncode == 1
        and bad.stderr.strip() == f"error: {bad_file} features[1] label: is empty (a label is needed)"
    )
    assert snapshot(root) == before

    listed = json.loads(run_sitewatch("annotate", "list", name, "--json", workspace=root).stdout)
    assert [f["properties"]["label"] for f in listed["features"]] == ["crane", "yard"]
    out = tmp_path / "marks.geojson"
    assert run_sitewatch("annotate", "export", name, "--out", out, workspace=root).returncode == 0
    imported = run_sitewatch("annotate", "import", name, out, workspace=root)
    assert imported.returncode == 0 and f"imported 2 annotations to {name}" in imported.stdout
    removed = run_sitewatch("annotate", "remove", "1", workspace=root)
    assert removed.returncode == 0 and "removed annotation 1 ('crane')" in removed.stdout
    table = run_sitewatch("annotate", "list", name, workspace=root).stdout
    assert table.count("crane") == 1 and "2024-05-09" in table and "polygon of" in table


def test_cli_review_event_and_eval_commands(demo: tuple[Path, str]) -> None:
    root, name = demo
    with Workspace.open(root) as ws:
        first, second = (c.id for c in stored(ws, name)[:2])
    no_reason = run_sitewatch("review", "reject", name, str(first), "--reason", "", workspace=root)
    assert no_reason.returncode == 1 and no_reason.stderr.startswith("error: reason: a rejection needs a reason")
    rejected = run_sitewatch("review", "reject", name, str(first), "--reason", "shadow", workspace=root)
    assert rejected.returncode == 0 and rejected.stdout.startswith(f"rejected change {first} of {name}")
    assert run_sitewatch("review", "confirm", name, str(second), "--reviewer", "ann", workspace=root).returncode == 0
    rows = json.loads(run_sitewatch("review", "list", name, "--json", workspace=root).stdout)["changes"]
    assert [(r["verdict"], r["reason"], r["reviewer"]) for r in rows[:2]] == [
        ("rejected", "shadow", None),
        ("confirmed", "", "ann"),
    ]
    assert all(r["verdict"] is None for r in rows[2:])

    event = run_sitewatch("event", "add", name, "--date", "2024-04-20", "--label", "summit", workspace=root)
    assert event.returncode == 0 and "added event 1" in event.stdout
    bad = run_sitewatch("event", "add", name, "--date", "20 April", "--label", "x", workspace=root)
    assert (
        bad.returncode == 1
        and bad.stderr.strip() == "error: --date: '20 April' is not a date (YYYY-MM-DD) or an ISO 8601 time"
    )
    assert "2024-04-20" in run_sitewatch("event", "list", name, workspace=root).stdout
    assert "removed event 1 ('summit')" in run_sitewatch("event", "remove", "1", workspace=root).stdout

    scores = json.loads(run_sitewatch("eval", "reviews", "--json", workspace=root).stdout)
    assert scores["total"] == {
        "site": "all sites",
        "changes": len(rows),
        "confirmed": 1,
        "rejected": 1,
        "unreviewed": len(rows) - 2,
        "precision": 0.5,
    }
    md = run_sitewatch("eval", "reviews", "--site", name, "--markdown", workspace=root).stdout.splitlines()
    assert md[:2] == [
        "| site | changes | confirmed | rejected | unreviewed | precision |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    assert md[2] == f"| {name} | {len(rows)} | 1 | 1 | {len(rows) - 2} | 0.500 |"
    assert "not recall" in md[-1]


# --- the report ----------------------------------------------------------------------------------


def test_report_shows_verdicts_annotations_and_events_escaped(demo: tuple[Path, str]) -> None:
    root, name = demo
    with Workspace.open(root) as ws:
        changes = stored(ws, name)
        change = changes[0]
        review_change(ws, name, change.id or 0, "rejected", "<b>shadow</b>", reviewer="bob")
        add_annotation(ws, name, CENTRE, "<script>alert(1)</script>", "a & b", author="ann")
        add_event(ws, name, date(2024, 4, 20), "<img src=x onerror=alert(1)>")
        html = write_site_report(ws, name).read_text(encoding="utf-8")
    assert "<script" not in html and "<img src=x" not in html and "<b>shadow" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "a &amp; b" in html
    assert f"1 of {len(changes)} changes reviewed by an analyst: 1 rejected" in html
    row = next(r for r in re.findall(r'<tr id="change-\d+">.*?</tr>', html) if "verdict-rejected" in r)
    assert "&lt;b&gt;shadow&lt;/b&gt;; rejected by bob on" in row
    assert '<section id="annotations">' in html and "28.10000, 38.35000" in html
    assert '<line class="event"' in html and "2024-04-20: &lt;img src=x" in html
