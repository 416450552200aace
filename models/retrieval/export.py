"""The retrieval bundle: what a release directory holds for candidate generation, and its loader.

Layout under the bundle directory (``retrieval.json`` describes every input and file)::

    retrieval.json                       format, dims, query-tower inputs, profile columns, counts
    query_tower/                         SavedModel, signature ``serving_default`` -> {"embedding"} (the reference)
    query_tower_fast/                    the same tower in NumPy: weights.npz + vocabularies.json
                                         (models.retrieval.fast_query); what ``query_embedding`` calls
    collaborative/item_ids.npy           two-tower candidate ids (row order of the embeddings)
    collaborative/item_embeddings.npy    float32 [n, d], unit vectors
    collaborative/index/                 ScaNN index over them
    content/item_ids.npy, item_embeddings.npy, index/     the same for content embeddings
    content/category_keys.npy, category_centroids.npy     centroid per taxonomy prefix (profile queries)
    popularity.parquet                   top-N per segment (see ``popularity``)

``load_retrievers(dir)`` returns a :class:`Retrievers` with one call per retriever; each returns
``(item_ids, scores)``, best first, and by default leaves out the items of the given history.

The query vector comes from the fast NumPy tower when the bundle has one (``retrieval.json`` names it
under ``query_tower_fast``); the SavedModel is still loaded, and both are compared on probe inputs
when the bundle is written and again when it is loaded: a bundle whose fast tower disagrees beyond
``fast_query.PARITY_TOLERANCE`` does not load (serving refuses the release). Bundles written before
the fast tower existed load with the SavedModel alone.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.keras2 import tf
from models.retrieval.content import ContentTower, category_centroids, content_query
from models.retrieval.data import UserFeatureSpec, pad_histories
from models.retrieval.fast_query import FORMAT as FAST_QUERY_FORMAT
from models.retrieval.fast_query import FastQueryTower, QueryEmbedder, check_parity, export_fast_query
from models.retrieval.index import EmbeddingIndex, IndexConfig
from models.retrieval.popularity import PopularityTable
from models.retrieval.two_tower import TwoTower

BUNDLE_FILE = "retrieval.json"
FORMAT = "recsys.retrieval/1"
SIGNATURE = "serving_default"
QUERY_TOWER_DIR = "query_tower"
FAST_QUERY_DIR = "query_tower_fast"


class _QueryServing(tf.Module):
    """Wraps the query tower in one concrete function with an explicit input signature."""

    def __init__(self, tower: tf.keras.Model, history_length: int, spec: UserFeatureSpec) -> None:
        super().__init__()
        self.tower = tower
        self.serve = tf.function(
            self._serve,
            input_signature=[
                tf.TensorSpec([None], tf.string, name="user_id"),
                tf.TensorSpec([None, history_length], tf.string, name="history"),
                tf.TensorSpec([None, len(spec.numeric)], tf.float32, name="numeric"),
                tf.TensorSpec([None, len(spec.categorical)], tf.string, name="categorical"),
            ],
        )

    def _serve(self, user_id: tf.Tensor, history: tf.Tensor, numeric: tf.Tensor, categorical: tf.Tensor) -> dict:
        inputs = {"user_id": user_id, "history": history, "numeric": numeric, "categorical": categorical}
        return {"embedding": self.tower(inputs, training=False)}


class SavedModelQueryTower:
    """The query tower's SavedModel signature behind the fast tower's one-user call (the reference)."""

    def __init__(self, path: Path, history_length: int) -> None:
        self._model = tf.saved_model.load(str(path))
        self._signature = self._model.signatures[SIGNATURE]
        self.history_length = history_length

    def embed_one(self, user_id: str, history: Sequence[str], numeric: Sequence[float] | np.ndarray,
                  categorical: Sequence[str]) -> np.ndarray:
        out = self._signature(
            user_id=tf.constant([user_id]),
            history=tf.constant(pad_histories([history], self.history_length).astype(str)),
            numeric=tf.constant(np.asarray(numeric, dtype="float32").reshape(1, -1)),
            categorical=tf.constant(np.asarray(categorical, dtype=object).astype(str).reshape(1, -1)),
        )
        return out["embedding"].numpy()[0]


def export_query_towers(out_dir: Path, two_tower: TwoTower) -> dict:
    """Write the query tower twice -- the SavedModel (the reference) and the fast NumPy tower -- and
    check that they agree (raises :class:`~models.retrieval.fast_query.FastQueryError` otherwise);
    returns the fast tower's entry of ``retrieval.json`` (path, format, parity figures)."""
    history_length = two_tower.config.history_length
    serving = _QueryServing(two_tower.query_tower, history_length, two_tower.user_spec)
    tf.saved_model.save(serving, str(out_dir / QUERY_TOWER_DIR), signatures={SIGNATURE: serving.serve})
    fast_dir = out_dir / FAST_QUERY_DIR
    if fast_dir.exists():  # exporting again into the same directory replaces the previous export
        shutil.rmtree(fast_dir)
    export_fast_query(two_tower.query_tower, two_tower.user_spec, history_length, fast_dir)
    parity = check_parity(SavedModelQueryTower(out_dir / QUERY_TOWER_DIR, history_length), FastQueryTower(fast_dir))
    return {"path": FAST_QUERY_DIR, "format": FAST_QUERY_FORMAT, "parity": parity}


