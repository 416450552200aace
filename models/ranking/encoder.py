"""Feature encoding: raw feature dict -> ``x0``, the input of the cross and deep layers.

Numeric features: NaN -> 0, ``log1p(max(x, 0))`` for the configured heavy-tailed ones, then
standardised with the training mean/variance (Keras ``Normalization``). Categorical features:
``StringLookup`` (index 0 = out-of-vocabulary) -> ``Embedding``. ``x0`` is the concatenation.

The statistics (vocabularies, mean, variance) are fitted once per training run
(:func:`fit_preprocessing`) and shared by every model trained in that run, so the structures
compared by :func:`models.ranking.train.train_ranker` see identical inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from models.ranking.config import RankerConfig


def numeric_matrix(features: dict[str, tf.Tensor], names: list[str], log1p: list[str]) -> tf.Tensor:
    """(batch, len(names)) float32: NaN -> 0, log1p on the ``log1p`` columns."""
    x = tf.stack([tf.reshape(tf.cast(features[n], tf.float32), [-1]) for n in names], axis=1)
    x = tf.where(tf.math.is_nan(x), tf.zeros_like(x), x)
    mask = tf.constant([n in set(log1p) for n in names])
    return tf.where(mask, tf.math.log1p(tf.maximum(x, 0.0)), x)


@dataclass(frozen=True)
class PreprocessingStats:
    """Fitted on the training data: per-feature vocabularies (without the OOV token), numeric moments."""

    vocabularies: dict[str, list[str]]
    mean: np.ndarray  # (len(numeric),)
    variance: np.ndarray  # (len(numeric),)


def fit_preprocessing(ds: tf.data.Dataset, config: RankerConfig) -> PreprocessingStats:
    """One pass per feature group over the batched training dataset."""
    vocabularies: dict[str, list[str]] = {}
    for name in config.categorical:
        lookup = tf.keras.layers.StringLookup(max_tokens=config.max_vocab + 1, num_oov_indices=1)
        lookup.adapt(ds.map(lambda b, n=name: tf.reshape(b[n], [-1])))
        vocabularies[name] = list(lookup.get_vocabulary()[1:])
    n = len(config.numeric)
    mean, variance = np.zeros(n, np.float32), np.ones(n, np.float32)
    if n:
        norm = tf.keras.layers.Normalization(axis=-1)
        norm.adapt(ds.map(lambda b: numeric_matrix(b, config.numeric, config.log1p)))
        mean = np.asarray(norm.mean, np.float32).reshape(-1)
        variance = np.asarray(norm.variance, np.float32).reshape(-1)
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
