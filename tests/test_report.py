"""The HTML site report: self-contained, escaped, carrying provenance, with chips that outline change."""

from __future__ import annotations

import base64
import io
import os
import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from PIL import Image
from pyproj import Transformer
from rasterio.coords import BoundingBox
from shapely.geometry import box

from sitewatch.catalog.models import Change, Observation, Scene, Site, Zone
from sitewatch.errors import GeoreferenceError, InputError, NotFound, RasterRefused, SitewatchError
from sitewatch.report import render_report
from sitewatch.report.chips import KIND_COLOURS, Stretch, chip_view, display_bands, to_rgb
from tests.conftest import UTM_GRID, write_tif

TRANSFORM = Affine(0.5, 0, 367000.0, 0, -0.5, 4104000.0)  # as UTM_GRID: 0.5 m, EPSG:32615
EPSG = 32615
SIZE = 96  # pixels a side: 48 m
HOSTILE_NAME = "<script>alert(1)</script>"
HOSTILE_PROVIDER = 'Acme"><img src=x onerror=alert(2)>'
DATES = (
    datetime(2024, 5, 3, 10, 42, tzinfo=UTC),
    datetime(2024, 5, 17, 10, 40, tzinfo=UTC),
    datetime(2024, 6, 2, 10, 45, tzinfo=UTC),
)
# Pixel boxes (row0, row1, col0, col1): a roof that appears, and one that is removed later.
NEW_ROOF = (20, 44, 30, 70)
OLD_ROOF = (60, 80, 10, 30)


def ground(rows: tuple[int, int, int, int]) -> shapely.Polygon:
    """The ground box (site grid CRS) of a pixel box."""
    r0, r1, c0, c1 = rows
    x0, y0 = TRANSFORM @ (c0, r0)
    x1, y1 = TRANSFORM @ (c1, r1)
    return box(x0, y1, x1, y0)


def write_observation(path: Path, data: np.ndarray, valid: np.ndarray | None = None, crs: str = f"EPSG:{EPSG}") -> Path:
    """A tiled GeoTIFF on the site grid with an internal (per-dataset) mask, as ingest writes them."""
    mask = np.full(data.shape[1:], 255, np.uint8) if valid is None else np.where(valid, 255, 0).astype(np.uint8)
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        write_tif(path, data, crs=crs, transform=TRANSFORM, tiled=True, blockxsize=32, blockysize=32)
        with rasterio.open(path, "r+") as dst:
            dst.write_mask(mask)
    return path