def _query_inputs_doc(history_length: int, spec: UserFeatureSpec) -> dict[str, dict]:
    return {
        "user_id": {"dtype": "string", "shape": [None], "doc": "user id; unseen ids use the trained OOV vector"},
        "history": {"dtype": "string", "shape": [None, history_length], "doc": "recent item ids, newest first, '' padded"},
        "numeric": {"dtype": "float32", "shape": [None, len(spec.numeric)], "columns": list(spec.numeric),
                    "doc": "raw profile numbers, NaN when unknown"},
        "categorical": {"dtype": "string", "shape": [None, len(spec.categorical)], "columns": list(spec.categorical),
                        "doc": "'column=value' per profile column ('column=' when unknown)"},
    }


def _save_vectors(directory: Path, ids: np.ndarray, vectors: np.ndarray, index_config: IndexConfig | None) -> dict:
    directory.mkdir(parents=True, exist_ok=True)
    np.save(directory / "item_ids.npy", np.asarray(ids).astype(str))
    np.save(directory / "item_embeddings.npy", vectors.astype("float32"))
    index = EmbeddingIndex.build(vectors, ids, index_config)
    index.serialize(directory / "index")
    return {"items": len(ids), "dim": int(vectors.shape[1]), "index_kind": index.kind, "leaves": index.leaves}


def export_retrieval(
    out_dir: Path,
    two_tower: TwoTower,
    content: ContentTower,
    popularity: PopularityTable,
    catalog: pd.DataFrame,
    index_config: IndexConfig | None = None,
    training: Mapping[str, Any] | None = None,
) -> dict:
    """Write the bundle into ``out_dir`` (created if needed); returns what ``retrieval.json`` holds."""
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    history_length = two_tower.config.history_length
    fast_query = export_query_towers(out_dir, two_tower)
    ids, vectors = two_tower.item_embeddings(catalog)
    collaborative = _save_vectors(out_dir / "collaborative", ids, vectors, index_config)
    content_ids, content_vectors = content.item_embeddings(catalog)
    content_meta = _save_vectors(out_dir / "content", content_ids, content_vectors, index_config)
    keys, centroids = category_centroids(catalog, content_vectors)
    np.save(out_dir / "content" / "category_keys.npy", keys.astype(str))
    np.save(out_dir / "content" / "category_centroids.npy", centroids)
    popularity.save(out_dir / "popularity.parquet")
    description = {
        "format": FORMAT,
        "history_length": history_length,
        "query_tower": {"path": QUERY_TOWER_DIR, "signature": SIGNATURE, "output": "embedding",
                        "inputs": _query_inputs_doc(history_length, two_tower.user_spec)},
        "query_tower_fast": fast_query,
        "user_features": asdict(two_tower.user_spec),
        "collaborative": collaborative,
        "content": {**content_meta, "categories": len(keys)},
        "popularity": {"path": "popularity.parquet", "as_of": popularity.as_of.isoformat(),
                       "segments": popularity.segments, "config": asdict(popularity.config)},
        "training": {"two_tower": two_tower.describe(), "content": content.describe(), **(training or {})},
    }
    (out_dir / BUNDLE_FILE).write_text(json.dumps(description, indent=2, default=str))
    return description


