"""The DCN ranker's forward pass, written once: training (TensorFlow) and serving (NumPy) both run it.

The functions take the layers as callables and the backend's ``concat``/``sigmoid``, so
``models.ranking.model.DCNScorer`` calls them with Keras layers and ``models.ranking.fast_export``
with the NumPy layers generated from those Keras layers (:mod:`models.numpy_layers`). A change to
how the layers are wired (a structure, a head) is made here and reaches both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from models.ranking.config import Structure

T = TypeVar("T")


def dcn_logits(x0: T, cross: Sequence[Callable[[T, T], T]], deep: Sequence[Callable[[T], T]],
               heads: Mapping[str, Callable[[T], T]], structure: Structure,
               concat: Callable[[T, T], T]) -> dict[str, T]:
    """``x0`` -> each head's logit.

    * stacked: ``x0 -> cross layers -> deep layers -> heads``;
    * parallel: ``concat(cross layers(x0), deep layers(x0)) -> heads``.
    """
    crossed = x0
    for layer in cross:
        crossed = layer(x0, crossed)
    hidden = crossed if structure == "stacked" else x0
    for layer in deep:
        hidden = layer(hidden)
    if structure != "stacked":
        hidden = concat(crossed, hidden)
    return {name: head(hidden) for name, head in heads.items()}


def serving_outputs(logits: Mapping[str, Any], rank_by: str, sigmoid: Callable[[Any], Any]) -> dict[str, Any]:
    """Probabilities served: ``p_click``, ``p_conversion`` (P(click and convert)) and the ranking ``score``."""
    p_click = sigmoid(logits["click"])
    out = {"p_click": p_click}
    if "conversion" in logits:
        out["p_conversion"] = p_click * sigmoid(logits["conversion"])
    out["score"] = out["p_conversion"] if rank_by == "conversion" else p_click
    return out
