"""Shipped ONNX models, found by name, with their metadata and model cards.

A model ``NAME`` is three files side by side: ``NAME.onnx``, ``NAME.json`` (name, task, terms,
input bands and GSD, training pairs, metrics, the command that reproduces it) and ``NAME.md`` (the
model card). Models load only from this package's folder or a folder the user names, and a model
whose external data would be read from outside its folder is refused before ONNX Runtime opens it.

onnx and onnxruntime are imported inside the functions: the CLI imports this module for ``--help``.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sitewatch.errors import InputError, NotFound

if TYPE_CHECKING:
    from collections.abc import Iterator

    import onnx
    import onnxruntime

#: The folder of the shipped models (this package).
PACKAGE_FOLDER = Path(__file__).resolve().parent
#: Largest model file accepted, so a hostile or mistaken file is refused before it is parsed.
MAX_MODEL_BYTES = 200 * 1024 * 1024


@dataclass(frozen=True)
class ModelCard:
    """A model file with what is known about it.

    Attributes:
        name: the model's name (its file stem).
        path: the ``.onnx`` file.
        metadata: ``NAME.json``: at least name, task, terms, input, trained_on, metrics, reproduce.
        card_text: ``NAME.md``, or ``""`` where there is none.
    """

    name: str
    path: Path
    metadata: dict[str, Any] = field(hash=False, compare=False)
    card_text: str = field(default="", hash=False, compare=False)

    @property
    def size_bytes(self) -> int:
        """Size of the ``.onnx`` file."""
        return self.path.stat().st_size

    @property
    def trained_on(self) -> frozenset[str]:
        """The ids of the samples (change pairs, images) the model was trained or tuned on, so that an
        evaluation can tell held-out figures from in-sample ones.

        Raises:
            InputError: If the metadata's ``trained_on`` is not a list of ids.
        """
        ids = self.metadata.get("trained_on", [])
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise InputError(self.path.with_suffix(".json"), "trained_on must be a list of sample ids")
        return frozenset(ids)


def find(name: str, folder: Path | None = None) -> ModelCard:
    """The model NAME in FOLDER (a folder the user names), else among the shipped models.

    Raises:
        NotFound: If there is no ``NAME.onnx`` there (or NAME is not a plain file name).
        InputError: If its ``NAME.json`` is missing or not a JSON object.
    """
    where = PACKAGE_FOLDER if folder is None else Path(folder)
    if not name or Path(name).name != name or name.startswith("."):
        raise NotFound(f"no model {name!r}: a model is named by its file stem, without folders")
    path = where / f"{name}.onnx"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in where.glob("*.onnx"))) if where.is_dir() else ""
        raise NotFound(f"no model {name!r} in {where} (known: {known or 'none'})")
    return _card(path)


def shipped() -> list[ModelCard]:
    """The models shipped in the package folder, sorted by name."""
    return [_card(p) for p in sorted(PACKAGE_FOLDER.glob("*.onnx"))]


def load_session(card: ModelCard, threads: int | None = None) -> onnxruntime.InferenceSession:
    """An ONNX Runtime session for CARD on the CPU, with THREADS intra-op threads (default: all cores).

    Sessions are cached per file and thread count: building one costs more than a small tile.

    Raises:
        InputError: If the file is not a regular file, is over :data:`MAX_MODEL_BYTES`, or keeps
            external data outside its folder.
    """
    return _session(card.path.absolute(), threads or os.cpu_count() or 1)


@functools.lru_cache(maxsize=8)
def _session(path: Path, threads: int) -> onnxruntime.InferenceSession:
    import onnxruntime

    check_model_file(path)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def check_model_file(path: Path) -> None:
    """Refuse PATH unless it is a regular file under the size limit whose external data stays beside it.

    Raises:
        InputError: As :func:`load_session` says.
    """
    import onnx
    from onnx.external_data_helper import ExternalDataInfo

    if path.is_symlink() or not path.is_file():
        raise InputError(path, "not a regular model file")
    size = path.stat().st_size
    if size > MAX_MODEL_BYTES:
        raise InputError(path, f"{size / 1e6:.0f} MB is over the {MAX_MODEL_BYTES / 1e6:.0f} MB model limit")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises protobuf's DecodeError and others on a corrupt file
        raise InputError(path, f"not a readable ONNX model ({type(exc).__name__})") from exc
    folder = path.parent.resolve()
    for tensor in _tensors(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = ExternalDataInfo(tensor).location
        target = (folder / location).resolve()
        if not location or Path(location).is_absolute() or not target.is_relative_to(folder):
            raise InputError(path, f"external data {location!r} of tensor {tensor.name!r} escapes the model folder")


def _tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every tensor GRAPH holds: initializers, sparse ones, and node attributes, subgraphs included."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _tensors(attribute.g)
            for subgraph in attribute.graphs:
                yield from _tensors(subgraph)


def _card(path: Path) -> ModelCard:
    meta_path = path.with_suffix(".json")
    try:
        metadata = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(meta_path, f"model metadata missing or not JSON ({exc.__class__.__name__})") from exc
    if not isinstance(metadata, dict):
        raise InputError(meta_path, "model metadata must be a JSON object")
    card_path = path.with_suffix(".md")
    card_text = card_path.read_text(encoding="utf-8") if card_path.is_file() else ""
    return ModelCard(name=path.stem, path=path, metadata=metadata, card_text=card_text)
