"""The fast export: the trained serving tower re-implemented in NumPy from its weights.

``weights.npz`` holds, in float32: the numeric normalisation (mean and scale = max(sqrt(var), eps)),
each categorical feature's vocabulary (index i+1 for the i-th token, 0 for unknown tokens, as
``StringLookup``) and embedding table, the cross layers (``W`` or low-rank ``U``, ``V``, and ``b``),
the deep layers and the heads. Scoring is a handful of matrix products; it needs no TensorFlow,
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
from typing import TYPE_CHECKING

import numpy as np
from threadpoolctl import ThreadpoolController

from models.ranking.config import OOV_INDEX
from models.ranking.scoring import ExportError, Scorer, read_meta, write_meta

if TYPE_CHECKING:
    from models.ranking.train import TrainedRanker

FORMAT = "numpy"
WEIGHTS_FILE = "weights.npz"


def export_numpy(trained: TrainedRanker, path: str | Path) -> Path:
    """Write the fast export of ``trained``'s serving tower to ``path`` (a new directory)."""
    import tensorflow as tf  # export time only: scoring never needs TensorFlow

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
    for i, layer in enumerate(scorer.cross):
        weights = layer.get_weights()
        keys = ("w", "b") if config.projection_dim is None else ("u", "v", "b")
        arrays.update({f"cross.{i}.{k}": w for k, w in zip(keys, weights, strict=True)})
    for i, layer in enumerate(scorer.deep):
        arrays[f"deep.{i}.w"], arrays[f"deep.{i}.b"] = layer.get_weights()
    arrays["head.click.w"], arrays["head.click.b"] = scorer.click_head.get_weights()
    if scorer.conversion_head is not None:
        arrays["head.conversion.w"], arrays["head.conversion.b"] = scorer.conversion_head.get_weights()
    np.savez(path / WEIGHTS_FILE, **arrays)
    write_meta(path, FORMAT, config)
    return path


def cross_layer(x0: np.ndarray, x: np.ndarray, kernels: list[np.ndarray], bias: np.ndarray) -> np.ndarray:
    """DCN-v2 cross: ``x0 * (x W + b) + x``; ``kernels`` is ``[W]`` (Keras layout, in x out) or ``[U, V]``."""
    projected = x
    for kernel in kernels:
        projected = projected @ kernel
    return x0 * (projected + bias) + x


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -z)).astype(np.float32)


class NumpyScorer(Scorer):
    """Loads an :func:`export_numpy` directory; raises :class:`ExportError` if it is broken."""

    kind = "fast"

    def __init__(self, path: str | Path, blas_threads: int | None = 1) -> None:
        """``blas_threads=None`` leaves the process's BLAS thread count alone."""
        path = Path(path)
        self._blas_threads = blas_threads
        self._threadpools = ThreadpoolController()
        _, self.config = read_meta(path, FORMAT)
        try:
            with np.load(path / WEIGHTS_FILE, allow_pickle=False) as npz:
                self._w = {k: npz[k] for k in npz.files}
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise ExportError(f"{path / WEIGHTS_FILE} cannot be read: {exc}") from exc
        c = self.config
        self._log1p = np.array([n in set(c.log1p) for n in c.numeric], dtype=bool)
        self._vocab = {n: {t: i + 1 for i, t in enumerate(self._get(f"vocab.{n}").tolist())} for n in c.categorical}
        self._width = len(c.numeric) + len(c.categorical) * c.embedding_dim
        n_cross, n_deep = c.cross_layers, len(c.deep_layers)
        cross_keys = ("w",) if c.projection_dim is None else ("u", "v")
        self._cross = [(*(self._get(f"cross.{i}.{k}") for k in cross_keys), self._get(f"cross.{i}.b"))
                       for i in range(n_cross)]
        self._deep = [(self._get(f"deep.{i}.w"), self._get(f"deep.{i}.b")) for i in range(n_deep)]
        heads = ["click", *(["conversion"] if c.conversion_head else [])]
        self._heads = {h: (self._get(f"head.{h}.w"), self._get(f"head.{h}.b")) for h in heads}
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
        crossed = x0
        for *kernels, bias in self._cross:
            crossed = cross_layer(x0, crossed, kernels, bias)
        stacked = self.config.structure == "stacked"
        deep = crossed if stacked else x0
        for kernel, bias in self._deep:
            deep = np.maximum(deep @ kernel + bias, 0.0)
        hidden = deep if stacked else np.concatenate([crossed, deep], axis=1)
        logits = {h: (hidden @ w + b).reshape(-1) for h, (w, b) in self._heads.items()}
        p_click = _sigmoid(logits["click"])
        out = {"p_click": p_click}
        if "conversion" in logits:
            out["p_conversion"] = p_click * _sigmoid(logits["conversion"])
        out["score"] = out["p_conversion"] if self.config.rank_by == "conversion" else p_click
        return out

    def _predict(self, features: Mapping[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
        x0 = self._x0(features, n)
        if self._blas_threads is None:
            return self._from_x0(x0)
        with self._threadpools.limit(limits=self._blas_threads, user_api="blas"):
            return self._from_x0(x0)