class Retrievers:
    """The three retrievers of one bundle with a per-request API (one user, small ``k``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.description = json.loads((self.root / BUNDLE_FILE).read_text())
        self.history_length = int(self.description["history_length"])
        self.user_spec = UserFeatureSpec(**{k: tuple(v) for k, v in self.description["user_features"].items()})
        self.saved_query_tower: SavedModelQueryTower | None = SavedModelQueryTower(self.root / QUERY_TOWER_DIR,
                                                                                  self.history_length)
        self.query_tower: QueryEmbedder = self.saved_query_tower
        self.query_parity: dict[str, Any] | None = None  # the load-time check of the fast tower, if any
        fast = self.description.get("query_tower_fast")
        if fast is not None:
            tower = FastQueryTower(self.root / fast["path"])
            self.query_parity = check_parity(self.saved_query_tower, tower)  # raises: the bundle does not load
            self.query_tower = tower
            self.saved_query_tower = None  # checked: its copy of the user table is not kept in memory
        self.collaborative_index = EmbeddingIndex.load(self.root / "collaborative" / "index")
        self.content_index = EmbeddingIndex.load(self.root / "content" / "index")
        content_ids = np.load(self.root / "content" / "item_ids.npy")
        self._content_row = {item: row for row, item in enumerate(content_ids.tolist())}
        self._content_vectors = np.load(self.root / "content" / "item_embeddings.npy")
        keys = np.load(self.root / "content" / "category_keys.npy").tolist()
        self._category_row = {key: row for row, key in enumerate(keys)}
        self._centroids = np.load(self.root / "content" / "category_centroids.npy")
        self.popularity = PopularityTable.load(self.root / "popularity.parquet")

    def query_embedding(
        self, user_id: str, user_features: Mapping[str, Any] | None = None, history: Sequence[str] = ()
    ) -> np.ndarray:
        """The two-tower query vector ``[d]`` (the fast tower's, or the SavedModel's for an older bundle)."""
        numeric, categorical = self.user_spec.encode_one(user_features)
        return self.query_tower.embed_one(user_id, history, numeric[0], categorical[0])

    def collaborative(
        self, user_id: str, user_features: Mapping[str, Any] | None = None, history: Sequence[str] = (), k: int = 100,
        exclude_history: bool = True,
    ) -> tuple[list[str], np.ndarray]:
        query = self.query_embedding(user_id, user_features, history)
        return _search(self.collaborative_index, query, k, history if exclude_history else ())

    def content_embedding(self, history: Sequence[str] = (), profile: Mapping[str, float] | None = None) -> np.ndarray | None:
        """The content preference vector from history items and ``profile`` (category -> affinity)."""
        rows = [r for r in (self._content_row.get(item) for item in history) if r is not None]
        known = [(self._category_row[c], float(w)) for c, w in (profile or {}).items() if c in self._category_row]
        return content_query(
            self._content_vectors[rows],
            self._centroids[[r for r, _ in known]],
            np.asarray([w for _, w in known], dtype="float64"),
        )

    def content(
        self, history: Sequence[str] = (), profile: Mapping[str, float] | None = None, k: int = 100,
        exclude_history: bool = True,
    ) -> tuple[list[str], np.ndarray]:
        """Nearest items by content; empty when neither history nor profile says anything."""
        return self.content_search(self.content_embedding(history, profile), k, history if exclude_history else ())

    def content_search(self, query: np.ndarray | None, k: int = 100, exclude: Sequence[str] = ()) -> tuple[list[str], np.ndarray]:
        """Top-``k`` of the content index for a query from :meth:`content_embedding` (empty for None)."""
        if query is None:
            return [], np.zeros(0, dtype="float32")
        return _search(self.content_index, query, k, exclude)

    def popular(self, segment: str | None = None, k: int = 100) -> tuple[list[str], np.ndarray]:
        return self.popularity.top(segment, k)


def _search(index: EmbeddingIndex, query: np.ndarray, k: int, exclude: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Top-``k`` of ``index`` without the ``exclude`` items (asks for extra neighbours to make up)."""
    banned = set(exclude)
    ids, scores = index.search_one(query, k + len(banned))
    keep = [i for i, item in enumerate(ids) if item not in banned][:k]
    return [ids[i] for i in keep], scores[keep]


def load_retrievers(directory: Path) -> Retrievers:
    """Load a bundle written by :func:`export_retrieval`; raises if any part is missing or broken."""
    return Retrievers(Path(directory))
