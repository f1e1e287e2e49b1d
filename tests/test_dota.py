"""The DOTA label reader shared by ``eval detect`` and training: the devkit's quirks, GSD headers
(plausible, implausible, missing) and the GSD estimated from labelled cars, and finding images."""

from __future__ import annotations

from pathlib import Path

import pytest

from sitewatch.detect import dota
from sitewatch.detect.base import LARGE, SMALL
from sitewatch.detect.dota import LabelledImage, LabelledObject, find_images, gsd_from_cars, parse_labels, read_labels
from sitewatch.errors import InputError


def test_label_quirks(tmp_path: Path) -> None:
    text = (
        "\ufeffimagesource:GoogleEarth\r\n"  # a byte-order mark, as Windows editors write
        "gsd:0.115726939386\r\n"
        "937.0 913.0 921.0 912.0 923.0 874.0 940.0 875.0 small-vehicle 0\r\n"
        "1 187 1 187 1 219 1 219 small-vehicle 2\r\n"  # zero-width (devkit clipping): dropped
        "10 10 30 10 30 20 10 20 large-vehicle 1\r\n"
        "10 10 30 10 30 20 10 20 large-vehicle 2\r\n"  # cut by a patch border: difficult too
        "\r\n"
        "0 0 4 0 4 2 0 2 plane\r\n"  # no difficulty field: 0
    )
    path = tmp_path / "P1.txt"
    path.write_bytes(text.encode())
    labels = read_labels(path)
    assert labels.gsd == pytest.approx(0.115726939386) and labels.gsd_header is None
    assert [(o.cls, o.difficulty, o.difficult) for o in labels.objects] == [
        (SMALL, 0, False),
        (LARGE, 1, True),
        (LARGE, 2, True),
        ("plane", 0, False),
    ]
    assert labels.objects[0].corners == ((937.0, 913.0), (921.0, 912.0), (923.0, 874.0), (940.0, 875.0))
    assert labels.objects[0].size_px() == pytest.approx((38.05, 16.03), abs=0.01)
    patch = parse_labels("2.0 145.0 19.0 145.0 19.0 179.0 2.0 179.0 small-vehicle 0\n")
    assert (patch.gsd, patch.gsd_header, len(patch.objects)) == (None, None, 1)


def test_gsd_headers() -> None:
    assert parse_labels("  GSD : 0.13 \nImageSource: GoogleEarth\n").gsd == 0.13  # hand-edited: case, spaces
    for unknown in ("gsd:null\n", "gsd:None\n", "gsd:\n", ""):  # DOTA's "unknown" is no header, not a broken one
        assert parse_labels(unknown) == dota.Labels(None, None, ())
    absurd = parse_labels("imagesource:GoogleEarth\ngsd:2.68220901489e-06\n")  # as DOTA's P0168 says
    assert (absurd.gsd, absurd.gsd_header) == (None, "2.68220901489e-06")
    assert parse_labels("gsd:half\n").gsd_header == "half"
    assert parse_labels("gsd:15\n").gsd_header == "15"  # centimetres, say: outside GSD_RANGE_M


def test_label_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"P\.txt: line 2 is not a DOTA label: '1 2 3 4 small-vehicle 0'"):
        parse_labels("gsd:0.5\n1 2 3 4 small-vehicle 0\n", "P.txt")
    with pytest.raises(InputError, match="line 1 is not a DOTA label"):
        parse_labels("a 2 3 4 5 6 7 8 small-vehicle 0\n", "P.txt")
    with pytest.raises(InputError, match="line 1 is not a DOTA label"):
        parse_labels("0 0 4 0 4 2 0 2 plane hard\n", "P.txt")
    with pytest.raises(InputError, match="line 1 is not a DOTA label"):
        parse_labels("0 0 4 0 4 2 0 nan plane 0\n", "P.txt")
    big = tmp_path / "big.txt"
    with big.open("wb") as f:
        f.truncate(dota.MAX_LABEL_BYTES + 1)  # sparse: read no further than its size
    with pytest.raises(InputError, match="label file over 20 MB"):
        read_labels(big)
    with pytest.raises(InputError, match="cannot read the label file"):
        read_labels(tmp_path / "missing.txt")


