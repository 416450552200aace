"""The fast export: the trained serving tower run in NumPy, generated from its layers and weights.

``weights.npz`` holds, in float32: the numeric normalisation (mean and scale = max(sqrt(var), eps)),
each categorical feature's vocabulary (index i+1 for the i-th token, 0 for unknown tokens, as
``StringLookup``) and embedding table, and the weights of the cross layers, the deep layers and the
heads. ``ranker.json`` lists those layers as :mod:`models.numpy_layers` read them from the trained
Keras layers (kind, activation, options), and scoring wires them with the same function as training
(:func:`models.ranking.forward.dcn_logits`): a change of layers or wiring is made once, in the model.
The feature encoding (``x0``) is the one part written twice; :mod:`models.ranking.scoring`'s parity
check compares the two on every export. Scoring is a handful of matrix products; it needs no TensorFlow,
which keeps the serving process light. BLAS runs single-threaded per call by default: a request's
matrices are small, and a multi-threaded BLAS on busy cores (a serving replica handles concurrent
requests) spin-waits and multiplies the tail latency. Chosen over TFLite dynamic-range quantisation by
measurement (see ``benchmarks/ranker.py`` and the ranking report): as fast, and exact (float32, no
quantisation error that could reorder a top-10).
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from itertools import repeat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from threadpoolctl import ThreadpoolController

from models.numpy_layers import ACTIVATIONS, UnsupportedLayer, build, build_all, describe
from models.ranking.config import OOV_INDEX, RankerConfig
from models.ranking.forward import dcn_logits, serving_outputs
from models.ranking.scoring import ExportError, Scorer, read_meta, write_meta

if TYPE_CHECKING:
    from models.ranking.train import TrainedRanker

FORMAT = "numpy"
WEIGHTS_FILE = "weights.npz"


def export_numpy(trained: TrainedRanker, path: str | Path) -> Path:
    """Write the fast export of ``trained``'s serving tower to ``path`` (a new directory)."""
    from models.keras2 import tf  # export time only: scoring never needs TensorFlow

    path = Path(path)
    path.mkdir(parents=True, exist_ok=False)
    scorer, config = trained.model.scorer, trained.config
    encoder = scorer.encoder
    arrays: dict[str, np.ndarray] = {}
    if encoder.normalization is not None:
        arrays["mean"] = encoder.normalization.mean.numpy().reshape(-1)
        std = np.sqrt(encoder.normalization.variance.numpy().reshape(-1))
        arrays["scale"] = np.maximum(std, tf.keras.backend.epsilon()).astype(np.float32)
    for name in config.categorical:
        arrays[f"vocab.{name}"] = np.array(encoder.lookups[name].get_vocabulary()[1:], dtype=str)
        arrays[f"emb.{name}"] = encoder.embeddings[name].embeddings.numpy()
    layers = {"cross": [describe(layer, f"cross.{i}", arrays) for i, layer in enumerate(scorer.cross)],
              "deep": [describe(layer, f"deep.{i}", arrays) for i, layer in enumerate(scorer.deep)],
              "heads": {name: describe(layer, f"head.{name}", arrays) for name, layer in scorer.heads.items()}}
    np.savez(path / WEIGHTS_FILE, **arrays)
    write_meta(path, FORMAT, config, {"layers": layers})
    return path


