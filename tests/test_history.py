"""The time series: persistent against transient change, and dating, on small synthetic stacks."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from shapely.geometry import box

from sitewatch.catalog.db import Catalog
from sitewatch.catalog.models import Change, Observation, Scene, Site
from sitewatch.change.history import Candidate, Stack, follow, trace

SIZE = 48
SQUARE = (16, 32, 14, 30)  # rows, cols: a 16 x 16 px roof
ROOF = (225.0, 222.0, 215.0)
DATES = 5


def square() -> box:
    """The roof's outline in pixel coordinates (the stacks use the identity transform)."""
    r0, r1, c0, c1 = SQUARE
    return box(c0, r0, c1, r1)


def make_stack(
    present: Collection[int],
    *,
    masked: Collection[int] = (),
    left_out: Collection[int] = (),
    shadowed: Collection[int] = (),
) -> Stack:
    """DATES images of textured ground, each with its own exposure and noise.

    The roof stands on the dates in PRESENT; on the dates in SHADOWED the same ground is darker and
    bluer there instead; MASKED dates have the roof's place masked; LEFT_OUT dates have no image.
    """
    rng = np.random.default_rng(3)
    ground = rng.normal(110.0, 18.0, (3, SIZE, SIZE)).astype(np.float32)
    r0, r1, c0, c1 = SQUARE
    images: list[np.ndarray | None] = []
    valid: list[np.ndarray | None] = []
    for date in range(DATES):
        if date in left_out:
            images.append(None)
            valid.append(None)
            continue
        image = ground.copy()
        if date in present:
            image[:, r0:r1, c0:c1] = np.asarray(ROOF, np.float32)[:, None, None]
        if date in shadowed:
            image[:, r0:r1, c0:c1] *= np.asarray([0.40, 0.44, 0.56], np.float32)[:, None, None]
        gain = 1.0 + 0.05 * (date % 3 - 1)
        image = image * gain + rng.normal(0.0, 2.0, image.shape).astype(np.float32)
        mask = np.ones((SIZE, SIZE), bool)
        if date in masked:
            mask[r0 - 4 : r1 + 4, c0 - 4 : c1 + 4] = False
        images.append(image.astype(np.float32))
        valid.append(mask)
    return Stack(images, valid, Affine.identity(), rgb=(0, 1, 2))


def test_a_square_that_appears_and_stays_is_persistent_and_dated() -> None:
    [event] = follow(make_stack({2, 3, 4}), [Candidate(square(), 1, 2, "appeared")])
    assert event.persistence == "persistent" and event.trace.reason == "held"
    assert (event.trace.last_before, event.trace.first_after) == (1, 2)
    assert event.trace.unseen == () and event.trace.ended is None
    assert event.trace.states == ("before", "before", "after", "after", "after")


def test_a_square_that_appears_then_leaves_is_one_transient_event() -> None:
    candidates = [Candidate(square(), 1, 2, "appeared"), Candidate(square(), 2, 3, "removed")]
    [event] = follow(make_stack({2}), candidates)
    assert event.persistence == "transient" and event.members == (0, 1)
    assert event.kind == "appeared"
    assert (event.trace.last_before, event.trace.first_after, event.trace.ended) == (1, 2, 3)


def test_a_square_on_the_last_date_is_unconfirmed() -> None:
    [event] = follow(make_stack({4}), [Candidate(square(), 3, 4, "appeared")])
    assert event.persistence == "unconfirmed" and event.trace.reason == "last"


def test_a_change_from_the_first_image_is_unconfirmed() -> None:
    """A truck parked on the first day and a building demolished look alike until more is seen."""
    [event] = follow(make_stack({0}), [Candidate(square(), 0, 1, "removed")])
    assert event.persistence == "unconfirmed" and event.trace.reason == "first"


