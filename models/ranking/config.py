"""Ranker configuration: feature lists, architecture and training settings.

The model never names a feature itself; it reads the lists of :class:`RankerConfig`. The defaults
come from the ``ranking_v1`` feature service of :mod:`common.features` (scalar numeric and string
fields), the request context, and the user x item / user x category cross features of :mod:`common.cross_features`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

from common.cross_features import CROSS_FEATURES
from common.features import FEATURE_SERVICES, FeatureField

CLICK_LABEL = "clicked"
CONVERSION_LABEL = "converted"
POSITION = "position"  # 1-based served slot
OOV_INDEX = 0  # StringLookup(num_oov_indices=1): unknown tokens map to 0, the vocabulary to 1..V

Structure = Literal["stacked", "parallel"]
STRUCTURES: tuple[Structure, ...] = ("stacked", "parallel")

_NUMERIC_DTYPES = {"Int64", "Float32", "Float64", "Bool"}
# Heavy-tailed counts and amounts: log1p before normalisation.
HEAVY_TAILED = frozenset({
    "purchase_count_30d", "avg_basket_value", "lifetime_events", "lifetime_purchases",
    "days_since_last_purchase", "days_since_last_session", "tenure_days", "income",
    "applications_90d", "approvals_total", "declines_total", "session_depth", "price",
    "popularity_7d", "popularity_30d", "popularity_1d", "impressions_1d", "inventory",
    "x_item_views", "x_item_purchases", "x_item_hours_since", "x_cat_views", "x_cat_purchases",
    "x_cat_hours_since", "card_spend_30d", "large_transfers_90d", "days_since_salary_change", "salary_credit",
})


def _ranking_fields() -> list[FeatureField]:
    """Scalar fields of the ranking feature service (epoch-second ``*_ts`` fields are not features)."""
    out: list[FeatureField] = []
    for spec in FEATURE_SERVICES["ranking_v1"]:
        out.extend(f for f in spec.fields if not f.dtype.startswith("Array") and not f.name.endswith("_ts"))
    return out + list(CROSS_FEATURES)


def default_numeric() -> list[str]:
    return [f.name for f in _ranking_fields() if f.dtype in _NUMERIC_DTYPES]


def default_categorical() -> list[str]:
    return [f.name for f in _ranking_fields() if f.dtype == "String"]


def default_log1p() -> list[str]:
    return [name for name in default_numeric() if name in HEAVY_TAILED]


@dataclass(frozen=True)
class RankerConfig:
    """Everything that defines a ranker. ``structure=None`` trains both structures and keeps the better."""

    numeric: list[str] = field(default_factory=default_numeric)
    categorical: list[str] = field(default_factory=default_categorical)
    log1p: list[str] = field(default_factory=default_log1p)  # subset of ``numeric``
    embedding_dim: int = 8
    max_vocab: int = 5000  # most frequent tokens kept per categorical feature (+1 OOV bucket)
    structure: Structure | None = None
    cross_layers: int = 2
    projection_dim: int | None = None  # low-rank cross layers (W = U V) when set
    deep_layers: tuple[int, ...] = (128, 64)
    position_correction: bool = True
    max_position: int = 20  # positions above it share the last bucket
    conversion_head: bool = False  # second head for ``converted`` (ESMM-style, see model.py)
    conversion_weight: float = 1.0
    rank_by: Literal["click", "conversion"] = "click"
    learning_rate: float = 1e-3
    batch_size: int = 512
    epochs: int = 10
    patience: int = 2
    early_stopping: Literal["auc", "logloss"] = "auc"
    seed: int = 42

    def __post_init__(self) -> None:
        overlap = set(self.numeric) & set(self.categorical)
        if overlap:
            raise ValueError(f"features both numeric and categorical: {sorted(overlap)}")
        if not self.numeric and not self.categorical:
            raise ValueError("a ranker needs at least one feature")
        for name, names in (("numeric", self.numeric), ("categorical", self.categorical)):
            if len(set(names)) != len(names):
                raise ValueError(f"duplicate {name} features")
        stray = set(self.log1p) - set(self.numeric)
        if stray:
            raise ValueError(f"log1p features that are not numeric features: {sorted(stray)}")
        reserved = {CLICK_LABEL, CONVERSION_LABEL, POSITION} & (set(self.numeric) | set(self.categorical))
        if reserved:
            raise ValueError(f"labels/position cannot be features: {sorted(reserved)}")
        if self.structure is not None and self.structure not in STRUCTURES:
            raise ValueError(f"structure must be one of {STRUCTURES} or None, got {self.structure!r}")
        if self.rank_by == "conversion" and not self.conversion_head:
            raise ValueError("rank_by='conversion' needs conversion_head=True")
        if self.projection_dim is not None and self.projection_dim < 1:
            raise ValueError("projection_dim must be positive")
        if self.max_position < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ValueError("max_position, epochs and batch_size must be positive")

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    def with_structure(self, structure: Structure) -> RankerConfig:
        return replace(self, structure=structure)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["deep_layers"] = list(self.deep_layers)
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RankerConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown ranker config keys: {sorted(unknown)}")
        values = dict(raw)
        if "deep_layers" in values:
            values["deep_layers"] = tuple(values["deep_layers"])
        return cls(**values)