class NumpyScorer(Scorer):
    """Loads an :func:`export_numpy` directory; raises :class:`ExportError` if it is broken."""

    kind = "fast"

    def __init__(self, path: str | Path, blas_threads: int | None = 1) -> None:
        """``blas_threads=None`` leaves the process's BLAS thread count alone."""
        path = Path(path)
        self._blas_threads = blas_threads
        self._threadpools = ThreadpoolController()
        meta, self.config = read_meta(path, FORMAT)
        try:
            with np.load(path / WEIGHTS_FILE, allow_pickle=False) as npz:
                self._w = {k: npz[k] for k in npz.files}
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise ExportError(f"{path / WEIGHTS_FILE} cannot be read: {exc}") from exc
        c = self.config
        self._log1p = np.array([n in set(c.log1p) for n in c.numeric], dtype=bool)
        self._vocab = {n: {t: i + 1 for i, t in enumerate(self._get(f"vocab.{n}").tolist())} for n in c.categorical}
        self._width = len(c.numeric) + len(c.categorical) * c.embedding_dim
        layers = meta.get("layers") or _layers_before_specs(c)
        try:
            self._cross = build_all(layers["cross"], self._w)
            self._deep = build_all(layers["deep"], self._w)
            self._heads = {name: build(spec, self._w) for name, spec in layers["heads"].items()}
        except (KeyError, TypeError, UnsupportedLayer) as exc:
            raise ExportError(f"{path}: fast ranker export's layers cannot be built: {type(exc).__name__}: {exc}") from exc
        self._check_shapes(path)

    def _get(self, key: str) -> np.ndarray:
        if key not in self._w:
            raise ExportError(f"fast ranker export lacks array {key!r}")
        return self._w[key]

    def _check_shapes(self, path: Path) -> None:
        """Every weight must chain: x0 width -> cross -> deep -> heads; tables one row per token + OOV."""
        c = self.config
        expected: dict[str, tuple[int, ...]] = {}
        if c.numeric:
            expected["mean"] = expected["scale"] = (len(c.numeric),)
        for n in c.categorical:
            expected[f"emb.{n}"] = (len(self._vocab[n]) + 1, c.embedding_dim)
        for h in self._heads:
            expected[f"head.{h}.b"] = (1,)
        bad = {k: self._get(k).shape for k, shape in expected.items() if self._get(k).shape != shape}
        if bad:
            raise ExportError(f"{path}: weights inconsistent with the ranker config, shapes {bad}")
        try:
            probe = self._from_x0(np.zeros((1, self._width), np.float32))
        except ValueError as exc:  # a matrix product whose shapes do not chain
            raise ExportError(f"{path}: weights inconsistent with the ranker config ({exc})") from exc
        if probe["score"].shape != (1,):
            raise ExportError(f"{path}: a head does not output one logit per candidate")

    def _x0(self, features: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        c = self.config
        x0 = np.empty((n, self._width), np.float32)
        if c.numeric:
            x = x0[:, :len(c.numeric)]
            for j, name in enumerate(c.numeric):
                x[:, j] = features[name]
            x[np.isnan(x)] = 0.0
            x[:, self._log1p] = np.log1p(np.maximum(x[:, self._log1p], 0.0))
            x -= self._w["mean"]
            x /= self._w["scale"]
        start = len(c.numeric)
        for name in c.categorical:  # dict look-ups in C (map): ~4x faster than pandas get_indexer
            ids = np.fromiter(map(self._vocab[name].get, features[name], repeat(OOV_INDEX)), np.intp, n)
            x0[:, start:start + c.embedding_dim] = self._w[f"emb.{name}"].take(ids, axis=0)
            start += c.embedding_dim
        return x0

    def _from_x0(self, x0: np.ndarray) -> dict[str, np.ndarray]:
        heads = {name: (lambda hidden, head=head: head(hidden).reshape(-1)) for name, head in self._heads.items()}
        logits = dcn_logits(x0, self._cross, self._deep, heads, self.config.structure,
                            lambda a, b: np.concatenate([a, b], axis=1))
        return serving_outputs(logits, self.config.rank_by, ACTIVATIONS["sigmoid"])

    def _predict(self, features: Mapping[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
        x0 = self._x0(features, n)
        if self._blas_threads is None:
            return self._from_x0(x0)
        with self._threadpools.limit(limits=self._blas_threads, user_api="blas"):
            return self._from_x0(x0)


def _layers_before_specs(config: RankerConfig) -> dict[str, Any]:
    """The layer specs of an export written before ``ranker.json`` listed them (same array names)."""
    cross = {"kind": "cross", "activation": "linear", "use_bias": True,
             "low_rank": config.projection_dim is not None, "diag_scale": 0.0}
    return {"cross": [{**cross, "key": f"cross.{i}"} for i in range(config.cross_layers)],
            "deep": [{"kind": "dense", "key": f"deep.{i}", "activation": "relu"} for i in range(len(config.deep_layers))],
            "heads": {h: {"kind": "dense", "key": f"head.{h}", "activation": "linear"}
                      for h in ["click", *(["conversion"] if config.conversion_head else [])]}}
