"""The ranker's training set as Parquet shards, streamed through ``tf.data`` in bounded memory.

A shard directory holds::

    train/part-*.parquet   the training rows, in random order, typed as the ranker reads them
    valid/part-*.parquet   the validation rows (the latest share of the window)
    shards.json            rows, positives and negatives of each side, and the columns

Spark writes it for the logged impressions (:mod:`spark_jobs.ranker_shards`), :func:`write_frame_shards`
for a set built in pandas (the bootstrap set). The trainer (:mod:`models.ranking.trainer`) reads it
record batch by record batch: its memory is a few batches per open shard, whatever the set's size, and
with several workers each reads only its own shards (:func:`worker_files`).
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from models.keras2 import tf
from models.ranking.config import CLICK_LABEL, CONVERSION_LABEL, POSITION, RankerConfig
from models.ranking.data import frame_to_tensors, required_columns

TRAIN, VALID, META = "train", "valid", "shards.json"
ROWS_PER_SHARD = 200_000  # write_frame_shards' shard size
INTERLEAVE = 4  # shards read at once
CHUNK_ROWS = 65_536  # rows read and typed at a time (a few MB per open shard)


@dataclass(frozen=True)
class ShardSet:
    """A shard directory's figures (``shards.json``)."""

    directory: Path
    rows: dict[str, int]  # side -> rows
    positives: dict[str, int]  # side -> clicked rows
    columns: list[str]

    @classmethod
    def load(cls, directory: Path) -> ShardSet:
        meta = json.loads((Path(directory) / META).read_text())
        return cls(Path(directory), meta["rows"], meta["positives"], meta["columns"])

    def save(self) -> None:
        (self.directory / META).write_text(json.dumps({"rows": self.rows, "positives": self.positives,
                                                       "columns": self.columns}, indent=1))

    def files(self, side: str) -> list[Path]:
        """The side's non-empty shards, in name order."""
        return [f for f in sorted((self.directory / side).glob("*.parquet")) if pq.ParquetFile(f).metadata.num_rows]

    def as_figures(self) -> dict[str, Any]:
        total = sum(self.rows.values())
        positives = sum(self.positives.values())
        return {"rows": total, "positives": positives, "negatives": total - positives,
                "train_rows": self.rows[TRAIN], "valid_rows": self.rows[VALID]}


def type_features(frame: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str]) -> pd.DataFrame:
    """``frame`` with its numeric features as float32 (nullable ints/bools, nulls -> NaN) and its categorical
    ones as strings (null -> ``""``), in place; the ranker's typing everywhere (training, evaluation)."""
    for name in numeric:
        column = frame[name].astype(object).where(frame[name].notna(), np.nan)
        frame[name] = pd.to_numeric(column, errors="coerce").astype("float32")
    for name in categorical:
        frame[name] = frame[name].astype(object).where(frame[name].notna(), "").astype(str)
    return frame


def typed_frame(frame: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str],
                position: bool) -> pd.DataFrame:
    """What a shard holds: the features typed by :func:`type_features`, 0/1 labels float32, the served
    position int32 (null -> 0, the position tower's "unknown")."""
    out = type_features(frame[[*numeric, *categorical]].copy(), numeric, categorical)
    for label in (CLICK_LABEL, CONVERSION_LABEL):
        if label in frame.columns:
            out[label] = pd.to_numeric(frame[label], errors="coerce").fillna(0).astype("float32")
    if position:
        out[POSITION] = pd.to_numeric(frame[POSITION], errors="coerce").fillna(0).astype("int32")
    return out


