"""Ranker exports: the SavedModel (reference) and the fast NumPy export, behind one :class:`Scorer`.

``export_ranker(trained, out_dir)`` writes::

    out_dir/saved_model/   tf.saved_model.save of the serving tower, signature ``serving_default``
                           (one [batch] tensor per feature -> p_click[, p_conversion], score) + ranker.json
    out_dir/fast/          weights.npz + ranker.json (models.ranking.fast_export)

Neither export has a position input: the position tower is not part of the serving tower.
``load_scorer(out_dir, kind)`` loads either one; a broken export raises :class:`ExportError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import numpy as np

from models.keras2 import tf
from models.ranking.config import RankerConfig
from models.ranking.fast_export import NumpyScorer, export_numpy
from models.ranking.model import serving_outputs
from models.ranking.scoring import ExportError, Scorer, read_meta, write_meta
from models.ranking.train import TrainedRanker

FORMAT = "saved_model"
SIGNATURE = "serving_default"
ExportKind = Literal["fast", "saved_model"]
EXPORT_DIRS: dict[str, str] = {"saved_model": "saved_model", "fast": "fast"}


def serving_input_signature(config: RankerConfig) -> dict[str, tf.TensorSpec]:
    """One rank-1 tensor per feature: float32 for numeric features, string for categorical ones."""
    spec = {n: tf.TensorSpec([None], tf.float32, name=n) for n in config.numeric}
    spec.update({n: tf.TensorSpec([None], tf.string, name=n) for n in config.categorical})
    return spec


def export_saved_model(trained: TrainedRanker, path: str | Path) -> Path:
    """``tf.saved_model.save`` of the serving tower with an explicit signature (no position input)."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists; exports are written once")
    module = tf.Module()
    module.scorer = trained.model.scorer
    rank_by = trained.config.rank_by

    @tf.function(input_signature=[serving_input_signature(trained.config)])
    def serve(features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return serving_outputs(module.scorer(features, training=False), rank_by)

    tf.saved_model.save(module, str(path), signatures={SIGNATURE: serve})
    write_meta(path, FORMAT, trained.config)
    return path


class SavedModelScorer(Scorer):
    """Calls the ``serving_default`` signature of a :func:`export_saved_model` directory."""

    kind = "saved_model"

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        _, self.config = read_meta(path, FORMAT)
        try:
            self._loaded = tf.saved_model.load(str(path))
        except Exception as exc:  # TF raises many types (OpError, DecodeError, ValueError...) for a bad export
            raise ExportError(f"{path}: SavedModel cannot be loaded: {exc}") from exc
        signature = self._loaded.signatures.get(SIGNATURE)
        if signature is None:
            raise ExportError(f"{path}: SavedModel has no {SIGNATURE!r} signature")
        inputs = set(signature.structured_input_signature[1])
        if inputs != set(self.config.features):
            raise ExportError(f"{path}: signature inputs {sorted(inputs)} differ from the config's features")
        self._signature = signature

    @property
    def input_names(self) -> list[str]:
        """The inputs of the serving signature."""
        return sorted(self._signature.structured_input_signature[1])

    def _predict(self, features: Mapping[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
        args = {name: tf.constant(np.asarray(features[name], np.float32)) for name in self.config.numeric}
        args.update({name: tf.constant(np.asarray(features[name], dtype=object), tf.string)
                     for name in self.config.categorical})
        out = self._signature(**args)
        return {k: out[k].numpy() for k in self.outputs}


def export_ranker(trained: TrainedRanker, out_dir: str | Path) -> dict[str, Path]:
    """Write both exports under ``out_dir``; returns kind -> directory."""
    out_dir = Path(out_dir)
    return {
        "saved_model": export_saved_model(trained, out_dir / EXPORT_DIRS["saved_model"]),
        "fast": export_numpy(trained, out_dir / EXPORT_DIRS["fast"]),
    }


def load_scorer(out_dir: str | Path, kind: ExportKind = "fast") -> Scorer:
    """Load one export written by :func:`export_ranker`; raises :class:`ExportError` if it is broken."""
    if kind not in EXPORT_DIRS:
        raise ValueError(f"kind must be one of {sorted(EXPORT_DIRS)}, got {kind!r}")
    path = Path(out_dir) / EXPORT_DIRS[kind]
    return NumpyScorer(path) if kind == "fast" else SavedModelScorer(path)
