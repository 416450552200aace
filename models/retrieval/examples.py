"""The retrieval towers' training examples, streamed in bounded memory.

One row per positive interaction on a catalog item (:data:`EXAMPLE_COLUMNS`):

- ``user_id``, ``item_id`` (strings), ``weight`` (float: the event's weight);
- ``history``: the user's previous distinct catalog items, newest first, at most ``history_length``,
  never the row's own item -- the shape of the real-time ``recent_item_ids`` feature serving sends.

Two sources, one reader. For the nightly training Spark builds the rows (window functions, nothing
collected: :mod:`spark_jobs.retrieval_examples`) and writes them as Parquet shards in random order into
the staged release; :meth:`RetrievalExamples.from_interactions` builds the same rows in pandas for an
in-memory set (tests, the models CLI, the offline evaluation). Either way the towers read them through
:meth:`RetrievalExamples.batches`: one record batch at a time, shards in a new order every epoch and
rows permuted inside each chunk, so the trainer's memory is a few chunks whatever the set's size. The
per-item counts (the logQ correction) and the user vocabulary are taken in one pass over two columns.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from models.retrieval.data import padded, with_histories

EXAMPLE_COLUMNS = ("user_id", "item_id", "weight", "history")
EXAMPLES_META = "examples.json"
CHUNK_ROWS = 65_536  # rows read (and permuted) at a time


@dataclass(frozen=True)
class RetrievalExamples:
    """Examples held in memory (a pyarrow table) or as Parquet shards (a directory written by Spark)."""

    source: pa.Table | tuple[Path, ...]
    rows: int

    @classmethod
    def from_interactions(cls, interactions: pd.DataFrame, catalog_items: Sequence[str], history_length: int,
                          seed: int = 0) -> RetrievalExamples:
        """The examples of ``interactions`` (``user_id, item_id, timestamp, weight``) on ``catalog_items``,
        in random order."""
        frame = interactions.assign(user_id=interactions["user_id"].astype(str),
                                    item_id=interactions["item_id"].astype(str))
        frame = frame[frame["item_id"].isin(pd.Index(catalog_items).astype(str))]
        examples = with_histories(frame, history_length).sample(frac=1.0, random_state=seed)
        table = pa.table({
            "user_id": pa.array(examples["user_id"].tolist(), pa.string()),
            "item_id": pa.array(examples["item_id"].tolist(), pa.string()),
            "weight": pa.array(examples["weight"].to_numpy(dtype="float32")),
            "history": pa.array(examples["history"].tolist(), pa.list_(pa.string())),
        })
        return cls(table, table.num_rows)

    @classmethod
    def from_shards(cls, directory: Path) -> RetrievalExamples:
        """The shards under ``directory`` (``part-*.parquet``; ``examples.json`` says how many rows)."""
        files = tuple(sorted(Path(directory).glob("*.parquet")))
        rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
        meta = Path(directory) / EXAMPLES_META
        if meta.exists() and json.loads(meta.read_text())["rows"] != rows:
            raise ValueError(f"{directory}: the shards hold {rows:,} rows, {EXAMPLES_META} says otherwise "
                             "(a partial write?)")
        return cls(files, rows)

    def chunks(self, columns: Sequence[str], seed: int | None = None) -> Iterator[pa.RecordBatch]:
        """Record batches of ``columns``; with ``seed``, shards in a seeded order and rows permuted in each."""
        rng = np.random.default_rng(seed) if seed is not None else None
        if isinstance(self.source, pa.Table):
            parts: Sequence[pa.Table | Path] = [self.source]
        else:
            parts = list(self.source)
            if rng is not None:
                parts = [parts[i] for i in rng.permutation(len(parts))]
        for part in parts:
            batches = (part.select(list(columns)).to_batches(CHUNK_ROWS) if isinstance(part, pa.Table)
                       else pq.ParquetFile(part).iter_batches(CHUNK_ROWS, columns=list(columns)))
            for batch in batches:
                yield batch.take(pa.array(rng.permutation(batch.num_rows))) if rng is not None else batch

    def item_counts(self, with_history_only: bool = False) -> pd.Series:
        """Rows per item (``with_history_only``: of the rows whose history is not empty)."""
        totals: dict[str, int] = {}
        for batch in self.chunks(["item_id", "history"]):
            items = batch.column(0)
            if with_history_only:
                items = items.filter(pc.greater(pc.list_value_length(batch.column(1)), 0))
            for entry in pc.value_counts(items).to_pylist():
                totals[entry["values"]] = totals.get(entry["values"], 0) + entry["counts"]
        return pd.Series(totals, dtype="int64")

    def distinct(self, column: str) -> np.ndarray:
        """The distinct values of a string column, sorted (a vocabulary)."""
        seen: set[str] = set()
        for batch in self.chunks([column]):
            seen.update(pc.unique(batch.column(0)).to_pylist())
        return np.array(sorted(seen), dtype=object)

    def batches(self, batch_size: int, history_length: int, seed: int | None = None,
                with_history_only: bool = False) -> Iterator[dict[str, np.ndarray]]:
        """Batches of ``user_id, item_id`` (object), ``weight`` (float32) and ``history`` (``[b, length]``
        object, ``""`` padded); ``with_history_only`` skips the rows with an empty history."""
        for chunk in self.chunks(EXAMPLE_COLUMNS, seed):
            if with_history_only:
                chunk = chunk.filter(pc.greater(pc.list_value_length(chunk.column("history")), 0))
            arrays = {
                "user_id": chunk.column("user_id").to_numpy(zero_copy_only=False).astype(object),
                "item_id": chunk.column("item_id").to_numpy(zero_copy_only=False).astype(object),
                "weight": chunk.column("weight").to_numpy(zero_copy_only=False).astype("float32"),
                "history": padded(chunk.column("history"), history_length),
            }
            for first in range(0, chunk.num_rows, batch_size):
                yield {name: values[first:first + batch_size] for name, values in arrays.items()}


def logq(item_ids: np.ndarray, counts: pd.Series, total: int) -> np.ndarray:
    """Per row, the share of training rows that carry the row's item: the probability that the item shows
    up as an in-batch candidate (the logQ correction term)."""
    return (counts.reindex(item_ids).fillna(0).to_numpy(dtype="float64") / max(total, 1)).astype("float32")


def write_meta(directory: Path, rows: int) -> None:
    """``examples.json``: written last, after every shard, so a reader can tell a complete set."""
    (Path(directory) / EXAMPLES_META).write_text(json.dumps({"rows": rows, "columns": list(EXAMPLE_COLUMNS)}))
