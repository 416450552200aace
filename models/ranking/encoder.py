"""Feature encoding: raw feature dict -> ``x0``, the input of the cross and deep layers.

Numeric features: NaN -> 0, ``log1p(max(x, 0))`` for the configured heavy-tailed ones, then
standardised with the training mean/variance (Keras ``Normalization``). The scale is floored
(:func:`floored_variance`): a constant or nearly constant feature -- a time feature whose spread is
float32 rounding, a rate that never moves in a domain without impressions -- would otherwise be divided
by ~1e-6, and every rounding difference between two implementations of the same model (the SavedModel
and the NumPy export) magnified a million times. Categorical features:
``StringLookup`` (index 0 = out-of-vocabulary) -> ``Embedding``. ``x0`` is the concatenation.

The statistics (vocabularies, mean, variance) are fitted once per training run
(:func:`fit_preprocessing`) and shared by every model trained in that run, so the structures
compared by :func:`models.ranking.train.train_ranker` see identical inputs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from models.keras2 import tf
from models.ranking.config import RankerConfig

SCALE_FLOOR_RELATIVE = 1e-3  # a feature's scale is at least 0.1% of its magnitude (|mean|) ...
SCALE_FLOOR_ABSOLUTE = 1e-2  # ... and at least this: below either, its variation is treated as noise


def numeric_matrix(features: dict[str, tf.Tensor], names: list[str], log1p: list[str]) -> tf.Tensor:
    """(batch, len(names)) float32: NaN -> 0, log1p on the ``log1p`` columns."""
    x = tf.stack([tf.reshape(tf.cast(features[n], tf.float32), [-1]) for n in names], axis=1)
    x = tf.where(tf.math.is_nan(x), tf.zeros_like(x), x)
    mask = tf.constant([n in set(log1p) for n in names])
    return tf.where(mask, tf.math.log1p(tf.maximum(x, 0.0)), x)


def floored_variance(mean: np.ndarray, variance: np.ndarray) -> np.ndarray:
    """``variance`` with the standard deviation floored at ``max(SCALE_FLOOR_RELATIVE * |mean|,
    SCALE_FLOOR_ABSOLUTE)``. float32 resolves ~1.2e-7 of a value's magnitude, so after the floor one
    rounding step moves a standardised feature by at most ~1e-4. Features that really vary keep their
    variance (a 14-day window of epoch seconds spreads 2e-4 of its magnitude and is only rescaled)."""
    mean, variance = np.asarray(mean, np.float64), np.asarray(variance, np.float64)
    floor = np.maximum(SCALE_FLOOR_RELATIVE * np.abs(mean), SCALE_FLOOR_ABSOLUTE)
    return np.maximum(variance, floor ** 2).astype(np.float32)


@dataclass(frozen=True)
class PreprocessingStats:
    """Fitted on the training data: per-feature vocabularies (without the OOV token), numeric moments."""

    vocabularies: dict[str, list[str]]
    mean: np.ndarray  # (len(numeric),)
    variance: np.ndarray  # (len(numeric),) floored (see :func:`floored_variance`); exports before the floor
    # hold their raw variance and load unchanged


def fit_preprocessing(ds: tf.data.Dataset, config: RankerConfig) -> PreprocessingStats:
    """One pass over the batched training dataset (shards are streamed, so one pass, not one per feature):
    each categorical feature's vocabulary -- its ``config.max_vocab`` most frequent values, ties in value
    order, as ``StringLookup.adapt`` keeps them -- and the numeric matrix's mean and (floored) variance."""
    counts: dict[str, Counter[str]] = {name: Counter() for name in config.categorical}
    n = len(config.numeric)
    rows, total, squares = 0, np.zeros(n, np.float64), np.zeros(n, np.float64)
    for batch in ds:
        for name in config.categorical:
            values, seen = np.unique(tf.reshape(batch[name], [-1]).numpy(), return_counts=True)
            counts[name].update(dict(zip((v.decode() if isinstance(v, bytes) else str(v) for v in values),
                                         seen.tolist(), strict=True)))
        if n:
            x = numeric_matrix(batch, config.numeric, config.log1p).numpy().astype(np.float64)
            rows += x.shape[0]
            total += x.sum(axis=0)
            squares += (x * x).sum(axis=0)
    vocabularies = {name: [token for token, _ in sorted(found.items(), key=lambda kv: (-kv[1], kv[0]))
                           [: config.max_vocab]] for name, found in counts.items()}
    mean, variance = np.zeros(n, np.float32), np.ones(n, np.float32)
    if n and rows:
        mean64 = total / rows
        mean = mean64.astype(np.float32)
        variance = floored_variance(mean, np.maximum(squares / rows - mean64 * mean64, 0.0))
    return PreprocessingStats(vocabularies=vocabularies, mean=mean, variance=variance)


class FeatureEncoder(tf.keras.layers.Layer):
    """Raw features -> x0 = [standardised numeric features, embeddings of categorical features]."""

    def __init__(self, config: RankerConfig, stats: PreprocessingStats, **kwargs) -> None:
        super().__init__(**kwargs)
        self.numeric = list(config.numeric)
        self.categorical = list(config.categorical)
        self.log1p = list(config.log1p)
        self.normalization = (
            tf.keras.layers.Normalization(axis=-1, mean=stats.mean, variance=stats.variance)
            if self.numeric else None
        )
        self.lookups = {
            n: tf.keras.layers.StringLookup(vocabulary=stats.vocabularies[n], num_oov_indices=1)
            for n in self.categorical
        }
        self.embeddings = {
            n: tf.keras.layers.Embedding(len(stats.vocabularies[n]) + 1, config.embedding_dim, name=f"emb_{n}")
            for n in self.categorical
        }

    def call(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        parts = []
        if self.normalization is not None:
            parts.append(self.normalization(numeric_matrix(features, self.numeric, self.log1p)))
        for n in self.categorical:
            ids = self.lookups[n](tf.reshape(features[n], [-1]))
            parts.append(self.embeddings[n](ids))
        return tf.concat(parts, axis=1)
