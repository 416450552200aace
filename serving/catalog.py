"""The in-memory catalog of one domain: column arrays aligned by row, for vectorised re-ranking.

Items are addressed by their row; ``rows_of`` maps item ids to rows. Missing eligibility rules are
NaN (numeric) or False (``requires_no_arrears``), meaning "no constraint".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import repeat

import numpy as np
import pandas as pd

from common.epoch import epoch_seconds

RULE_COLUMNS = ("min_age", "max_age", "min_income", "min_credit_score", "max_dti")


def category_at(path: str, level: int) -> str:
    """The taxonomy path cut to ``level`` levels: ``category_at("A>B>C", 2) == "A>B"``."""
    return ">".join(path.split(">")[:level])


def _float_column(frame: pd.DataFrame, name: str) -> np.ndarray:
    if name not in frame:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


@dataclass(frozen=True)
class CatalogIndex:
    domain: str
    item_ids: np.ndarray  # object (str)
    categories: np.ndarray  # object (str): full taxonomy path
    price: np.ndarray
    margin: np.ndarray
    launched_ts: np.ndarray  # epoch seconds
    in_stock: np.ndarray  # bool, from the catalog inventory (real-time stock overrides it per request)
    rules: dict[str, np.ndarray]  # RULE_COLUMNS -> float arrays, NaN = no constraint
    requires_no_arrears: np.ndarray  # bool
    excluded_by: dict[str, np.ndarray]  # held item_id -> bool mask of items a holder may not get
    row_of: dict[str, int]
    _category_cache: dict[int, tuple[np.ndarray, dict[str, int]]] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, domain: str) -> CatalogIndex:
        """Build from a catalog table with the ``common.schemas.CatalogItem`` columns."""
        frame = frame.drop_duplicates("item_id", keep="last").reset_index(drop=True)
        n = len(frame)
        item_ids = frame["item_id"].astype(str).to_numpy(dtype=object)
        excluded_by: dict[str, np.ndarray] = {}
        for row, excludes in enumerate(frame["excludes"] if "excludes" in frame else []):
            for held in excludes if isinstance(excludes, list | tuple | np.ndarray) else ():
                excluded_by.setdefault(str(held), np.zeros(n, dtype=bool))[row] = True
        arrears = frame["requires_no_arrears"] if "requires_no_arrears" in frame else pd.Series([False] * n)
        return cls(
            domain=domain,
            item_ids=item_ids,
            categories=frame["category"].astype(str).to_numpy(dtype=object),
            price=_float_column(frame, "price"),
            margin=np.nan_to_num(_float_column(frame, "margin")),
            launched_ts=epoch_seconds(frame["launched_at"]),
            in_stock=pd.to_numeric(frame["inventory"]).to_numpy() > 0,
            rules={name: _float_column(frame, name) for name in RULE_COLUMNS},
            requires_no_arrears=arrears.astype("boolean").fillna(False).to_numpy(dtype=bool),
            excluded_by=excluded_by,
            row_of={item: row for row, item in enumerate(item_ids)},
        )

    def __len__(self) -> int:
        return len(self.item_ids)

    def rows_of(self, item_ids: Iterable[str]) -> np.ndarray:
        """Rows of the known ids among ``item_ids`` (unknown ids are skipped), order kept."""
        rows = np.fromiter(map(self.row_of.get, item_ids, repeat(-1)), dtype=np.int64)
        return rows[rows >= 0]

    def category_codes(self, level: int) -> tuple[np.ndarray, dict[str, int]]:
        """Per-row integer code of the product line at taxonomy ``level``, and the key -> code map."""
        if level not in self._category_cache:
            vocabulary: dict[str, int] = {}
            codes = np.fromiter(
                (vocabulary.setdefault(category_at(c, level), len(vocabulary)) for c in self.categories),
                dtype=np.int64,
                count=len(self.categories),
            )
            self._category_cache[level] = (codes, vocabulary)
        return self._category_cache[level]

    def ids(self, rows: Sequence[int] | np.ndarray) -> list[str]:
        return self.item_ids[np.asarray(rows, dtype=np.int64)].tolist()  # the ids are already str