def images(bands: int = 3, dtype: str = "uint8") -> list[np.ndarray]:
    """Three dates of textured ground: OLD_ROOF present, then NEW_ROOF added, then OLD_ROOF gone."""
    rng = np.random.default_rng(0)
    top = 250 if dtype == "uint8" else 4000
    floor = rng.integers(top // 5, top // 3, (bands, SIZE, SIZE)).astype(dtype)

    def roof(img: np.ndarray, rows: tuple[int, int, int, int]) -> np.ndarray:
        out = img.copy()
        r0, r1, c0, c1 = rows
        out[:, r0:r1, c0:c1] = top
        return out

    first = roof(floor, OLD_ROOF)
    return [first, roof(first, NEW_ROOF), roof(floor, NEW_ROOF)]


def records(
    store: Path, data: list[np.ndarray], *, name: str = "Test site", provider: str = "Planet"
) -> tuple[Site, list[Observation], dict[int, Scene], list[Change]]:
    """Site, observations (written to STORE), scenes and two changes, as the catalog would give them."""
    to_wgs84 = Transformer.from_crs(EPSG, 4326, always_xy=True)
    left, top = TRANSFORM.c, TRANSFORM.f
    outline = box(left, top - SIZE * 0.5, left + SIZE * 0.5, top)
    wgs84 = shapely.transform(outline, lambda xy: np.column_stack(to_wgs84.transform(xy[:, 0], xy[:, 1])))
    site = Site(name, wgs84, EPSG, left, top, SIZE * 0.5, SIZE * 0.5, 0.5, tags=("factory", "<b>tag</b>"), id=1)
    site = replace(site, zones=(Zone("loading area", wgs84.buffer(-0.00005), id=1),))
    observations, scenes = [], {}
    for i, (img, when) in enumerate(zip(data, DATES, strict=False), start=1):
        valid = np.ones(img.shape[1:], bool)
        if i == 3:
            valid[:, :8] = False  # a strip the third scene did not cover
        write_observation(store / f"obs{i}.tif", img, valid)
        scenes[10 + i] = Scene(
            sha256=f"{i:064x}",
            path=store / f"scene{i}.tif",
            source=f"scene{i}.tif",
            acquired=when,
            footprint=wgs84,
            gsd=0.5,
            width=SIZE,
            height=SIZE,
            bands=img.shape[0],
            dtype=str(img.dtype),
            crs=f"EPSG:{EPSG}",
            provider=provider,
            sensor="SkySat",
            licence="CC BY-NC 4.0",
            attribution=f"© 2024 {provider} scene {i}",
            id=10 + i,
        )
        observations.append(
            Observation(
                site_id=1,
                scene_id=10 + i,
                level=0,
                gsd=0.5,
                path=Path(f"obs{i}.tif"),
                width=SIZE,
                height=SIZE,
                acquired=when,
                valid_fraction=float(valid.mean()),
                flags=("partial",) if i == 3 else (),
                id=i,
            )
        )
    new, old = ground(NEW_ROOF), ground(OLD_ROOF)
    changes = [
        Change(1, 1, 2, "appeared", new, new.area, 0.93, DATES[0], DATES[1], "cva", id=1),
        Change(1, 2, 3, "removed", old, old.area, 0.71, DATES[1], DATES[2], "cva", id=2),
    ]
    return site, observations, scenes, changes


def pictures(html: str) -> dict[str, Image.Image]:
    """Every image in the page, decoded, by its alt text."""
    found = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([^"]*)"', html)
    return {alt: Image.open(io.BytesIO(base64.b64decode(data))) for data, alt in found}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, list[Change]]:
    """One report rendered for the tests that only read it: the HTML, its store, its changes."""
    store = tmp_path_factory.mktemp("store")
    site, observations, scenes, changes = records(store, images())
    out = render_report(site, observations, scenes, changes, store, store.parent / "report.html")
    return out.read_text(encoding="utf-8"), store, changes


def test_report_is_self_contained(report: tuple[str, Path, list[Change]]) -> None:
    html, _, _ = report
    assert "<script" not in html
    assert "<link" not in html
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:|//)", html, re.IGNORECASE)
    assert "url(" not in html
    sources = re.findall(r'src="([^"]*)"', html)
    assert sources
    assert all(s.startswith("data:image/png;base64,") for s in sources)


def test_report_carries_dates_provider_and_attribution(report: tuple[str, Path, list[Change]]) -> None:
    html, _, _ = report
    for when in ("2024-05-03 10:42 UTC", "2024-05-17 10:40 UTC", "2024-06-02 10:45 UTC"):
        assert when in html
    for i in (1, 2, 3):
        assert f"© 2024 Planet scene {i}" in html
    assert "Planet" in html
    assert "CC BY-NC 4.0" in html
    assert "EPSG:32615" in html
    assert "factory" in html
    assert "loading area" in html


def test_change_table_lists_each_change(report: tuple[str, Path, list[Change]]) -> None:
    html, _, changes = report
    rows = re.findall(r'<tr id="change-(\d+)">(.*?)</tr>', html, re.DOTALL)
    assert [n for n, _ in rows] == ["1", "2"]
    assert "appeared" in rows[0][1]
    assert f"{changes[0].area_m2:,.0f}" in rows[0][1]  # 20 m x 12 m = 240
    assert ">240<" in rows[0][1]
    assert ">100<" in rows[1][1]  # 10 m x 10 m
    assert "between 2024-05-03 and 2024-05-17" in rows[0][1]
    assert "between 2024-05-17 and 2024-06-02" in rows[1][1]
    assert "after: partial" in rows[1][1]
    lat, lon = (float(v) for v in re.search(r"<td>(3\d\.\d+), (-9\d\.\d+)</td>", rows[0][1]).groups())  # type: ignore[union-attr]
    assert 37.0 < lat < 37.2 and -94.6 < lon < -94.4
    assert "1 of 3 observations were flagged" in html


def test_chips_outline_the_change_on_the_right_pixels(report: tuple[str, Path, list[Change]]) -> None:
    html, _, changes = report
    found = pictures(html)
    assert {"Change 1 before", "Change 1 after", "Change 2 before", "Change 2 after"} <= set(found)
    assert all(image.format == "PNG" for image in found.values())
    grid = BoundingBox(TRANSFORM.c, TRANSFORM.f - SIZE * 0.5, TRANSFORM.c + SIZE * 0.5, TRANSFORM.f)
    for number, change in enumerate(changes, start=1):
        view = chip_view(change.geometry, grid, 0.5)
        to_pixel = ~view.transform
        c0, r0 = to_pixel @ (change.geometry.bounds[0], change.geometry.bounds[3])
        c1, r1 = to_pixel @ (change.geometry.bounds[2], change.geometry.bounds[1])
        for when in ("before", "after"):
            rgb = np.asarray(found[f"Change {number} {when}"].convert("RGB"))[: view.height]
            outline = np.all(rgb == KIND_COLOURS[change.kind], axis=-1)
            rows, cols = np.nonzero(outline)
            near = (rows > r0 - 4) & (rows < r1 + 4) & (cols > c0 - 4) & (cols < c1 + 4)
            assert near.sum() > 2 * ((c1 - c0) + (r1 - r0)), "outline drawn around the change"
        # The roof itself is inside the outline: bright where it exists, textured ground where not.
        inside = (slice(round(r0) + 6, round(r1) - 6), slice(round(c0) + 6, round(c1) - 6))
        before = np.asarray(found[f"Change {number} before"].convert("L"))[inside]
        after = np.asarray(found[f"Change {number} after"].convert("L"))[inside]
        bright, dark = (before, after) if change.kind == "removed" else (after, before)
        assert bright.mean() > dark.mean() + 100


def test_hostile_strings_are_escaped(tmp_path: Path) -> None:
    site, observations, scenes, changes = records(tmp_path, images(), name=HOSTILE_NAME, provider=HOSTILE_PROVIDER)
    html = render_report(site, observations, scenes, changes, tmp_path, tmp_path / "r.html").read_text()
    assert HOSTILE_NAME not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html
    assert "&lt;b&gt;tag&lt;/b&gt;" in html
    assert "<b>tag</b>" not in html


def test_synthetic_banner_only_when_asked(tmp_path: Path, report: tuple[str, Path, list[Change]]) -> None:
    html, store, _ = report
    assert "Synthetic demo imagery" not in html
    site, observations, scenes, changes = records(store, images())
    out = render_report(site, observations, scenes, changes, store, tmp_path / "s.html", synthetic=True)
    synthetic = out.read_text()
    assert 'class="banner"' in synthetic
    assert "Synthetic demo imagery" in synthetic
    chip = pictures(synthetic)["Change 1 after"]
    assert "synthetic" in chip.info.get("Warning", "")


def test_chip_png_carries_provenance(report: tuple[str, Path, list[Change]]) -> None:
    chip = pictures(report[0])["Change 1 after"]
    assert chip.info["Copyright"] == "© 2024 Planet scene 2"
    assert chip.info["Creation Time"].startswith("2024-05-17T10:40")
    assert "Planet" in chip.info["Source"]


def test_no_changes_said_plainly(tmp_path: Path) -> None:
    site, observations, scenes, _ = records(tmp_path, images())
    html = render_report(site, observations, scenes, [], tmp_path, tmp_path / "r.html", title="Quiet").read_text()
    assert "No changes were detected" in html
    assert "<title>Quiet</title>" in html
    assert "Change 1 before" not in html
    assert len(pictures(html)) == 4  # the two consecutive pairs are still shown


@pytest.mark.parametrize(("bands", "dtype"), [(1, "uint8"), (3, "uint16"), (5, "uint16")])
def test_other_band_layouts_render(tmp_path: Path, bands: int, dtype: str) -> None:
    site, observations, scenes, changes = records(tmp_path, images(bands, dtype))
    html = render_report(site, observations, scenes, changes, tmp_path, tmp_path / "r.html").read_text()
    chip = np.asarray(pictures(html)["Change 1 after"].convert("RGB"))
    assert np.all(chip == KIND_COLOURS["appeared"], axis=-1).sum() > 50


def test_missing_observation_leaves_nothing(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    site, observations, scenes, changes = records(store, images())
    out = tmp_path / "out" / "report.html"
    out.parent.mkdir()
    out.write_text("previous report")
    (store / "obs2.tif").unlink()
    with pytest.raises(RasterRefused, match=r"obs2\.tif: no such file"):
        render_report(site, observations, scenes, changes, store, out)
    assert out.read_text() == "previous report"
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]


def test_failed_write_leaves_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site, observations, scenes, changes = records(tmp_path, images())
    out = tmp_path / "out"
    out.mkdir()

    def refuse(src: object, dst: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(SitewatchError, match=r"report\.html: cannot write \(Permission denied\)"):
        render_report(site, observations, scenes, changes, tmp_path, out / "report.html")
    assert list(out.iterdir()) == []


def test_observation_in_another_crs_is_refused(tmp_path: Path) -> None:
    site, observations, scenes, changes = records(tmp_path, images())
    write_observation(tmp_path / "obs1.tif", images()[0], crs="EPSG:32616")
    with pytest.raises(GeoreferenceError, match=r"obs1\.tif: observation CRS is EPSG:32616"):
        render_report(site, observations, scenes, changes, tmp_path, tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_paths_and_references_are_checked(tmp_path: Path) -> None:
    site, observations, scenes, changes = records(tmp_path, images())
    escaping = [replace(observations[0], path=Path("../obs1.tif")), *observations[1:]]
    with pytest.raises(InputError, match="inside"):
        render_report(site, escaping, scenes, changes, tmp_path, tmp_path / "r.html")
    with pytest.raises(NotFound, match="observation 3"):
        render_report(site, observations[:2], scenes, changes, tmp_path, tmp_path / "r.html")
    with pytest.raises(NotFound, match="scene 11"):
        render_report(
            site,
            observations,
            {k: v for k, v in scenes.items() if k != 11},
            [],
            tmp_path,
            tmp_path / "r.html",
        )
    assert not (tmp_path / "r.html").exists()


def test_masked_pixels_are_a_grey_checker() -> None:
    data = np.ma.masked_array(np.full((3, 16, 16), 200.0, np.float32), mask=False)
    data[:, :, :8] = np.ma.masked
    rgb = to_rgb(data, Stretch((1, 2, 3), (0.0, 0.0, 0.0), (100.0, 100.0, 100.0)))
    assert np.all(rgb[:, 8:] == 255)
    left = rgb[:, :8]
    assert np.all(left[..., 0] == left[..., 1]) and np.all(left[..., 1] == left[..., 2])
    assert set(np.unique(left)) == {120, 160}


def test_chip_view_is_square_padded_and_stays_on_the_grid() -> None:
    grid = BoundingBox(0.0, 0.0, 1000.0, 1000.0)
    small = chip_view(box(10.0, 10.0, 12.0, 12.0), grid, 0.5)
    assert small.box.right - small.box.left == pytest.approx(40.0)  # the minimum ground size
    assert small.box.left == 0.0 and small.box.bottom == 0.0  # slid inside the grid
    coarse = chip_view(box(500.0, 500.0, 502.0, 502.0), grid, 10.0)
    assert coarse.box.right - coarse.box.left == pytest.approx(480.0)  # 48 pixels of 10 m
    large = chip_view(box(100.0, 300.0, 300.0, 400.0), grid, 0.5)
    assert large.box.right - large.box.left == pytest.approx(400.0)
    assert large.box.top - large.box.bottom == pytest.approx(400.0)


def test_display_bands_prefer_names(tmp_path: Path) -> None:
    path = write_tif(tmp_path / "ms.tif", np.zeros((5, 4, 4), np.uint16), **UTM_GRID)
    with rasterio.open(path) as src:
        assert display_bands(src) == (1, 2, 3)
        assert display_bands(src, ("coastal", "blue", "green", "red", "nir")) == (4, 3, 2)
    grey = write_tif(tmp_path / "grey.tif", np.zeros((1, 4, 4), np.uint8), **UTM_GRID)
    with rasterio.open(grey) as src:
        assert display_bands(src) == (1,)


def test_persistent_changes_lead_and_transient_ones_are_collapsed(tmp_path: Path) -> None:
    """Followed changes are grouped: persistent first with their dating and history, transient activity
    in a closed <details>; an observation in the interval that could not show the place is named."""
    site, observations, scenes, (new, old) = records(tmp_path, images())
    history = ((1, "before"), (2, "after"), (3, "after"))
    followed = [
        replace(new, persistence="persistent", persistence_reason="held", history=history),
        replace(old, persistence="transient", persistence_reason="reverted", ended=DATES[2], history=history),
        replace(new, id=3, before_id=1, after_id=3, date_to=DATES[2], unseen=(DATES[1],),
                persistence="unconfirmed", persistence_reason="last", history=history),
    ]  # fmt: skip
    html = render_report(site, observations, scenes, followed, tmp_path, tmp_path / "r.html").read_text()
    persistent, unconfirmed, transient = (html.index(t) for t in ("Persistent changes", "Unconfirmed", "Transient"))
    assert persistent < unconfirmed < transient
    assert "<summary>Transient activity (1)</summary>" in html
    rows = dict(re.findall(r'<tr id="change-(\d+)">(.*?)</tr>', html, re.DOTALL))
    assert "<strong>persistent</strong>: still there in all 1 later image(s)" in rows["1"]
    assert "widened: no view of it on 2024-05-17 (masked there)" in rows["2"]
    assert "gone again on 2024-06-02" in rows["3"]
    assert '<span title="2024-05-03: before">○</span><span title="2024-05-17: after">●</span>' in rows["1"]
