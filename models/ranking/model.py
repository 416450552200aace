"""DCN-v2 ranker (TFRS) trained with a position-bias shallow tower.

Architecture
------------
``x0`` = standardised numeric features ++ categorical embeddings (:mod:`models.ranking.encoder`).
Cross layers (``tfrs.layers.dcn.Cross``: ``x_{l+1} = x0 * (W x_l + b) + x_l``, full-rank or low-rank
``W = U V``) model explicit bounded-degree feature interactions; a ReLU MLP models implicit ones.

* STACKED: ``x0 -> cross layers -> deep layers -> heads``.
* PARALLEL: ``concat(cross layers(x0), deep layers(x0)) -> heads``.

The wiring is :func:`models.ranking.forward.dcn_logits`, shared with the NumPy serving export.

The click head gives the logit ``f(x)``. The optional conversion head gives ``h(x)`` and is trained
ESMM-style over all impressions: ``P(click and convert | x) = sigmoid(f) * sigmoid(h)``, so the
conversion factor is learned on the entire impression space and not only on the clicked rows.

Position-bias correction (shallow tower, as in PAL / "Recommending What Video to Watch Next")
-------------------------------------------------------------------------------------------------
Logged clicks mix two things: whether the user *examined* the slot, which depends mostly on the
position, and whether the item is *relevant*. The logging policy put the items it believed best at
the top, so in the log position and item features are confounded: a model trained on raw clicks
credits the features the old policy ranked by with the examination boost of the top slots, and then
keeps repeating the old policy's choices.

PAL factorises ``P(click | x, pos) = P(seen | pos) * P(click | x, seen)`` and trains both factors
jointly; serving uses only the relevance factor. We use the additive form of the same idea: a
separate shallow tower ``g(pos)`` (a one-unit embedding of the position bucket, i.e. one-hot -> 1
unit) is ADDED to the click logit during training, ``logit = f(x) + g(pos)``. Because ``g`` sees
nothing but the position, it is the cheapest way for the model to explain the part of the click
rate that varies with the slot, and ``f`` is left to explain what varies with the item at a fixed
slot (the logging policy's randomness shows the same items in different slots, which identifies
the two). At serving the tower is dropped -- every candidate is scored as if shown in the same
slot -- so the ranking follows ``f(x)``, the de-biased relevance. The serving tower
(:class:`DCNScorer`) has no position input at all; only :class:`DCNRanker` (training) holds the
position tower.
"""

from __future__ import annotations

from models.keras2 import tf, tfrs
from models.ranking import forward
from models.ranking.config import CLICK_LABEL, CONVERSION_LABEL, POSITION, RankerConfig, Structure
from models.ranking.encoder import FeatureEncoder, PreprocessingStats


def serving_outputs(logits: dict[str, tf.Tensor], rank_by: str) -> dict[str, tf.Tensor]:
    """Probabilities served (:func:`models.ranking.forward.serving_outputs` in TensorFlow)."""
    return forward.serving_outputs(logits, rank_by, tf.sigmoid)


SUM = tf.keras.losses.Reduction.SUM  # see compute_loss


class DCNScorer(tf.keras.Model):
    """The serving tower: features -> ``{"click": logit[, "conversion": logit]}``. No position input."""

    def __init__(self, config: RankerConfig, stats: PreprocessingStats, structure: Structure, **kwargs) -> None:
        super().__init__(**kwargs)
        self.structure = structure
        self.encoder = FeatureEncoder(config, stats)
        self.cross = [
            tfrs.layers.dcn.Cross(projection_dim=config.projection_dim, kernel_initializer="glorot_uniform")
            for _ in range(config.cross_layers)
        ]
        self.deep = [tf.keras.layers.Dense(units, activation="relu") for units in config.deep_layers]
        self.click_head = tf.keras.layers.Dense(1, name="click_head")
        self.conversion_head = tf.keras.layers.Dense(1, name="conversion_head") if config.conversion_head else None

    @property
    def heads(self) -> dict[str, tf.keras.layers.Dense]:
        return {"click": self.click_head, **({} if self.conversion_head is None else {"conversion": self.conversion_head})}

    def call(self, features: dict[str, tf.Tensor], training: bool = False) -> dict[str, tf.Tensor]:
        return forward.dcn_logits(
            self.encoder(features), self.cross, self.deep,
            {name: (lambda hidden, head=head: tf.squeeze(head(hidden), axis=1)) for name, head in self.heads.items()},
            self.structure, lambda a, b: tf.concat([a, b], axis=1),
        )


