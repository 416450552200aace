"""Translate the feature-name module's dtype strings into Feast types and ``Field`` lists."""

from __future__ import annotations

from collections.abc import Iterable

from feast import Field
from feast.types import Array, Bool, FeastType, Float32, Float64, Int64, String, UnixTimestamp

from common.features import FeatureField

_PRIMITIVES: dict[str, FeastType] = {
    "Int64": Int64,
    "Float32": Float32,
    "Float64": Float64,
    "String": String,
    "Bool": Bool,
    "UnixTimestamp": UnixTimestamp,
}


def feast_type(dtype: str) -> FeastType:
    """``"Int64"`` -> ``Int64``, ``"Array(String)"`` -> ``Array(String)``."""
    if dtype.startswith("Array(") and dtype.endswith(")"):
        return Array(_PRIMITIVES[dtype[len("Array(") : -1]])
    return _PRIMITIVES[dtype]


def fields(features: Iterable[FeatureField], describe: bool = True) -> list[Field]:
    """Feast fields (name, dtype and, if ``describe``, description) for the given feature fields."""
    return [
        Field(name=f.name, dtype=feast_type(f.dtype), description=f.description if describe else "")
        for f in features
    ]
