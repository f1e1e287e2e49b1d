"""``eval align``: synthetic cases on known transforms score what they should, sources are found by
their files, and the command runs end to end; the documented pair and the benchmark on real data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from bench.align import format_table, measure
from sitewatch.align import register
from sitewatch.errors import InputError
from sitewatch.eval.align import (
    KINDS,
    Source,
    evaluate_documented,
    evaluate_synthetic,
    find_sources,
    map_rmse,
    run_case,
    summarise,
    synthetic_transform,
    warp,
)
from tests.conftest import run_sitewatch


def texture(rows: int, cols: int, seed: int) -> np.ndarray:
    """RGB uint8 texture whose bands share most of their structure, as real bands do."""
    rng = np.random.default_rng(seed)
    base = ndimage.gaussian_filter(rng.random((rows, cols)), 2.5)
    bands = base + 0.3 * ndimage.gaussian_filter(rng.random((3, rows, cols)), (0, 2.5, 2.5))
    return ((bands - bands.min()) / np.ptp(bands) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def source() -> Source:
    data = texture(256, 288, seed=1)
    return Source("generated", "texture", data, np.ones(data.shape[1:], bool))


def test_synthetic_transforms_stay_within_the_stated_bounds() -> None:
    rng = np.random.default_rng(0)
    for kind in KINDS:
        truth = synthetic_transform(kind, rng, (400, 500))
        assert np.all(np.abs(truth[:, 2] - (truth[:, :2] - np.eye(2)) @ [249.5, 199.5]) <= 20 + 1e-9)
        if kind == "integer":
            assert np.array_equal(truth[:, 2], np.round(truth[:, 2]))
        if kind != "affine":
            assert np.array_equal(truth[:, :2], np.eye(2))


def test_warp_puts_a_reference_feature_where_the_map_says(source: Source) -> None:
    truth = np.array([[1.0, 0.0, 7.0], [0.0, 1.0, -4.0]])
    moving, valid = warp(source.data, source.valid, truth)
    assert np.allclose(moving[:, 50:100, 60:120], source.data[:, 54:104, 53:113])
    assert not valid[-4:].any() and not valid[:, :7].any() and valid[:-4, 7:].all()


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_of_case_succeeds(source: Source, kind: str) -> None:
    case = run_case(source, kind, np.random.default_rng([3, KINDS.index(kind)]))  # type: ignore[arg-type]
    assert case.status == "ok" and case.success, case.as_dict()
    assert case.rmse_px is not None and case.rmse_px < 0.1


def test_map_rmse_of_the_truth_is_zero(source: Source) -> None:
    moving = np.roll(source.data, (3, -2), axis=(1, 2))
    registration = register(source.data, moving)
    truth = np.array([[1.0, 0.0, -2.0], [0.0, 1.0, 3.0]])
    assert map_rmse(registration, truth, (256, 288)) == pytest.approx(0.0, abs=0.02)
    moved_right = truth + np.array([[0, 0, 1], [0, 0, 0]])
    assert map_rmse(registration, moved_right, (256, 288)) == pytest.approx(1.0, abs=0.02)


def test_summaries_pool_successes_and_count_failures(source: Source) -> None:
    cases = evaluate_synthetic([source], cases_per_source=2, seed=1)
    flat = Source("flat", "constant", np.full((1, 128, 128), 50, np.uint8), np.ones((128, 128), bool))
    cases += evaluate_synthetic([flat], cases_per_source=1)
    rows = {s.group: s for s in summarise(cases, lambda c: c.source)}
    assert rows["generated"].success_rate == 1.0 and rows["flat"].success_rate == 0.0
    assert rows["all"].cases == 3 and rows["all"].successes == 2
    assert rows["flat"].rmse_px is None and cases[-1].reason == "featureless"


def _levir_like(root: Path) -> None:
    for folder in ("A", "B", "label"):
        (root / "levir" / folder).mkdir(parents=True)
    Image.fromarray(texture(200, 220, seed=2).transpose(1, 2, 0)).save(root / "levir" / "A" / "t1.png")


def test_sources_are_found_by_their_files(tmp_path: Path) -> None:
    _levir_like(tmp_path)
    (sources,) = find_sources(tmp_path)
    assert (sources.source, sources.name, sources.data.shape) == ("levir-cd", "levir/A/t1.png", (3, 200, 220))
    with pytest.raises(InputError, match="no images found"):
        find_sources(tmp_path / "levir" / "B")


def test_eval_align_command_prints_json(tmp_path: Path) -> None:
    _levir_like(tmp_path)
    p = run_sitewatch("eval", "align", "--dataset", tmp_path, "--cases", "2", "--json")
    assert p.returncode == 0, p.stderr
    result = json.loads(p.stdout)
    assert result["documented"] == [] and len(result["cases"]) == 2
    assert {s["group"] for s in result["sources"]} == {"levir-cd", "all"}
    assert result["sources"][-1]["success_rate"] == 1.0


def test_align_bench_runs_on_a_small_generated_pair() -> None:
    result = measure(256, (3.25, -2.5), repeats=1, datasets=None)
    assert result.status == "ok" and result.error_px is not None and result.error_px < 0.05
    assert result.register_s > 0 and result.floor_s > 0 and result.ratio > 0
    assert all(float(v).is_integer() for v in result.floor_px)  # the floor finds whole pixels only
    assert "register / floor time" in format_table(result)


@pytest.mark.datasets
@pytest.mark.slow
def test_documented_pair_and_one_real_source(datasets: Path) -> None:
    (documented,) = evaluate_documented(datasets / "s2-coregistration")
    assert documented.registration["status"] == "ok"
    assert documented.error_px is not None and documented.error_px < 0.25
    real = [s for s in find_sources(datasets / "levir-cd") if s.source == "levir-cd"][:1]
    cases = evaluate_synthetic(real, cases_per_source=2)
    assert all(c.success for c in cases)
