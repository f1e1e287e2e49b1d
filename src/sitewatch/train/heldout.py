"""Scores of siamese models for their metadata and cards: one model folder, or k-fold held out.

``sitewatch train change --folds K`` writes K fold models, each listing its training pairs in its
metadata (``trained_on``, by :attr:`~sitewatch.eval.change.LabelledPair.id`).
:func:`heldout_scores` is ``sitewatch eval change --detector siamese --models DIR``: every pair
scored by a fold model that never saw it. :func:`model_scores` scores one model folder on given
pairs. Both load, align, detect and score exactly as ``sitewatch eval change`` does (its
``score_pair`` and ``combine``), and need ONNX Runtime only, not PyTorch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from sitewatch.change.compare import detect_pair
from sitewatch.change.pair import load_pair
from sitewatch.change.siamese import Siamese
from sitewatch.eval.change import ALL, LabelledPair, Score, combine, evaluate, read_label, score_pair


def heldout_scores(pairs: Sequence[LabelledPair], models: Path) -> list[Score]:
    """Every pair scored by a fold model under MODELS (one folder a fold) whose ``trained_on`` lacks it.

    Rows per split and layout (and ``all``); a pair no fold model left out is scored by the shipped
    model and its row says ``in-sample``.

    Raises:
        InputError: If MODELS holds no fold folder, or a pair cannot be read.
    """
    return evaluate(pairs, ["siamese"], models=models).scores


def model_scores(pairs: Sequence[LabelledPair], model_dir: Path, protocol: str) -> list[Score]:
    """PAIRS scored by the model in MODEL_DIR, one row per layout (and ``all``), labelled PROTOCOL
    (one of :mod:`sitewatch.eval.change`'s protocol labels, such as ``IN_SAMPLE``).

    Raises:
        NotFound: If MODEL_DIR holds no ``siamese-change.onnx``.
        InputError: If a pair cannot be read.
    """
    detector = Siamese(model_dir=model_dir)
    by_layout: dict[str, list[Score]] = {}
    for pair in pairs:
        started = time.perf_counter()
        product = detect_pair(load_pair(pair.before, pair.after), detector, started=started)
        truth = read_label(pair.label)
        score = score_pair(pair, "siamese", product.mask, truth, product.seconds, protocol)
        by_layout.setdefault(pair.layout, []).append(score)
    split = pairs[0].split if pairs else ""
    rows = [combine(split, layout, "siamese", scores) for layout, scores in sorted(by_layout.items())]
    if len(rows) > 1:
        rows.append(combine(split, ALL, "siamese", [s for scores in by_layout.values() for s in scores]))
    return rows
