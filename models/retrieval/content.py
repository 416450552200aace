"""Content retriever: an item tower that sees only content, so it embeds ANY item -- one with zero
interactions, or one launched after training -- and a parameter-free user side.

Item tower: taxonomy levels + title/description tokens + price bucket -> MLP -> unit vector
(``ItemContentEncoder``; no item id anywhere). Training objective: next-item retrieval from history.
The query of an interaction is the normalised mean of the content vectors of the user's previous
items; its positive is the item interacted with; negatives are in-batch with the logQ correction (see
``two_tower``). Items consumed by the same people are pulled together *through their content*, so the
geometry transfers to items nobody has touched yet: a brand-new trail shoe lands beside trail shoes.

User preference embedding = normalised mean of the content vectors of the recent history (exactly the
training query), optionally blended with the centroids of the categories of the user's profile
(category -> affinity, e.g. the ``top_categories`` feature), so a user with no history but known
tastes still gets a content query. The user side has no weights: serving computes it in numpy.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from models.keras2 import tf, tfrs
from models.retrieval.data import (
    CATEGORY_LEVELS,
    HISTORY_LENGTH,
    ITEM_INPUTS,
    PAD,
    item_content_inputs,
)
from models.retrieval.examples import RetrievalExamples, logq
from models.retrieval.layers import ItemContentEncoder, embed_in_batches, l2_normalize, masked_mean


@dataclass(frozen=True)
class ContentConfig:
    embedding_dim: int = 64
    hidden: int = 128
    history_length: int = HISTORY_LENGTH
    temperature: float = 0.1
    batch_size: int = 1024
    epochs: int = 5
    learning_rate: float = 0.005
    seed: int = 0


class ContentItemTower(tf.keras.Model):
    """Item content inputs (``cat_l1..3``, ``text``, ``price``) -> unit vectors."""

    def __init__(self, content: Mapping[str, np.ndarray], config: ContentConfig) -> None:
        super().__init__(name="content_item_tower")
        self.encoder = ItemContentEncoder(content, config.embedding_dim, config.hidden)

    def call(self, inputs: Mapping[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        return l2_normalize(self.encoder(inputs, training=training))

    def encode(self, ids: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """Unit vectors from preprocessed ids (``ItemContentEncoder.preprocess``)."""
        return l2_normalize(self.encoder.encode(ids))


class ContentModel(tfrs.models.Model):
    """History -> next item, both sides built from the same content tower over catalog rows.

    The catalog's content is tokenised/looked up once (``catalog_ids``); a step only gathers the
    ids of the distinct items of its batch and runs the trainable part of the tower on them.
    """

    def __init__(self, item_tower: ContentItemTower, content: Mapping[str, np.ndarray], temperature: float) -> None:
        super().__init__()
        self.item_tower = item_tower
        self.catalog_ids = item_tower.encoder.preprocess({name: tf.constant(content[name]) for name in ITEM_INPUTS})
        self.task = tfrs.tasks.Retrieval(temperature=temperature, remove_accidental_hits=True)

    def compute_loss(self, features: Mapping[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        history, target = features["history_rows"], features["item_row"]  # catalog rows; -1 pads history
        valid = history >= 0
        flat = tf.concat([tf.reshape(tf.maximum(history, 0), [-1]), target], axis=0)
        unique, position = tf.unique(flat)  # encode each distinct item of the batch once
        vectors = self.item_tower.encode({k: tf.gather(v, unique) for k, v in self.catalog_ids.items()})
        slots = tf.size(history)
        history_vectors = tf.reshape(tf.gather(vectors, position[:slots]), [-1, tf.shape(history)[1], tf.shape(vectors)[1]])
        queries = l2_normalize(masked_mean(history_vectors, valid))
        return self.task(
            queries,
            tf.gather(vectors, position[slots:]),
            sample_weight=features["weight"],
            candidate_sampling_probability=features["candidate_prob"],
            candidate_ids=target,
            compute_metrics=False,
        )


@dataclass
class ContentTower:
    """A trained content tower; ``item_embeddings`` embeds any catalog, including unseen items."""

    item_tower: ContentItemTower
    config: ContentConfig
    losses: list[float] = field(default_factory=list)

    def item_embeddings(self, catalog: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        content = item_content_inputs(catalog)
        return content["item_id"], embed_in_batches(self.item_tower, {k: content[k] for k in ITEM_INPUTS})

    def describe(self) -> dict:
        return {"config": asdict(self.config), "losses": self.losses}


def train_content_tower(
    examples: RetrievalExamples | pd.DataFrame,
    catalog: pd.DataFrame,
    config: ContentConfig | None = None,
    log_dir: str | None = None,
    verbose: int = 2,
) -> ContentTower:
    """Fit the content tower on history -> next-item pairs: the examples with a non-empty history, streamed
    (an interactions frame is turned into examples first). Keras progress per epoch, TensorBoard logs."""
    config = config or ContentConfig()
    tf.keras.utils.set_random_seed(config.seed)
    content = item_content_inputs(catalog)
    if isinstance(examples, pd.DataFrame):
        examples = RetrievalExamples.from_interactions(examples, content["item_id"], config.history_length, config.seed)
    counts = examples.item_counts(with_history_only=True)
    total = int(counts.sum())
    if total == 0:
        raise ValueError("no interaction has a catalog item before it: nothing to train the content tower on")
    item_tower = ContentItemTower(content, config)
    model = ContentModel(item_tower, content, config.temperature)
    model.compile(optimizer=tf.keras.optimizers.Adam(config.learning_rate))
    catalog_row = pd.Index(content["item_id"])
    epochs = itertools.count(config.seed)

    def batches() -> Iterator[dict[str, np.ndarray]]:
        for batch in examples.batches(config.batch_size, config.history_length, seed=next(epochs),
                                      with_history_only=True):
            history = catalog_row.get_indexer(batch["history"].ravel()).reshape(batch["history"].shape)
            yield {"history_rows": history.astype("int32"),  # -1 pads
                   "item_row": catalog_row.get_indexer(batch["item_id"]).astype("int32"),
                   "weight": batch["weight"], "candidate_prob": logq(batch["item_id"], counts, total)}

    signature = {"history_rows": tf.TensorSpec([None, config.history_length], tf.int32),
                 "item_row": tf.TensorSpec([None], tf.int32), "weight": tf.TensorSpec([None], tf.float32),
                 "candidate_prob": tf.TensorSpec([None], tf.float32)}
    dataset = tf.data.Dataset.from_generator(batches, output_signature=signature).prefetch(tf.data.AUTOTUNE)
    callbacks = [tf.keras.callbacks.TensorBoard(log_dir, write_graph=False, profile_batch=0)] if log_dir else []
    fitted = model.fit(dataset, epochs=config.epochs, verbose=verbose, callbacks=callbacks)
    return ContentTower(item_tower, config, [float(v) for v in fitted.history["loss"]])


def category_centroids(catalog: pd.DataFrame, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(keys, unit centroids)`` of the content vectors for every taxonomy prefix ("A", "A>B", ...)."""
    content = item_content_inputs(catalog)
    keys: list[str] = []
    centroids: list[np.ndarray] = []
    for level in range(1, CATEGORY_LEVELS + 1):
        labels = pd.Series(content[f"cat_l{level}"])
        for key, rows in labels.groupby(labels).groups.items():
            if key != PAD:
                keys.append(str(key))
                centroids.append(embeddings[np.asarray(rows)].mean(axis=0))
    matrix = np.asarray(centroids, dtype="float32").reshape(len(keys), embeddings.shape[1])
    return np.asarray(keys, dtype=object), _unit(matrix)


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def content_query(history_vectors: np.ndarray, profile_vectors: np.ndarray, profile_weights: np.ndarray) -> np.ndarray | None:
    """The user's content preference vector, or ``None`` when there is neither history nor profile.

    History part: normalised mean of the history items' vectors (the training query). Profile part:
    affinity-weighted mean of category centroids. With both, the two unit vectors count equally.
    """
    parts = []
    if len(history_vectors):
        parts.append(_unit(history_vectors.mean(axis=0)))
    if len(profile_vectors) and float(np.sum(profile_weights)) > 0:
        parts.append(_unit(np.average(profile_vectors, axis=0, weights=profile_weights)))
    return _unit(np.sum(parts, axis=0)).astype("float32") if parts else None
