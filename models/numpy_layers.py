"""NumPy versions of the Keras layers a serving tower ends in, generated from the trained layers.

Serving runs the towers' dense parts in NumPy (a request's matrices are tiny; TensorFlow's per-call
overhead is not). So that an architecture change is made once, in the Keras model, the NumPy side
is not written by hand per model: :func:`describe` reads each trained layer's kind, activation and
options from its Keras config and its weights, the export stores that list, and :func:`build` turns
it back into callables. A layer option the NumPy side cannot reproduce is refused at export time
(:class:`UnsupportedLayer`), never silently approximated.

Supported: ``Dense`` (any activation of :data:`ACTIVATIONS`, with or without bias) and TFRS's DCN
``Cross`` (full or low rank, ``diag_scale``, ``use_bias``, ``preactivation``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -z)).astype(z.dtype, copy=False)


ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, np.float32(0.0)),
    "sigmoid": _sigmoid,
    "tanh": np.tanh,
    "swish": lambda x: x * _sigmoid(x),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))).astype(x.dtype, copy=False),
}


class UnsupportedLayer(ValueError):
    """A trained layer whose computation the NumPy side does not reproduce."""


def _activation(config: Mapping[str, Any], key: str) -> str:
    name = config.get(key) or "linear"
    name = {"silu": "swish"}.get(name, name) if isinstance(name, str) else name  # Keras' two names of one function
    if isinstance(name, Mapping):  # Keras may serialise an activation as {"class_name": ..., "config": ...}
        name = name.get("config", {}).get("name") or name.get("class_name")
    if name not in ACTIVATIONS:
        raise UnsupportedLayer(f"activation {name!r} has no NumPy version (supported: {sorted(ACTIVATIONS)})")
    return str(name)


def describe(layer: Any, key: str, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """The spec of a trained Keras ``layer``; its weights go into ``arrays`` as
    ``key.w`` (kernel; ``key.u``, ``key.v`` for a low-rank cross) and ``key.b`` (bias)."""
    kind = type(layer).__name__
    config = layer.get_config()
    weights = [np.asarray(w, np.float32) for w in layer.get_weights()]
    if kind == "Dense":
        spec = {"kind": "dense", "key": key, "activation": _activation(config, "activation"),
                "use_bias": bool(config.get("use_bias", True))}
        names = ["w", "b"][: len(weights)]
    elif kind == "Cross":
        low_rank = config.get("projection_dim") is not None
        spec = {"kind": "cross", "key": key, "activation": _activation(config, "preactivation"),
                "use_bias": bool(config.get("use_bias", True)), "low_rank": low_rank,
                "diag_scale": float(config.get("diag_scale") or 0.0)}
        names = (["u", "v"] if low_rank else ["w"]) + (["b"] if spec["use_bias"] else [])
    else:
        raise UnsupportedLayer(f"layer {layer.name!r} of type {kind} has no NumPy version")
    if len(names) != len(weights):
        raise UnsupportedLayer(f"layer {layer.name!r}: {len(weights)} weights, expected {names}")
    arrays.update({f"{key}.{name}": w for name, w in zip(names, weights, strict=True)})
    return spec


@dataclass(frozen=True)
class NumpyDense:
    """``activation(x W + b)``."""

    kernel: np.ndarray
    bias: np.ndarray | None
    activation: Callable[[np.ndarray], np.ndarray]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        z = x @ self.kernel
        if self.bias is not None:
            z += self.bias
        return self.activation(z)

    @property
    def weights(self) -> int:
        return int(self.kernel.size)


@dataclass(frozen=True)
class NumpyCross:
    """TFRS ``Cross``: ``x0 * (activation(x W + b) + diag_scale * x) + x``, ``W`` full or ``U V``."""

    kernels: tuple[np.ndarray, ...]
    bias: np.ndarray | None
    activation: Callable[[np.ndarray], np.ndarray]
    diag_scale: float

    def __call__(self, x0: np.ndarray, x: np.ndarray) -> np.ndarray:
        z = x
        for kernel in self.kernels:
            z = z @ kernel
        if self.bias is not None:
            z = z + self.bias
        z = self.activation(z)
        if self.diag_scale:
            z = z + np.float32(self.diag_scale) * x
        return x0 * z + x


def build(spec: Mapping[str, Any], weights: Mapping[str, np.ndarray]) -> NumpyDense | NumpyCross:
    """The callable of one :func:`describe` spec; ``KeyError`` when a weight is missing."""
    key, activation = spec["key"], ACTIVATIONS[_activation(spec, "activation")]
    bias = weights[f"{key}.b"] if spec.get("use_bias", True) else None
    if spec["kind"] == "dense":
        return NumpyDense(weights[f"{key}.w"], bias, activation)
    if spec["kind"] == "cross":
        kernels = (weights[f"{key}.u"], weights[f"{key}.v"]) if spec["low_rank"] else (weights[f"{key}.w"],)
        return NumpyCross(kernels, bias, activation, float(spec.get("diag_scale", 0.0)))
    raise UnsupportedLayer(f"layer kind {spec['kind']!r}")


def build_all(specs: Sequence[Mapping[str, Any]], weights: Mapping[str, np.ndarray]) -> list:
    return [build(spec, weights) for spec in specs]
