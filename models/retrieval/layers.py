"""Keras building blocks shared by the two-tower and the content models.

All preprocessing (string lookups, tokenisation, price buckets) sits inside the layers, so a tower
takes raw strings and numbers and exports as one self-contained SavedModel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from models.keras2 import tf
from models.retrieval.data import CATEGORY_LEVELS, PAD

MAX_TOKENS = 20_000  # text vocabulary (title + description), most frequent tokens
TEXT_LENGTH = 32  # tokens kept per item
PRICE_BUCKETS = 10  # price deciles of the training catalog


def masked_mean(values: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Mean over axis 1 of ``values [B, T, d]`` where ``mask [B, T]`` is true; zeros for empty rows."""
    weights = tf.cast(mask, values.dtype)[:, :, tf.newaxis]
    total = tf.reduce_sum(values * weights, axis=1)
    return tf.math.divide_no_nan(total, tf.reduce_sum(weights, axis=1))


def vocabulary(values: np.ndarray | Sequence[str]) -> list[str]:
    """Sorted distinct non-empty strings (the padding/missing token stays out of vocabularies)."""
    return sorted({str(v) for v in np.asarray(values, dtype=object).ravel() if v is not None and str(v) != PAD})


def string_lookup(values: np.ndarray | Sequence[str]) -> tf.keras.layers.StringLookup:
    """Lookup over the distinct non-empty values; index 0 is the out-of-vocabulary bucket (which also
    takes ``""``). A column with no value at all gets a placeholder vocabulary, so everything maps to OOV."""
    return tf.keras.layers.StringLookup(vocabulary=vocabulary(values) or ["<none>"], mask_token=None, num_oov_indices=1)


def price_boundaries(prices: np.ndarray, buckets: int = PRICE_BUCKETS) -> list[float]:
    """Inner quantile boundaries of the catalog prices (empty when every price is the same)."""
    quantiles = np.quantile(np.asarray(prices, dtype="float64"), np.linspace(0, 1, buckets + 1)[1:-1])
    return sorted({float(q) for q in quantiles if q > float(np.min(prices))})


class ItemContentEncoder(tf.keras.Model):
    """Item content -> vector: taxonomy levels, title/description tokens and the price bucket.

    Inputs (a dict of batched tensors): ``cat_l1..cat_l3`` taxonomy prefixes (strings, ``""`` when
    the path is shallower), ``text`` (title + description) and ``price`` (float). Vocabularies and
    price boundaries are fixed from the catalog it is built on; unknown values map to a learned
    out-of-vocabulary embedding, so any item -- including one launched after training -- gets a vector.
    """

    def __init__(self, content: Mapping[str, np.ndarray], dim: int, hidden: int, name: str = "item_content") -> None:
        super().__init__(name=name)
        self.levels = [f"cat_l{level}" for level in range(1, CATEGORY_LEVELS + 1)]
        self.lookups = {}
        self.level_embeddings = {}
        for level in self.levels:
            lookup = string_lookup(content[level])
            self.lookups[level] = lookup
            self.level_embeddings[level] = tf.keras.layers.Embedding(lookup.vocabulary_size(), dim // 2)
        self.tokenizer = tf.keras.layers.TextVectorization(max_tokens=MAX_TOKENS, output_sequence_length=TEXT_LENGTH)
        self.tokenizer.adapt(np.asarray(content["text"], dtype=object))
        self.token_embedding = tf.keras.layers.Embedding(self.tokenizer.vocabulary_size(), dim // 2)
        boundaries = price_boundaries(content["price"])
        self.price_bucket = tf.keras.layers.Discretization(bin_boundaries=boundaries)
        self.price_embedding = tf.keras.layers.Embedding(len(boundaries) + 1, 8)
        self.hidden = tf.keras.layers.Dense(hidden, activation="relu")
        self.out = tf.keras.layers.Dense(dim)

    def preprocess(self, inputs: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Raw content -> integer ids (no weights involved: computable once per catalog)."""
        ids = {level: self.lookups[level](inputs[level]) for level in self.levels}
        return {**ids, "tokens": self.tokenizer(inputs["text"]), "price_bucket": self.price_bucket(inputs["price"])}

    def encode(self, ids: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """Integer ids from :meth:`preprocess` -> vectors."""
        parts = [self.level_embeddings[level](ids[level]) for level in self.levels]
        parts.append(masked_mean(self.token_embedding(ids["tokens"]), ids["tokens"] > 0))
        parts.append(self.price_embedding(ids["price_bucket"]))
        return self.out(self.hidden(tf.concat(parts, axis=1)))

    def call(self, inputs: Mapping[str, tf.Tensor]) -> tf.Tensor:
        return self.encode(self.preprocess(inputs))


def l2_normalize(x: tf.Tensor) -> tf.Tensor:
    """Unit vectors: dot products become cosines, so ScaNN's dot-product search ranks like training."""
    return tf.math.l2_normalize(x, axis=-1)


def preprocess_in_batches(
    tower: tf.keras.Model, inputs: Mapping[str, np.ndarray], batch_size: int = 8192
) -> dict[str, np.ndarray]:
    """Run a tower's ``preprocess`` (lookups, tokenisation) over equally long arrays, once."""
    dataset = tf.data.Dataset.from_tensor_slices(dict(inputs)).batch(batch_size)
    parts = [{k: v.numpy() for k, v in tower.preprocess(batch).items()} for batch in dataset]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def embed_in_batches(tower: tf.keras.Model, inputs: Mapping[str, np.ndarray], batch_size: int = 4096) -> np.ndarray:
    """Run a tower (inference mode) over a dict of equally long arrays; returns a float32 matrix."""
    dataset = tf.data.Dataset.from_tensor_slices(dict(inputs)).batch(batch_size)
    return np.concatenate([tower(batch, training=False).numpy() for batch in dataset]).astype("float32")


class ItemTaxonomy(tf.keras.layers.Layer):
    """Item id -> its taxonomy prefixes (``cat_l1..cat_l3``) through static tables built from the catalog.

    Lets the query tower describe history items by category as well as by id, so a rare or unseen
    history item still says something about the user. Unknown ids map to ``""`` (OOV downstream).
    """

    def __init__(self, content: Mapping[str, np.ndarray], name: str = "item_taxonomy") -> None:
        super().__init__(name=name, trainable=False)
        keys = tf.constant(np.asarray(content["item_id"]).astype(str))
        self.levels = [f"cat_l{level}" for level in range(1, CATEGORY_LEVELS + 1)]
        self.tables = [
            tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(keys, tf.constant(np.asarray(content[level]).astype(str))), PAD
            )
            for level in self.levels
        ]

    def call(self, item_ids: tf.Tensor) -> list[tf.Tensor]:
        return [table.lookup(item_ids) for table in self.tables]
