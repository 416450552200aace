"""Two-tower collaborative retriever trained with ``tfrs.tasks.Retrieval`` on implicit feedback.

Query tower: user-id embedding + profile features + the mean-pooled embeddings of the user's recent
history items (each item: id embedding + embeddings of its taxonomy levels) -> MLP -> unit vector. Candidate tower: item-id embedding + item content (taxonomy
levels, title/description tokens, price bucket) -> MLP -> unit vector. Score = cosine / temperature.

Negatives -- in-batch sampled softmax with logQ correction. Every other positive item of a batch is a
negative for a query: free (no extra tower passes) and it matches serving, where the query competes
against the whole corpus. But in-batch candidates are drawn from the *interaction* distribution, so
popular items appear as negatives far more often than under a full softmax, which biases the model
against them (sampled-softmax bias). Following Yi et al. (RecSys 2019), every logit is corrected by
``-log Q(item)``, with ``Q`` the item's share of training rows (``candidate_sampling_probability``).
Accidental hits -- the query's own positive item appearing again elsewhere in the batch -- are removed
from the negatives. Each row is weighted by its event weight (a purchase counts more than a view).

Cold users and items -- id dropout. In training a share (``id_dropout``) of user ids and item ids is
replaced by the out-of-vocabulary token, so the OOV embeddings are trained and the rest of each tower
(history and profile; item content) has to carry the signal; history item ids drop out the same way,
leaving their taxonomy. A user unseen at training time then gets the trained OOV vector plus the
embedding of their recent history; a new item gets its content.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from models.keras2 import tf, tfrs
from models.retrieval.data import HISTORY_LENGTH, PAD, UserFeatureSpec, item_content_inputs, pad_histories
from models.retrieval.examples import RetrievalExamples, logq
from models.retrieval.layers import (
    ItemContentEncoder,
    ItemTaxonomy,
    embed_in_batches,
    l2_normalize,
    masked_mean,
    preprocess_in_batches,
    string_lookup,
)

PROFILE_DIM = 8  # embedding size of each categorical profile value


@dataclass(frozen=True)
class TwoTowerConfig:
    embedding_dim: int = 64
    id_dim: int = 32
    hidden: int = 128
    history_length: int = HISTORY_LENGTH
    temperature: float = 0.05
    id_dropout: float = 0.3
    batch_size: int = 1024
    epochs: int = 5
    learning_rate: float = 0.005  # Adam, for every weight but the id embedding tables
    embedding_learning_rate: float = 0.1  # Adagrad, for the user and item id tables (sparse updates)
    seed: int = 0


def _id_dropout(ids: tf.Tensor, rate: float, training: bool) -> tf.Tensor:
    """While training, send a ``rate`` share of lookup indices to the OOV bucket (index 0)."""
    if not training or rate <= 0:
        return ids
    return tf.where(tf.random.uniform(tf.shape(ids)) < rate, tf.zeros_like(ids), ids)


class QueryTower(tf.keras.Model):
    """Inputs: ``user_id [B]``, ``history [B, H]`` (``""`` padded), ``numeric [B, k]`` (raw, NaN =
    missing) and ``categorical [B, c]`` (``"column=value"`` tokens). Output: unit vectors ``[B, d]``.

    ``preprocess`` (lookups, no weights) and ``encode`` (the trainable part) are split so training
    can preprocess its examples once; ``call`` chains them for serving.
    """

    def __init__(
        self, users: np.ndarray, items: np.ndarray, content: Mapping[str, np.ndarray], spec: UserFeatureSpec,
        profile_tokens: np.ndarray, numeric_stats: tuple[np.ndarray, np.ndarray], config: TwoTowerConfig,
    ) -> None:
        super().__init__(name="query_tower")
        self.id_dropout = config.id_dropout
        self.user_lookup = string_lookup(users)
        self.user_embedding = tf.keras.layers.Embedding(self.user_lookup.vocabulary_size(), config.id_dim)
        self.item_lookup = string_lookup(items)
        self.history_embedding = tf.keras.layers.Embedding(self.item_lookup.vocabulary_size(), config.id_dim)
        self.taxonomy = ItemTaxonomy(content)
        self.level_lookups = [string_lookup(content[level]) for level in self.taxonomy.levels]
        self.level_embeddings = [tf.keras.layers.Embedding(lookup.vocabulary_size(), config.id_dim) for lookup in self.level_lookups]
        self.num_numeric = len(spec.numeric)
        self.num_categorical = len(spec.categorical)
        if self.num_numeric:
            self.normalize = tf.keras.layers.Normalization(mean=numeric_stats[0], variance=numeric_stats[1])
        if self.num_categorical:
            self.profile_lookup = string_lookup(profile_tokens)
            self.profile_embedding = tf.keras.layers.Embedding(self.profile_lookup.vocabulary_size(), PROFILE_DIM)
        # the trunk over the concatenated parts; the fast export generates its NumPy version from these layers
        self.mlp = [tf.keras.layers.Dense(config.hidden, activation="relu"), tf.keras.layers.Dense(config.embedding_dim)]

    def preprocess(self, inputs: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        history = inputs["history"]
        ids = {"user": self.user_lookup(inputs["user_id"]), "history": self.item_lookup(history),
               "history_mask": tf.not_equal(history, PAD)}
        for name, values, lookup in zip(self.taxonomy.levels, self.taxonomy(history), self.level_lookups, strict=True):
            ids[f"history_{name}"] = lookup(values)
        if self.num_numeric:
            numeric = self.normalize(inputs["numeric"])
            ids["numeric"] = tf.where(tf.math.is_nan(numeric), tf.zeros_like(numeric), numeric)  # missing = mean
        if self.num_categorical:
            ids["profile"] = self.profile_lookup(inputs["categorical"])
        return ids

    def encode(self, ids: Mapping[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        user = self.user_embedding(_id_dropout(ids["user"], self.id_dropout, training))
        items = self.history_embedding(_id_dropout(ids["history"], self.id_dropout, training))
        for level, embedding in zip(self.taxonomy.levels, self.level_embeddings, strict=True):
            items += embedding(ids[f"history_{level}"])
        parts = [user, masked_mean(items, ids["history_mask"])]
        if self.num_numeric:
            parts.append(ids["numeric"])
        if self.num_categorical:
            parts.append(tf.reshape(self.profile_embedding(ids["profile"]), [-1, self.num_categorical * PROFILE_DIM]))
        x = tf.concat(parts, axis=1)
        for layer in self.mlp:
            x = layer(x)
        return l2_normalize(x)

    def call(self, inputs: Mapping[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        return self.encode(self.preprocess(inputs), training)


class CandidateTower(tf.keras.Model):
    """Inputs: ``item_id`` plus the item content inputs (see ``ItemContentEncoder``). Output: unit vectors."""

    def __init__(self, items: np.ndarray, content: Mapping[str, np.ndarray], config: TwoTowerConfig) -> None:
        super().__init__(name="candidate_tower")
        self.id_dropout = config.id_dropout
        self.item_lookup = string_lookup(items)
        self.item_embedding = tf.keras.layers.Embedding(self.item_lookup.vocabulary_size(), config.id_dim)
        self.content = ItemContentEncoder(content, config.embedding_dim, config.hidden)
        self.out = tf.keras.layers.Dense(config.embedding_dim)

    def preprocess(self, inputs: Mapping[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return {"item": self.item_lookup(inputs["item_id"]), **self.content.preprocess(inputs)}

    def encode(self, ids: Mapping[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        item = self.item_embedding(_id_dropout(ids["item"], self.id_dropout, training))
        return l2_normalize(self.out(tf.concat([item, self.content.encode(ids)], axis=1)))

    def call(self, inputs: Mapping[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        return self.encode(self.preprocess(inputs), training)


QUERY_INPUTS = ("user_id", "history", "numeric", "categorical")


class TwoTowerModel(tfrs.models.Model):
    """Trains on ``{"query": preprocessed query ids, "item_row", "weight", "candidate_prob"}``: the candidate
    side of a row is its catalog row's content, preprocessed once for the whole catalog (``catalog_ids``)."""

    def __init__(self, query_tower: QueryTower, candidate_tower: CandidateTower, temperature: float,
                 catalog_ids: Mapping[str, np.ndarray]) -> None:
        super().__init__()
        self.query_tower = query_tower
        self.candidate_tower = candidate_tower
        self.catalog_ids = {name: tf.constant(values) for name, values in catalog_ids.items()}
        self.task = tfrs.tasks.Retrieval(temperature=temperature, remove_accidental_hits=True)

    def compute_loss(self, features: Mapping[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        queries = self.query_tower.encode(features["query"], training=training)
        candidate = {name: tf.gather(ids, features["item_row"]) for name, ids in self.catalog_ids.items()}
        candidates = self.candidate_tower.encode(candidate, training=training)
        return self.task(
            queries,
            candidates,
            sample_weight=features["weight"],
            candidate_sampling_probability=features["candidate_prob"],
            candidate_ids=candidate["item"],
            compute_metrics=False,
        )


@dataclass
class TwoTower:
    """A trained two-tower retriever with the input encoders needed to call its towers."""

    model: TwoTowerModel
    config: TwoTowerConfig
    user_spec: UserFeatureSpec
    losses: list[float] = field(default_factory=list)

    @property
    def query_tower(self) -> QueryTower:
        return self.model.query_tower

    @property
    def candidate_tower(self) -> CandidateTower:
        return self.model.candidate_tower

    def query_inputs(
        self, user_ids: Sequence[str], histories: Sequence[Sequence[str]], user_features: pd.DataFrame | None = None
    ) -> dict[str, np.ndarray]:
        numeric, categorical = self.user_spec.encode(user_ids, user_features)
        return {
            "user_id": np.asarray(user_ids, dtype=object),
            "history": pad_histories(histories, self.config.history_length),
            "numeric": numeric,
            "categorical": categorical,
        }

    def query_embeddings(
        self, user_ids: Sequence[str], histories: Sequence[Sequence[str]], user_features: pd.DataFrame | None = None
    ) -> np.ndarray:
        return embed_in_batches(self.query_tower, self.query_inputs(user_ids, histories, user_features))

    def item_embeddings(self, catalog: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """``(item_ids, embeddings)`` for every catalog row (items never interacted with included)."""
        content = item_content_inputs(catalog)
        return content["item_id"], embed_in_batches(self.candidate_tower, content)

    def describe(self) -> dict:
        return {"config": asdict(self.config), "user_features": asdict(self.user_spec), "losses": self.losses}


def _numeric_stats(spec: UserFeatureSpec, user_features: pd.DataFrame | None) -> tuple[np.ndarray, np.ndarray]:
    if user_features is None or not spec.numeric:
        return np.zeros(0, "float32"), np.ones(0, "float32")
    values = user_features[list(spec.numeric)].astype("float64")
    mean = values.mean(skipna=True).fillna(0.0).to_numpy()
    variance = values.var(skipna=True, ddof=0).fillna(1.0).to_numpy()
    return mean.astype("float32"), np.where(variance > 0, variance, 1.0).astype("float32")


class ProfileTable:
    """Every user's encoded profile, looked up per batch (users without a profile row: NaN / ``column=``)."""

    def __init__(self, spec: UserFeatureSpec, user_features: pd.DataFrame | None) -> None:
        users = (user_features["user_id"].astype(str).drop_duplicates(keep="last").tolist()
                 if user_features is not None else [])
        self.index = pd.Index(users)
        numeric, categorical = spec.encode([*users, PAD], user_features)  # the last row: no profile
        self.numeric, self.categorical = numeric, categorical

    def encode(self, user_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = self.index.get_indexer(user_ids)
        rows = np.where(rows >= 0, rows, len(self.index))
        return self.numeric[rows], self.categorical[rows]


def id_tables_apart(model: TwoTowerModel, config: TwoTowerConfig) -> Any:
    """Adagrad for the id embedding tables (user ids, history and candidate item ids), Adam for the rest.

    Adam decays its moments for every row of a table at every step, so a step would cost O(users); Adagrad
    updates only the rows of the batch's ids (a sparse apply), so a step's cost follows the batch."""
    def tables() -> list[tf.Variable]:
        return [model.query_tower.user_embedding.embeddings, model.query_tower.history_embedding.embeddings,
                model.candidate_tower.item_embedding.embeddings]

    def rest() -> list[tf.Variable]:
        sparse = {v.ref() for v in tables()}
        return [v for v in model.trainable_variables if v.ref() not in sparse]

    return tfrs.experimental.optimizers.CompositeOptimizer([
        (tf.keras.optimizers.legacy.Adagrad(config.embedding_learning_rate), tables),
        (tf.keras.optimizers.legacy.Adam(config.learning_rate), rest),
    ])


def train_two_tower(
    examples: RetrievalExamples | pd.DataFrame,
    catalog: pd.DataFrame,
    user_features: pd.DataFrame | None = None,
    config: TwoTowerConfig | None = None,
    log_dir: str | None = None,
    verbose: int = 2,
) -> TwoTower:
    """Fit the two-tower model on ``examples`` (or on an interactions frame, turned into examples) by
    streaming them (:meth:`RetrievalExamples.batches`). ``verbose`` is Keras' (2 = one progress line per
    epoch); ``log_dir`` receives TensorBoard scalars (loss per epoch)."""
    config = config or TwoTowerConfig()
    tf.keras.utils.set_random_seed(config.seed)
    content = item_content_inputs(catalog)
    if isinstance(examples, pd.DataFrame):
        examples = RetrievalExamples.from_interactions(examples, content["item_id"], config.history_length, config.seed)
    if examples.rows == 0:
        raise ValueError("no interaction refers to a catalog item: nothing to train on")
    spec = UserFeatureSpec.from_frame(user_features)
    profiles = ProfileTable(spec, user_features)
    counts = examples.item_counts()
    catalog_row = pd.Index(content["item_id"])
    query = QueryTower(
        users=examples.distinct("user_id"),
        items=np.asarray(counts.index, dtype=object),
        content=content,
        spec=spec,
        profile_tokens=profiles.categorical,
        numeric_stats=_numeric_stats(spec, user_features),
        config=config,
    )
    candidate = CandidateTower(np.asarray(counts.index, dtype=object), content, config)
    model = TwoTowerModel(query, candidate, config.temperature, preprocess_in_batches(candidate, content))
    model.compile(optimizer=id_tables_apart(model, config))
    epochs = itertools.count(config.seed)

    def batches() -> Iterator[dict[str, np.ndarray]]:
        for batch in examples.batches(config.batch_size, config.history_length, seed=next(epochs)):
            numeric, categorical = profiles.encode(batch["user_id"])
            yield {"user_id": batch["user_id"], "history": batch["history"], "numeric": numeric,
                   "categorical": categorical, "item_row": catalog_row.get_indexer(batch["item_id"]).astype("int32"),
                   "weight": batch["weight"], "candidate_prob": logq(batch["item_id"], counts, examples.rows)}

    signature = {"user_id": tf.TensorSpec([None], tf.string),
                 "history": tf.TensorSpec([None, config.history_length], tf.string),
                 "numeric": tf.TensorSpec([None, len(spec.numeric)], tf.float32),
                 "categorical": tf.TensorSpec([None, len(spec.categorical)], tf.string),
                 "item_row": tf.TensorSpec([None], tf.int32), "weight": tf.TensorSpec([None], tf.float32),
                 "candidate_prob": tf.TensorSpec([None], tf.float32)}

    def prepared(batch: dict[str, tf.Tensor]) -> dict[str, Any]:
        return {"query": query.preprocess({k: batch[k] for k in QUERY_INPUTS}), "item_row": batch["item_row"],
                "weight": batch["weight"], "candidate_prob": batch["candidate_prob"]}

    dataset = (tf.data.Dataset.from_generator(batches, output_signature=signature)
               .map(prepared, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE))
    callbacks = [tf.keras.callbacks.TensorBoard(log_dir, write_graph=False, profile_batch=0)] if log_dir else []
    fitted = model.fit(dataset, epochs=config.epochs, verbose=verbose, callbacks=callbacks)
    return TwoTower(model, config, spec, [float(v) for v in fitted.history["loss"]])