def write_frame_shards(train: pd.DataFrame, valid: pd.DataFrame, directory: Path, numeric: Sequence[str],
                       categorical: Sequence[str], position: bool, seed: int = 0,
                       rows_per_shard: int = ROWS_PER_SHARD, min_shards: int = 1) -> ShardSet:
    """Shards of an already split set held in pandas (rows shuffled, typed by :func:`typed_frame`): at
    least ``min_shards`` training shards (one per worker), else one per ``rows_per_shard`` rows.
    Whatever ``directory`` held before is removed."""
    directory = Path(directory)
    shutil.rmtree(directory, ignore_errors=True)
    rows, positives = {}, {}
    for side, frame in ((TRAIN, train), (VALID, valid)):
        typed = typed_frame(frame, numeric, categorical, position)
        if side == TRAIN:
            typed = typed.sample(frac=1.0, random_state=seed)
        (directory / side).mkdir(parents=True, exist_ok=True)
        count = max(min_shards if side == TRAIN else 1, math.ceil(len(typed) / rows_per_shard))
        for number, part in enumerate(np.array_split(np.arange(len(typed)), count)):
            typed.iloc[part].to_parquet(directory / side / f"part-{number:05d}.parquet", index=False)
        rows[side] = len(typed)
        positives[side] = int((typed[CLICK_LABEL] == 1).sum())
    shards = ShardSet(directory, rows, positives, list(typed.columns))
    shards.save()
    return shards


def worker_files(files: Sequence[Path], workers: int, index: int) -> list[Path]:
    """Worker ``index``'s share of ``files`` (every ``workers``-th one)."""
    if len(files) < workers:
        raise ValueError(f"{len(files)} shard(s) cannot feed {workers} workers: write at least one per worker")
    return list(files[index::workers])


def file_rows(files: Sequence[Path]) -> int:
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def _signature(config: RankerConfig) -> dict[str, tf.TensorSpec]:
    spec = {name: tf.TensorSpec([None], tf.float32) for name in config.numeric}
    spec |= {name: tf.TensorSpec([None], tf.string) for name in config.categorical}
    spec[CLICK_LABEL] = tf.TensorSpec([None], tf.float32)
    if config.conversion_head:
        spec[CONVERSION_LABEL] = tf.TensorSpec([None], tf.float32)
    if config.position_correction:
        spec[POSITION] = tf.TensorSpec([None], tf.int32)
    return spec


def shard_dataset(files: Sequence[Path], config: RankerConfig, batch_size: int, shuffle: bool = False,
                  repeat: bool = False, seed: int = 0) -> tf.data.Dataset:
    """Batches of ``batch_size`` rows (fewer at a shard's end) of the typed arrays the ranker trains on,
    read shard by shard; with ``shuffle`` the shards' order changes every pass (rows were shuffled when
    written), with ``repeat`` it never ends (fit it with fixed steps)."""
    if not files:
        raise ValueError("no shard to read")
    columns = required_columns(config)

    chunk = batch_size * max(1, CHUNK_ROWS // batch_size)  # typed once per chunk, then sliced into batches

    def batches(path: bytes):  # noqa: ANN202 - a generator of dicts of arrays
        for record in pq.ParquetFile(path.decode()).iter_batches(chunk, columns=columns):
            arrays = frame_to_tensors(record.to_pandas(), config)
            for first in range(0, record.num_rows, batch_size):
                yield {name: values[first:first + batch_size] for name, values in arrays.items()}

    names = tf.data.Dataset.from_tensor_slices([str(f) for f in files])
    if shuffle:
        names = names.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        names = names.repeat()
    signature = _signature(config)
    data = names.interleave(lambda path: tf.data.Dataset.from_generator(batches, args=(path,),
                                                                        output_signature=signature),
                            cycle_length=min(INTERLEAVE, len(files)))
    return data.prefetch(tf.data.AUTOTUNE)


def probe_frame(files: Sequence[Path], rows: int = 500) -> pd.DataFrame:
    """The first ``rows`` rows of the shards (the export parity check's probe)."""
    parts, have = [], 0
    for path in files:
        for record in pq.ParquetFile(path).iter_batches(rows - have):
            parts.append(record.to_pandas())
            have += record.num_rows
            if have >= rows:
                return pd.concat(parts, ignore_index=True)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
