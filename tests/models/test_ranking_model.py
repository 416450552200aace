"""DCN ranker: the cross layer (Keras and its generated NumPy version) by hand, the config, the encoder, and training on tiny data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from common.cross_features import CROSS_FEATURES
from common.features import ALL_VIEWS
from models.keras2 import tf, tfrs
from models.numpy_layers import build, describe
from models.ranking.config import HEAVY_TAILED, RankerConfig
from models.ranking.data import holdout_split
from models.ranking.encoder import FeatureEncoder, PreprocessingStats
from models.ranking.synthetic import log_impressions, make_world
from models.ranking.train import train_ranker

X0 = np.array([[1.0, 2.0]], np.float32)
W = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)  # y = W x  (Keras kernel = W.T)
B = np.array([0.5, -1.0], np.float32)
# x1 = x0 * (W x0 + b) + x0 = [1, 2] * ([5, 11] + [0.5, -1]) + [1, 2] = [6.5, 22]
X1 = np.array([[6.5, 22.0]], np.float32)
# x2 = x0 * (W x1 + b) + x1 = [1, 2] * ([50.5, 107.5] + [0.5, -1]) + [6.5, 22] = [57.5, 235]
X2 = np.array([[57.5, 235.0]], np.float32)


def test_cross_layer_matches_hand_computed_values():
    layer = tfrs.layers.dcn.Cross()
    layer(X0)  # creates the weights
    layer.set_weights([W.T, B])
    np.testing.assert_allclose(layer(X0).numpy(), X1)
    np.testing.assert_allclose(layer(X0, X1).numpy(), X2)
    arrays: dict[str, np.ndarray] = {}
    generated = build(describe(layer, "cross", arrays), arrays)
    np.testing.assert_allclose(generated(X0, X0), X1)
    np.testing.assert_allclose(generated(X0, X1), X2)


def test_low_rank_cross_layer_matches_hand_computed_values():
    u, v = np.array([[1.0], [1.0]], np.float32), np.array([[2.0, -1.0]], np.float32)
    # x0 U V = [3] V = [6, -3]; x0 * ([6, -3] + b) + x0 = [1, 2] * [6.5, -4] + [1, 2] = [7.5, -6]
    expected = np.array([[7.5, -6.0]], np.float32)
    layer = tfrs.layers.dcn.Cross(projection_dim=1)
    layer(X0)
    layer.set_weights([u, v, B])
    np.testing.assert_allclose(layer(X0).numpy(), expected)
    arrays: dict[str, np.ndarray] = {}
    np.testing.assert_allclose(build(describe(layer, "cross", arrays), arrays)(X0, X0), expected)


def test_default_feature_lists_come_from_the_feature_module():
    config = RankerConfig()
    known = {f.name for spec in ALL_VIEWS for f in spec.fields} | {f.name for f in CROSS_FEATURES}
    assert set(config.features) <= known
    assert HEAVY_TAILED <= known  # no stale names in the log1p list
    assert {"ctr_7d", "hour_of_day", "x_item_views"} <= set(config.numeric)
    assert {"category", "device_type", "country"} <= set(config.categorical)
    assert not [n for n in config.features if n.endswith("_ts")]
    assert set(config.log1p) <= set(config.numeric) and "popularity_7d" in config.log1p


@pytest.mark.parametrize("kwargs, message", [
    ({"numeric": ["a"], "categorical": ["a"]}, "both numeric and categorical"),
    ({"numeric": ["a"], "categorical": [], "log1p": ["b"]}, "not numeric"),
    ({"numeric": ["position"], "categorical": [], "log1p": []}, "cannot be features"),
    ({"rank_by": "conversion"}, "conversion_head"),
    ({"structure": "diagonal"}, "structure"),
])
def test_config_rejects_inconsistent_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RankerConfig(**kwargs)


def test_config_round_trips_through_a_dict():
    config = RankerConfig(numeric=["a", "b"], categorical=["c"], log1p=["b"], deep_layers=(8,), structure="stacked")
    assert RankerConfig.from_dict(config.to_dict()) == config


def test_encoder_transforms_numeric_and_categorical_features_as_configured():
    config = RankerConfig(numeric=["count", "ratio"], categorical=["colour"], log1p=["count"], embedding_dim=2)
    stats = PreprocessingStats(vocabularies={"colour": ["red", "blue"]},
                               mean=np.array([1.0, 0.5], np.float32), variance=np.array([4.0, 0.25], np.float32))
    encoder = FeatureEncoder(config, stats)
    x0 = encoder({
        "count": tf.constant([np.e - 1.0, np.nan, -5.0]),
        "ratio": tf.constant([1.0, 0.0, np.nan]),
        "colour": tf.constant(["blue", "green", "red"]),
    }).numpy()
    # count: log1p(e - 1) = 1 -> (1 - 1) / 2 = 0; NaN -> 0 -> log1p 0 = 0 -> -0.5; -5 -> max(., 0) -> -0.5
    np.testing.assert_allclose(x0[:, 0], [0.0, -0.5, -0.5], atol=1e-6)
    # ratio: (x - 0.5) / 0.5, NaN -> 0
    np.testing.assert_allclose(x0[:, 1], [1.0, -1.0, -1.0], atol=1e-6)
    table = encoder.embeddings["colour"].embeddings.numpy()  # row 0: unknown, 1: red, 2: blue
    np.testing.assert_allclose(x0[:, 2:], table[[2, 0, 1]])


def _constant_logloss(train_rate: float, labels: np.ndarray) -> float:
    return float(-np.mean(labels * np.log(train_rate) + (1 - labels) * np.log(1 - train_rate)))


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    ranks = pd.Series(scores).rank().to_numpy()
    pos = labels == 1
    return float((ranks[pos].sum() - pos.sum() * (pos.sum() + 1) / 2) / (pos.sum() * (~pos).sum()))


def test_training_beats_a_constant_predictor_and_keeps_the_better_structure():
    world = make_world(150, seed=3)
    train, valid = log_impressions(world, 600, seed=4), log_impressions(world, 150, seed=5)
    config = RankerConfig(numeric=world.numeric, categorical=world.categorical, log1p=["num_3"],
                          deep_layers=(16,), epochs=4, learning_rate=0.01, batch_size=256)
    valid_ds = tf.data.Dataset.from_tensor_slices({
        **{n: valid[n].to_numpy(np.float32) for n in world.numeric},
        **{n: valid[n].to_numpy(str) for n in world.categorical},
        "clicked": valid["clicked"].to_numpy(np.float32), "position": valid["position"].to_numpy(np.int32),
    }).batch(200)  # a tf.data input works as well as a DataFrame
    trained = train_ranker(train, valid_ds, config, verbose=False)

    assert set(trained.comparison) == {"stacked", "parallel"}
    assert trained.metrics == trained.comparison[trained.config.structure]
    assert trained.metrics["auc"] == max(m["auc"] for m in trained.comparison.values())
    labels = valid["clicked"].to_numpy()
    constant = _constant_logloss(train["clicked"].mean(), labels)
    assert trained.metrics["logloss"] < constant - 0.01
    assert trained.metrics["auc"] > 0.65  # a constant predictor has AUC 0.5
    # serving mode (no position tower) still ranks clicks above non-clicks
    p_click = trained.predict(valid)["p_click"]
    assert p_click.shape == (len(valid),) and ((p_click > 0) & (p_click < 1)).all()
    assert _auc(labels, p_click) > 0.6


def test_holdout_split_validates_on_the_latest_rows_or_whole_requests():
    frame = pd.DataFrame({"event_timestamp": pd.date_range("2024-01-01", periods=10, freq="h"), "x": range(10)})
    train, valid = holdout_split(frame, 0.2)
    assert list(valid["x"]) == [8, 9] and list(train["x"]) == list(range(8))
    requests = pd.DataFrame({"request_id": np.repeat(np.arange(10), 3), "x": range(30)})
    train, valid = holdout_split(requests, 0.3, seed=1)
    assert valid["request_id"].nunique() == 3 and len(valid) == 9
    assert not set(train["request_id"]) & set(valid["request_id"])
    with pytest.raises(ValueError):
        holdout_split(frame, 1.0)


def test_holdout_split_of_few_request_times_keeps_whole_requests_on_both_sides():
    # a small bootstrap set: each user's examples share one request time, the latest holds 40% of rows
    times = pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"]).repeat([3, 3, 4])
    frame = pd.DataFrame({"event_timestamp": times, "request_id": np.repeat(["a", "b", "c"], [3, 3, 4]),
                          "x": range(10)})
    train, valid = holdout_split(frame, 0.15)
    assert len(train) and len(valid)
    assert not set(train["request_id"]) & set(valid["request_id"])
    two = frame[frame["request_id"] != "c"]
    train, valid = holdout_split(two, 0.9)  # never every request on one side
    assert train["request_id"].nunique() == 1 and valid["request_id"].nunique() == 1


def test_one_pass_preprocessing_fits_what_the_keras_layers_adapt_to():
    from models.ranking.encoder import fit_preprocessing, floored_variance, numeric_matrix

    rng = np.random.default_rng(1)
    n = 5000
    values = {"c": rng.choice(["b", "a", "d", "c", "e", ""], n, p=[0.3, 0.3, 0.2, 0.1, 0.05, 0.05]).astype(object),
              "x": rng.lognormal(0, 1, n).astype(np.float32),
              "y": np.where(rng.random(n) < 0.1, np.nan, rng.normal(3, 2, n)).astype(np.float32)}
    config = RankerConfig(numeric=["x", "y"], categorical=["c"], log1p=["x"], max_vocab=4)
    ds = tf.data.Dataset.from_tensor_slices(values).batch(512)
    stats = fit_preprocessing(ds, config)
    lookup = tf.keras.layers.StringLookup(max_tokens=config.max_vocab + 1, num_oov_indices=1)
    lookup.adapt(ds.map(lambda b: tf.reshape(b["c"], [-1])))
    assert stats.vocabularies["c"] == [str(t) for t in lookup.get_vocabulary()[1:]]  # the 4 most frequent, in order
    norm = tf.keras.layers.Normalization(axis=-1)
    norm.adapt(ds.map(lambda b: numeric_matrix(b, config.numeric, config.log1p)))
    mean = np.asarray(norm.mean).ravel()
    np.testing.assert_allclose(stats.mean, mean, rtol=1e-5)
    np.testing.assert_allclose(stats.variance, floored_variance(mean, np.asarray(norm.variance).ravel()), rtol=1e-5)