def _cars(count: int, length: float, difficulty: int = 0) -> tuple[LabelledObject, ...]:
    """COUNT cars LENGTH pixels long, side by side."""
    return tuple(
        LabelledObject(
            ((0.0, 10.0 * k), (length, 10.0 * k), (length, 10.0 * k + 4), (0.0, 10.0 * k + 4)), SMALL, difficulty
        )
        for k in range(count)
    )


def test_gsd_from_cars_says_what_it_rests_on() -> None:
    image = LabelledImage("P1478", Path("P1478.png"), Path("P1478.txt"), None, _cars(4, 20.0) + _cars(3, 40.0))
    estimate = gsd_from_cars(image)
    assert estimate.metres == pytest.approx(dota.CAR_LENGTH_M / 20) and estimate.cars == 7  # the median car
    assert str(estimate) == "no gsd header; 0.230 m estimated from 7 labelled cars"
    # Difficult cars and other classes are not measured; too few cars: the fallback, and the header said.
    few = LabelledImage("P0168", Path("P0168.png"), Path("P0168.txt"), None, _cars(4, 20.0) + _cars(9, 9.0, 1), "2e-06")
    assert (gsd_from_cars(few).metres, gsd_from_cars(few).cars) == (dota.FALLBACK_GSD_M, 0)
    assert str(gsd_from_cars(few)) == (
        "gsd header '2e-06' is not a GSD in 0.02-5.0 m and fewer than 5 labelled cars; 0.15 m assumed"
    )


def _write(folder: Path, name: str, label: str) -> None:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labelTxt").mkdir(exist_ok=True)
    (folder / "images" / f"{name}.png").write_bytes(b"not read here")
    (folder / "labelTxt" / f"{name}.txt").write_text(label)


def test_find_images_at_any_depth(tmp_path: Path) -> None:
    _write(tmp_path / "data" / "val", "P0002", "gsd:2.68220901489e-06\n0 0 4 0 4 2 0 2 plane 0\n")
    _write(tmp_path / "data" / "train", "P0001", "gsd:0.5\n")
    (tmp_path / "data" / "val" / "images" / "P0003.png").write_bytes(b"")  # no label: not found
    (tmp_path / "data" / "val" / "labelTxt" / "P0004.txt").write_text("")  # no image: not found
    images = find_images(tmp_path / "data")
    assert [(i.image_id, i.image_path.relative_to(tmp_path), i.gsd, i.gsd_header) for i in images] == [
        ("P0001", Path("data/train/images/P0001.png"), 0.5, None),
        ("P0002", Path("data/val/images/P0002.png"), None, "2.68220901489e-06"),
    ]
    assert images[1].label_path == tmp_path / "data" / "val" / "labelTxt" / "P0002.txt"
    assert [o.cls for o in images[1].objects] == ["plane"]
    with pytest.raises(InputError, match="not a folder"):
        find_images(tmp_path / "missing")
    (tmp_path / "empty" / "images").mkdir(parents=True)
    (tmp_path / "empty" / "labelTxt").mkdir()
    with pytest.raises(InputError, match="no DOTA images with labels"):
        find_images(tmp_path / "empty")
    _write(tmp_path / "broken", "P0005", "0 0 4 0 plane 0\n")
    with pytest.raises(InputError, match=r"P0005\.txt: line 1 is not a DOTA label"):
        find_images(tmp_path / "broken")


@pytest.mark.datasets
def test_the_dota_sample_reads_as_its_readme_counts(datasets: Path) -> None:
    images = {i.image_id: i for i in find_images(datasets / "dota")}
    assert len(images) == 7
    # The README's per-image counts, less the zero-area boxes the devkit's splitter left in the patch.
    counts = {name: len(image.objects) for name, image in images.items()}
    assert counts == {
        "P0003": 55,
        "P0004": 107,
        "P0168": 36,
        "P0706": 536,
        "P0770": 22,
        "P1088": 34,
        "P1478__1__853___962": 293,
    }
    assert images["P0168"].gsd is None and images["P0168"].gsd_header == "2.68220901489e-06"
    patch = gsd_from_cars(images["P1478__1__853___962"])
    assert patch.cars > 200 and 0.1 < patch.metres < 0.16  # DOTA's Google Earth images are 0.1-0.2 m
    assert images["P0003"].gsd == pytest.approx(0.115726939386)
