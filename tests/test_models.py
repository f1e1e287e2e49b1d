"""Shipped models: found by name, loaded safely, listed with their terms by ``sitewatch models``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sitewatch.errors import InputError, NotFound
from sitewatch.models import check_model_file, find, load_session, shipped
from tests.conftest import run_sitewatch


def _write_model(folder: Path, name: str, location: str | None) -> Path:
    """A one-node model (Y = X + W) saved with W inline or as external data at LOCATION."""
    weight = numpy_helper.from_array(np.ones(4, dtype=np.float32), name="W")
    if location is not None:
        weight.ClearField("raw_data")
        weight.data_location = TensorProto.EXTERNAL
        for key, value in (("location", location), ("offset", "0"), ("length", "16")):
            weight.external_data.add(key=key, value=value)
    graph = helper.make_graph(
        [helper.make_node("Add", ["X", "W"], ["Y"])],
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [4])],
        initializer=[weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = folder / f"{name}.onnx"
    path.write_bytes(model.SerializeToString())
    (folder / f"{name}.json").write_text(json.dumps({"name": name, "task": "test", "terms": "test terms"}))
    return path


def test_shipped_feature_extractor_is_found_with_its_card() -> None:
    card = find("lite0-features")
    assert card.path.is_file() and card.path.stat().st_size < 25e6
    for key in ("name", "task", "terms", "input", "trained_on", "metrics", "reproduce"):
        assert key in card.metadata
    assert card.metadata["input"]["bands"] == "rgb"
    assert "Apache-2.0" in card.card_text
    assert [c.name for c in shipped()] == sorted(c.name for c in shipped())


def test_shipped_feature_extractor_runs() -> None:
    card = find("lite0-features")
    session = load_session(card, threads=1)
    assert load_session(card, threads=1) is session  # cached
    outputs = session.run(None, {"image": np.zeros((1, 3, 32, 48), dtype=np.float32)})
    strides = [o["stride"] for o in card.metadata["outputs"]]
    assert [o.shape[2:] for o in outputs] == [(32 // s, 48 // s) for s in strides]


def test_missing_model_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no model 'nothing'"):
        find("nothing")
    with pytest.raises(NotFound, match="no model"):
        find("nothing", tmp_path)
    with pytest.raises(NotFound, match="without folders"):
        find("../lite0-features")


def test_model_in_user_folder_loads(tmp_path: Path) -> None:
    _write_model(tmp_path, "inline", None)
    (tmp_path / "local.bin").write_bytes(np.ones(4, dtype=np.float32).tobytes())
    _write_model(tmp_path, "local", "local.bin")
    for name in ("inline", "local"):
        session = load_session(find(name, tmp_path), threads=1)
        (result,) = session.run(None, {"X": np.zeros(4, dtype=np.float32)})
        np.testing.assert_array_equal(result, np.ones(4))


@pytest.mark.parametrize("location", ["../x.bin", "/etc/passwd", "sub/../../x.bin"])
def test_external_data_outside_the_folder_is_refused(tmp_path: Path, location: str) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    (tmp_path / "x.bin").write_bytes(np.ones(4, dtype=np.float32).tobytes())
    _write_model(folder, "hostile", location)
    with pytest.raises(InputError, match="escapes the model folder"):
        load_session(find("hostile", folder))


def test_external_data_through_a_symlink_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    (tmp_path / "x.bin").write_bytes(np.ones(4, dtype=np.float32).tobytes())
    (folder / "link.bin").symlink_to(tmp_path / "x.bin")
    path = _write_model(folder, "linked", "link.bin")
    with pytest.raises(InputError, match="escapes the model folder"):
        check_model_file(path)


def test_non_model_files_are_refused(tmp_path: Path) -> None:
    path = _write_model(tmp_path, "real", None)
    (tmp_path / "alias.onnx").symlink_to(path)
    (tmp_path / "alias.json").write_text("{}")
    with pytest.raises(InputError, match="not a regular model file"):
        load_session(find("alias", tmp_path))
    (tmp_path / "junk.onnx").write_bytes(b"\xff" * 64)
    (tmp_path / "junk.json").write_text("{}")
    with pytest.raises(InputError, match="not a readable ONNX model"):
        load_session(find("junk", tmp_path))


def test_models_command_lists_terms(tmp_path: Path) -> None:
    result = run_sitewatch("models", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)["models"]}
    assert "Apache-2.0" in rows["lite0-features"]["terms"]
    assert rows["lite0-features"]["bands"] == "rgb"
    _write_model(tmp_path, "mine", None)
    mine = run_sitewatch("models", "--folder", tmp_path)
    assert mine.returncode == 0 and "mine" in mine.stdout and "test terms" in mine.stdout
    missing = run_sitewatch("models", "--folder", tmp_path / "nowhere")
    assert missing.returncode == 1 and "not a folder" in missing.stderr


def test_onnx_files_parse_without_external_data() -> None:
    card = find("lite0-features")
    model = onnx.load(str(card.path), load_external_data=False)
    assert all(t.data_location != TensorProto.EXTERNAL for t in model.graph.initializer)
