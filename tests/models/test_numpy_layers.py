"""The NumPy layers generated from trained Keras layers compute what the Keras layers compute."""

from __future__ import annotations

import numpy as np
import pytest

from models.keras2 import tf, tfrs
from models.numpy_layers import ACTIVATIONS, UnsupportedLayer, build, describe

RNG = np.random.default_rng(0)
X = RNG.normal(size=(5, 6)).astype(np.float32)


def _generated(layer: tf.keras.layers.Layer):
    arrays: dict[str, np.ndarray] = {}
    spec = describe(layer, "layer", arrays)
    return build(spec, arrays), spec


@pytest.mark.parametrize("activation", [*sorted(ACTIVATIONS), "silu"])
@pytest.mark.parametrize("use_bias", [True, False])
def test_dense_follows_the_keras_layer(activation: str, use_bias: bool) -> None:
    layer = tf.keras.layers.Dense(4, activation=activation, use_bias=use_bias, bias_initializer="random_normal")
    expected = layer(X).numpy()
    generated, spec = _generated(layer)
    assert spec["activation"] == ("swish" if activation == "silu" else activation)
    np.testing.assert_allclose(generated(X), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("options", [
    {}, {"projection_dim": 2}, {"diag_scale": 0.5}, {"use_bias": False},
    {"preactivation": "relu", "projection_dim": 3, "diag_scale": 1.0},
])
def test_cross_follows_the_keras_layer(options: dict) -> None:
    layer = tfrs.layers.dcn.Cross(bias_initializer="random_normal", **options)
    x1 = layer(X).numpy()
    expected = layer(X, x1).numpy()
    generated, _ = _generated(layer)
    np.testing.assert_allclose(generated(X, x1), expected, rtol=1e-5, atol=1e-5)


def test_what_numpy_cannot_reproduce_is_refused_at_export() -> None:
    with pytest.raises(UnsupportedLayer, match="selu"):
        _generated(tf.keras.layers.Dense(2, activation="selu"))
    norm = tf.keras.layers.LayerNormalization()
    norm(X)
    with pytest.raises(UnsupportedLayer, match="LayerNormalization"):
        _generated(norm)