class PositionTower(tf.keras.Model):
    """Shallow tower: position bucket (0 = unknown, 1..max_position, clipped) -> one logit offset."""

    def __init__(self, max_position: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.max_position = max_position
        self.bias = tf.keras.layers.Embedding(max_position + 1, 1, embeddings_initializer="zeros")

    def call(self, position: tf.Tensor) -> tf.Tensor:
        bucket = tf.clip_by_value(tf.cast(tf.reshape(position, [-1]), tf.int32), 0, self.max_position)
        return tf.squeeze(self.bias(bucket), axis=1)


class DCNRanker(tfrs.models.Model):
    """Training model: the serving tower plus (optionally) the position tower, the tasks and metrics."""

    def __init__(self, config: RankerConfig, stats: PreprocessingStats, structure: Structure, **kwargs) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.scorer = DCNScorer(config, stats, structure)
        self.position_tower = PositionTower(config.max_position) if config.position_correction else None
        self.click_task = tfrs.tasks.Ranking(
            loss=tf.keras.losses.BinaryCrossentropy(from_logits=True, reduction=SUM),
            metrics=[
                tf.keras.metrics.AUC(from_logits=True, name="auc"),
                tf.keras.metrics.BinaryCrossentropy(from_logits=True, name="logloss"),
            ],
        )
        self.conversion_task = (
            tfrs.tasks.Ranking(
                loss=tf.keras.losses.BinaryCrossentropy(reduction=SUM),
                metrics=[
                    tf.keras.metrics.AUC(name="conversion_auc"),
                    tf.keras.metrics.BinaryCrossentropy(name="conversion_logloss"),
                ],
            )
            if config.conversion_head else None
        )

    def call(self, features: dict[str, tf.Tensor], training: bool = False) -> dict[str, tf.Tensor]:
        """Serving-time predictions (no position): see :func:`serving_outputs`."""
        return serving_outputs(self.scorer(features, training=training), self.config.rank_by)

    def training_outputs(self, inputs: dict[str, tf.Tensor], training: bool = False) -> dict[str, tf.Tensor]:
        """``click_logit`` ``[n, 1]`` with the position tower's bias, and (with the conversion head)
        ``p_click_and_convert`` ``[n, 1]``: what the losses and the validation metrics are computed on."""
        logits = self.scorer(inputs, training=training)
        click_logit = logits["click"]
        if self.position_tower is not None:
            click_logit = click_logit + self.position_tower(inputs[POSITION])
        out = {"click_logit": tf.expand_dims(click_logit, 1)}
        if self.conversion_task is not None:
            out["p_click_and_convert"] = tf.sigmoid(out["click_logit"]) * tf.sigmoid(
                tf.expand_dims(logits["conversion"], 1))
        return out

    def compute_loss(self, inputs: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        outputs = self.training_outputs(inputs, training=training)
        click_logit = outputs["click_logit"]
        # the tasks sum their losses; dividing by the global batch (this replica's rows times the replicas)
        # gives the batch mean on one worker and, summed over the replicas, the global mean on several
        rows = tf.cast(tf.shape(click_logit)[0], tf.float32)
        global_batch = rows * tf.distribute.get_strategy().num_replicas_in_sync
        loss = self.click_task(labels=tf.reshape(inputs[CLICK_LABEL], [-1, 1]), predictions=click_logit)
        if self.conversion_task is not None:
            loss += self.config.conversion_weight * self.conversion_task(
                labels=tf.reshape(inputs[CONVERSION_LABEL], [-1, 1]), predictions=outputs["p_click_and_convert"]
            )
        return loss / global_batch