@pytest.mark.parametrize("gap", ["masked", "left_out"])
def test_a_date_without_a_view_between_widens_the_interval(gap: str) -> None:
    stack = make_stack({3, 4}, **{gap: {2}})  # type: ignore[arg-type]
    [event] = follow(stack, [Candidate(square(), 1, 3, "appeared")])
    assert event.persistence == "persistent"
    assert (event.trace.last_before, event.trace.first_after) == (1, 3)
    assert event.trace.unseen == (2,) and event.trace.states[2] == "unseen"


def test_a_date_in_between_that_shows_the_change_narrows_the_interval() -> None:
    """A pair across a partly masked date: where that date does show the place, it dates the change."""
    [event] = follow(make_stack({2, 3, 4}), [Candidate(square(), 0, 3, "appeared")])
    assert (event.trace.last_before, event.trace.first_after, event.trace.unseen) == (1, 2, ())


def test_a_square_that_returns_is_transient() -> None:
    [event] = follow(make_stack({0, 1, 3, 4}), [Candidate(square(), 1, 2, "removed")])
    assert event.persistence == "transient" and event.trace.reason == "reverted"
    assert event.trace.ended == 3


def test_a_shadow_is_transient_even_when_it_stays() -> None:
    [event] = follow(make_stack((), shadowed={2, 3, 4}), [Candidate(square(), 1, 2, "modified")])
    assert event.persistence == "transient" and event.trace.reason == "shadow"
    built = follow(make_stack({2, 3, 4}), [Candidate(square(), 1, 2, "appeared")])
    assert built[0].trace.reason == "held"  # a bright roof on darker ground is not a shadow


def test_trace_reads_states_from_distances() -> None:
    """Close to one image and far from the other gives its state; close to neither gives "other"."""
    distances = np.array([[0.0, 3.0], [0.2, 2.9], [1.5, 1.6], [3.0, 0.0], [np.nan, np.nan]])
    found = trace(distances, 0, 3)
    assert found.states == ("before", "before", "other", "after", "unseen")
    assert (found.last_before, found.first_after, found.unseen) == (1, 3, (2,))
    assert found.persistence == "unconfirmed" and found.reason == "last"


def test_candidates_must_be_two_dates_of_the_stack_in_order() -> None:
    with pytest.raises(ValueError, match="not two dates of the stack in order"):
        follow(make_stack({2}), [Candidate(square(), 2, 2, "appeared")])
    with pytest.raises(ValueError, match="left out"):
        follow(make_stack({2}, left_out={1}), [Candidate(square(), 1, 2, "appeared")])


def test_catalog_keeps_persistence_and_dating(tmp_path: Path) -> None:
    when = [datetime(2024, 5, 1, tzinfo=UTC) + timedelta(days=10 * i) for i in range(3)]
    with Catalog(tmp_path / "catalog.sqlite", create=True) as catalog:
        site = catalog.add_site(Site("s", box(0, 0, 0.01, 0.01), 32637, 0.0, 10.0, 10.0, 10.0, 0.5))
        ids = []
        with catalog.transaction() as conn:
            for i, acquired in enumerate(when):
                scene = Scene(f"{i:064x}", Path(f"{i}.tif"), f"{i}.tif", acquired, box(0, 0, 1, 1), 0.5, 8, 8, 3,
                              "uint8", "EPSG:32637")  # fmt: skip
                scene_id = catalog.insert_scene(conn, scene)
                obs = Observation(site.id or 0, scene_id, 0, 0.5, Path(f"o{i}.tif"), 8, 8, acquired, 1.0)
                ids.append(catalog.insert_observation(conn, obs))
        change = Change(
            site.id or 0, ids[0], ids[2], "appeared", box(1, 1, 3, 3), 4.0, 0.9, when[0], when[2], "cva",
            persistence="persistent", persistence_reason="held", unseen=(when[1],),
            history=((ids[0], "before"), (ids[1], "unseen"), (ids[2], "after")),
        )  # fmt: skip
        [stored] = catalog.replace_changes(site, "cva", [change])
        assert catalog.changes(site, persistence="transient") == []
    assert stored.persistence == "persistent" and stored.persistence_reason == "held"
    assert stored.unseen == (when[1],) and stored.ended is None
    assert stored.history == change.history
