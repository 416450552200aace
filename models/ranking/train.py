"""Training: fit the preprocessing once, train each candidate structure with early stopping, keep the best.

With ``config.structure=None`` both STACKED and PARALLEL are trained on the same data, preprocessing
and seed, compared on the validation split (the early-stopping metric, click AUC by default) and
the better one is kept; :attr:`TrainedRanker.comparison` holds the figures of both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from models.keras2 import tf
from models.ranking.config import STRUCTURES, RankerConfig, Structure
from models.ranking.data import TrainingData, as_dataset, batched_dataset, feature_arrays
from models.ranking.encoder import PreprocessingStats, fit_preprocessing
from models.ranking.model import DCNRanker

_REPORTED = ("auc", "logloss", "conversion_auc", "conversion_logloss")  # streaming metrics over the split


@dataclass
class TrainedRanker:
    config: RankerConfig  # ``structure`` resolved to the kept one
    model: DCNRanker
    stats: PreprocessingStats
    metrics: dict[str, float]  # validation metrics of the kept model (training mode: with the position tower)
    comparison: dict[str, dict[str, float]]  # structure -> validation metrics, for every structure trained
    history: dict[str, list[float]]  # Keras history of the kept model
    best_epoch: int  # 1-based epoch whose weights were kept

    def predict(self, frame: pd.DataFrame, batch_size: int = 4096) -> dict[str, np.ndarray]:
        """Serving-mode outputs (no position tower) for the rows of ``frame``."""
        ds = batched_dataset(feature_arrays(frame, self.config), batch_size, shuffle=False, seed=self.config.seed)
        parts = [{k: v.numpy() for k, v in self.model(batch).items()} for batch in ds]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _better(metric: str, a: float, b: float) -> bool:
    return a > b if metric == "auc" else a < b


@dataclass(frozen=True)
class Distribution:
    """How a fit runs: under ``strategy`` (None: the default one), with a fixed number of steps per
    epoch and per validation (None: each dataset's end). A multi-worker fit needs the steps fixed: every
    worker must run the same number of synchronised steps."""

    strategy: tf.distribute.Strategy | None = None
    steps_per_epoch: int | None = None
    validation_steps: int | None = None


def _fit_one(structure: Structure, config: RankerConfig, stats: PreprocessingStats, train_ds: tf.data.Dataset,
             valid_ds: tf.data.Dataset, tensorboard_dir: str | Path | None, verbose: bool,
             distribution: Distribution) -> TrainedRanker:
    tf.keras.utils.set_random_seed(config.seed)
    config = config.with_structure(structure)
    strategy = distribution.strategy or tf.distribute.get_strategy()
    with strategy.scope():
        model = DCNRanker(config, stats, structure)
        model.compile(optimizer=tf.keras.optimizers.Adam(config.learning_rate))
    stopper = tf.keras.callbacks.EarlyStopping(
        monitor=f"val_{config.early_stopping}", mode="max" if config.early_stopping == "auc" else "min",
        patience=config.patience, restore_best_weights=True,
    )
    callbacks: list[tf.keras.callbacks.Callback] = [stopper]
    if tensorboard_dir is not None:
        callbacks.append(tf.keras.callbacks.TensorBoard(log_dir=str(Path(tensorboard_dir) / structure)))
    history = model.fit(train_ds, validation_data=valid_ds, epochs=config.epochs, callbacks=callbacks,
                        verbose=2 if verbose else 0, steps_per_epoch=distribution.steps_per_epoch,
                        validation_steps=distribution.validation_steps)
    evaluated = model.evaluate(valid_ds, return_dict=True, verbose=0, steps=distribution.validation_steps)
    # Keras sums the replicas' figures (each on its own share): reported as their mean
    replicas = strategy.num_replicas_in_sync
    metrics = {k: float(v) / replicas for k, v in evaluated.items() if k in _REPORTED}
    return TrainedRanker(config=config, model=model, stats=stats, metrics=metrics, comparison={},
                         history={k: [float(x) / replicas for x in v] for k, v in history.history.items()},
                         best_epoch=stopper.best_epoch + 1)


def train_ranker(train_df: TrainingData, valid_df: TrainingData, config: RankerConfig,
                 tensorboard_dir: str | Path | None = None, verbose: bool = True,
                 stats: PreprocessingStats | None = None, distribution: Distribution | None = None) -> TrainedRanker:
    """Train the ranker on impressions (a DataFrame, or a batched ``tf.data`` dataset of dicts).

    Early stopping on the validation ``config.early_stopping`` metric restores the best epoch. ``stats``:
    preprocessing fitted beforehand (every worker of a distributed fit needs the same), else fitted on
    ``train_df``; ``distribution``: see :class:`Distribution`.
    """
    train_ds = as_dataset(train_df, config, shuffle=True)
    valid_ds = as_dataset(valid_df, config, shuffle=False)
    if stats is None:
        if verbose:
            print(f"[ranker] fitting preprocessing: {len(config.numeric)} numeric, "
                  f"{len(config.categorical)} categorical features", flush=True)
        stats = fit_preprocessing(train_ds, config)
    structures = [config.structure] if config.structure is not None else list(STRUCTURES)
    trained: list[TrainedRanker] = []
    for structure in structures:
        if verbose:
            print(f"[ranker] training {structure} DCN (position correction: {config.position_correction})",
                  flush=True)
        trained.append(_fit_one(structure, config, stats, train_ds, valid_ds, tensorboard_dir, verbose,
                                distribution or Distribution()))
    best = trained[0]
    for candidate in trained[1:]:
        metric = config.early_stopping
        if _better(metric, candidate.metrics[metric], best.metrics[metric]):
            best = candidate
    best.comparison = {t.config.structure: t.metrics for t in trained}
    if verbose:
        for structure, metrics in best.comparison.items():
            print(f"[ranker] {structure}: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()), flush=True)
        print(f"[ranker] kept {best.config.structure} (best epoch {best.best_epoch})", flush=True)
    return best
