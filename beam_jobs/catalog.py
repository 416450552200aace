"""The catalog side input: each item's category (for users' recent categories) and its inventory.

Loaded from ``lake/catalog/domain=*/catalog.parquet`` and cached per process until a catalog file
changes (its modification time is part of the cache tag), so a micro-batch does not re-read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq
from apache_beam.utils.shared import Shared

from common.paths import DataPaths

_CACHE = Shared()


@dataclass(frozen=True)
class StreamCatalog:
    categories: dict[str, str] = field(default_factory=dict)
    inventory: dict[str, int] = field(default_factory=dict)

    def category(self, item_id: str) -> str | None:
        return self.categories.get(item_id)


def catalog_files(paths: DataPaths) -> list[tuple[str, int]]:
    """Every catalog file with its modification time (ns): the cache tag of the index."""
    root = paths.lake / "catalog"
    files = sorted(root.glob("domain=*/catalog.parquet")) if root.exists() else []
    return [(str(f), f.stat().st_mtime_ns) for f in files]


def read_catalog_index(paths: DataPaths) -> StreamCatalog:
    categories: dict[str, str] = {}
    inventory: dict[str, int] = {}
    for path, _ in catalog_files(paths):
        table = pq.read_table(path, columns=["item_id", "category", "inventory"]).to_pydict()
        for item_id, category, stock in zip(table["item_id"], table["category"], table["inventory"], strict=True):
            if category is not None:
                categories[item_id] = category
            if stock is not None:
                inventory[item_id] = int(stock)
    return StreamCatalog(categories, inventory)


def load_stream_catalog(data_root: str) -> StreamCatalog:
    """The catalog index of the data root, re-read only when a catalog file was added or rewritten."""
    paths = DataPaths(Path(data_root))
    return _CACHE.acquire(lambda: read_catalog_index(paths), tag=(data_root, tuple(catalog_files(paths))))
