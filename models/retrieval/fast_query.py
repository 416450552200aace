"""The fast query tower: the two-tower ``QueryTower`` run in NumPy from its weights.

Serving embeds one user per request. The SavedModel signature does that in 0.5-1.1 ms (most of it
TensorFlow's per-call overhead for a handful of tiny ops); these few dict look-ups and two small
matrix products take tens of microseconds and need no TensorFlow at request time. The SavedModel
stays in the bundle as the reference: every bundle's fast export is compared with it when it is
written and again when it is loaded (:func:`check_parity`), and one that disagrees is refused.

Files (``query_tower_fast/`` of a retrieval bundle, see ``models.retrieval.export``)::

    weights.npz         float32: history/taxonomy-level/profile embedding tables, the numeric
                        normalisation (mean, scale = max(sqrt(variance), epsilon)), the trunk's layers
    user_embedding.npy  float32 [users + 1, d]: the user id embedding table (row 0: unknown users)
    user_ids.npy        the user ids, sorted (fixed-width unicode); user_rows.npy: each one's table row
    vocabularies.json   the other string look-ups (index i+1 for the i-th token, 0 = out of vocabulary,
                        as ``StringLookup``), the item -> taxonomy-prefix table, the input columns

The three user files are memory-mapped, not read: a serving process holds the pages of the users it
served (shared with every other process on the machine, evictable), so its memory follows the items,
not the user base. (Exports before these files keep the users in ``weights.npz`` and
``vocabularies.json`` and load as before.)

Exactly what the tower computes (``models.retrieval.two_tower.QueryTower``): user id -> embedding;
each non-empty history id -> id embedding + the embeddings of its three taxonomy prefixes (unknown ids
and prefixes take row 0; ``""`` slots are masked out), averaged over the non-empty slots (zeros when
there are none); numeric profile values normalised, NaN -> 0; categorical ``"column=value"`` tokens ->
embeddings, concatenated; then the tower's trunk (``QueryTower.mlp``), scaled to unit length. The
trunk is not written here: the export lists its layers as :mod:`models.numpy_layers` reads them from
the trained Keras layers, and the loader generates the NumPy layers from that list, so a change of the
trunk's depth, widths or activations is made once, in the model. The input assembly above is written
twice (it is where the speed comes from: one pre-summed history table), and checked by :func:`check_parity`.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from itertools import repeat
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from threadpoolctl import ThreadpoolController

from models.numpy_layers import NumpyDense, build_all, describe
from models.retrieval.data import PAD

if TYPE_CHECKING:
    from models.retrieval.data import UserFeatureSpec
    from models.retrieval.two_tower import QueryTower

FORMAT = "recsys.query_tower_fast/1"
WEIGHTS_FILE = "weights.npz"
USER_TABLE_FILE, USER_IDS_FILE, USER_ROWS_FILE = "user_embedding.npy", "user_ids.npy", "user_rows.npy"
VOCABULARIES_FILE = "vocabularies.json"
OOV_INDEX = 0  # StringLookup(num_oov_indices=1, mask_token=None): unknown strings (and "") map here
# Largest |difference| allowed between the fast tower and the SavedModel on any coordinate of the unit
# query vector (float32 NumPy vs TensorFlow differ by ~1e-7: summation order); the ranker's bound too.
PARITY_TOLERANCE = 1e-4
L2_EPSILON = 1e-12  # tf.math.l2_normalize's floor on the squared norm
# Layers with fewer weights than this run without the per-call BLAS thread limit: OpenBLAS computes a
# one-row product this small on one thread anyway (measured here: no extra CPU time up to 300x512; a
# 512x1024 one spins a second thread), and the limit costs as much as the whole default tower (83x128 +
# 128x64: 11-37 us to toggle numpy's and scipy's OpenBLAS, against 20-65 us for the embedding).
BLAS_LIMIT_MIN_WEIGHTS = 65_536
# The trunk of an export written before vocabularies.json listed its layers (same array names).
LAYERS_BEFORE_SPECS = ({"kind": "dense", "key": "hidden", "activation": "relu"},
                       {"kind": "dense", "key": "out", "activation": "linear"})


class FastQueryError(RuntimeError):
    """A fast query-tower export that is missing, unreadable, inconsistent or disagrees with its SavedModel."""


class QueryEmbedder(Protocol):
    """One user's query vector from the tower's raw inputs (both the fast tower and the SavedModel)."""

    def embed_one(self, user_id: str, history: Sequence[str], numeric: Sequence[float] | np.ndarray,
                  categorical: Sequence[str]) -> np.ndarray: ...


# ---- export ---------------------------------------------------------------------------------------


def _vocabulary(lookup: Any) -> list[str]:
    """A StringLookup's tokens in index order, without the OOV token at index 0."""
    return [t.decode() if isinstance(t, bytes) else str(t) for t in lookup.get_vocabulary()[1:]]


def export_fast_query(tower: QueryTower, spec: UserFeatureSpec, history_length: int, path: str | Path) -> Path:
    """Write ``tower``'s fast export to ``path`` (a new directory); ``spec`` names its profile columns."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=False)
    arrays: dict[str, np.ndarray] = {"history_embedding": tower.history_embedding.embeddings.numpy()}
    for i, embedding in enumerate(tower.level_embeddings):
        arrays[f"level_embedding.{i}"] = embedding.embeddings.numpy()
    if tower.num_numeric:
        arrays["numeric_mean"] = np.asarray(tower.normalize.mean.numpy(), np.float32).reshape(-1)
        std = np.sqrt(np.asarray(tower.normalize.variance.numpy(), np.float32).reshape(-1))
        arrays["numeric_scale"] = np.maximum(std, np.float32(1e-7)).astype(np.float32)  # keras epsilon()
    if tower.num_categorical:
        arrays["profile_embedding"] = tower.profile_embedding.embeddings.numpy()
    layers = [describe(layer, f"mlp.{i}", arrays) for i, layer in enumerate(tower.mlp)]
    np.savez(path / WEIGHTS_FILE, **{k: np.asarray(v, np.float32) for k, v in arrays.items()})
    users = np.asarray(_vocabulary(tower.user_lookup), dtype=str)
    order = np.argsort(users, kind="stable")
    np.save(path / USER_TABLE_FILE, np.asarray(tower.user_embedding.embeddings.numpy(), np.float32))
    np.save(path / USER_IDS_FILE, users[order])
    np.save(path / USER_ROWS_FILE, (order + 1).astype(np.int64))  # StringLookup: the i-th token -> i + 1
    taxonomy_keys, taxonomy_levels = None, []
    for table in tower.taxonomy.tables:
        keys, values = (t.numpy() for t in table.export())
        keys = [k.decode() for k in keys]
        by_key = dict(zip(keys, (v.decode() for v in values), strict=True))
        taxonomy_keys = taxonomy_keys or sorted(keys)
        taxonomy_levels.append([by_key.get(k, PAD) for k in taxonomy_keys])
    vocabularies = {
        "format": FORMAT,
        "history_length": history_length,
        "numeric": list(spec.numeric),
        "categorical": list(spec.categorical),
        "items": _vocabulary(tower.item_lookup),
        "levels": [_vocabulary(lookup) for lookup in tower.level_lookups],
        "profile_tokens": _vocabulary(tower.profile_lookup) if tower.num_categorical else [],
        "taxonomy": {"item_ids": taxonomy_keys or [], "levels": taxonomy_levels},
        "layers": layers,
    }
    (path / VOCABULARIES_FILE).write_text(json.dumps(vocabularies))
    return path


# ---- the loader -------------------------------------------------------------------------------


class FastQueryTower:
    """Loads an :func:`export_fast_query` directory; raises :class:`FastQueryError` if it is broken."""

    def __init__(self, path: str | Path, blas_threads: int | None = 1) -> None:
        """``blas_threads=None`` leaves the process's BLAS thread count alone (see :meth:`embed_one`)."""
        self.path = Path(path)
        self._blas_threads = blas_threads
        self._threadpools: ThreadpoolController | None = None
        try:
            meta = json.loads((self.path / VOCABULARIES_FILE).read_text())
            with np.load(self.path / WEIGHTS_FILE, allow_pickle=False) as npz:
                self._w = {k: npz[k] for k in npz.files}
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise FastQueryError(f"{self.path}: fast query tower cannot be read: {exc}") from exc
        if meta.get("format") != FORMAT:
            raise FastQueryError(f"{self.path}: format {meta.get('format')!r}, expected {FORMAT!r}")
        try:
            self._build(meta)
        except (KeyError, IndexError, TypeError, ValueError) as exc:  # missing arrays/keys, shapes that do not chain
            raise FastQueryError(f"{self.path}: fast query tower is inconsistent: {type(exc).__name__}: {exc}") from exc

    def _build(self, meta: Mapping[str, Any]) -> None:
        w = self._w
        self.history_length = int(meta["history_length"])
        self.numeric = tuple(meta["numeric"])
        self.categorical = tuple(meta["categorical"])
        if (self.path / USER_TABLE_FILE).exists():
            self._users: UserRows | dict[str, int] = UserRows.load(self.path)
            self._user_table = np.load(self.path / USER_TABLE_FILE, mmap_mode="r", allow_pickle=False)
        else:  # an export from before the memory-mapped user files
            self._users, self._user_table = _index(meta["users"]), w["user_embedding"]
        self._profile = _index(meta["profile_tokens"])
        self._profile_table = w["profile_embedding"] if self.categorical else np.zeros((1, 0), np.float32)
        self._history_row, self._history_table = _history_table(meta, w)
        self._oov_history_row = len(self._history_table) - 1
        if self.numeric:
            self._mean, self._scale = w["numeric_mean"], w["numeric_scale"]
        specs = meta.get("layers", LAYERS_BEFORE_SPECS)
        if any(spec["kind"] != "dense" for spec in specs) or not specs:
            raise ValueError(f"the trunk must be Dense layers, found {[spec['kind'] for spec in specs]}")
        self._mlp: list[NumpyDense] = build_all(specs, w)
        id_dim, profile_dim = self._user_table.shape[1], self._profile_table.shape[1]
        self._slices = _concat_layout(id_dim, len(self.numeric), len(self.categorical) * profile_dim)
        expected = {
            "user_embedding": (len(self._users) + 1, id_dim),
            "history table": (self._history_table.shape[0], id_dim),
            **{f"trunk layer {i}": (rows, layer.kernel.shape[1]) for i, (rows, layer) in enumerate(
                zip([self._slices["end"], *(layer.kernel.shape[1] for layer in self._mlp[:-1])], self._mlp, strict=True))},
        }
        if self.numeric:
            expected["numeric_mean"] = expected["numeric_scale"] = (len(self.numeric),)
        if self.categorical:
            expected["profile_embedding"] = (len(self._profile) + 1, profile_dim)
        actual = {"user_embedding": self._user_table.shape, "history table": self._history_table.shape,
                  **{f"trunk layer {i}": layer.kernel.shape for i, layer in enumerate(self._mlp)},
                  **{k: w[k].shape for k in ("numeric_mean", "numeric_scale", "profile_embedding") if k in expected}}
        bad = {k: (actual[k], shape) for k, shape in expected.items() if tuple(actual[k]) != shape}
        if bad:
            raise ValueError(f"shapes (found, expected) {bad}")
        self.dim = int(self._mlp[-1].kernel.shape[1])
        if self._blas_threads is not None and max(layer.weights for layer in self._mlp) >= BLAS_LIMIT_MIN_WEIGHTS:
            self._threadpools = ThreadpoolController()

    def embed_one(self, user_id: str, history: Sequence[str], numeric: Sequence[float] | np.ndarray,
                  categorical: Sequence[str]) -> np.ndarray:
        """The unit query vector ``[d]`` of one user: ``history`` newest first (cut to the tower's length,
        ``""`` ignored), ``numeric`` raw profile values in :attr:`numeric` order (NaN = unknown),
        ``categorical`` ``"column=value"`` tokens in :attr:`categorical` order.

        Layers of :data:`BLAS_LIMIT_MIN_WEIGHTS` weights or more run under a per-call limit of
        ``blas_threads`` BLAS threads (a multi-threaded BLAS spin-waits on the cores concurrent requests
        need); smaller ones run on one thread without it."""
        s = self._slices
        x = np.empty(s["end"], np.float32)
        x[s["user"]] = self._user_table[self._users.get(user_id, OOV_INDEX)]
        x[s["history"]] = self._history_mean(history)
        if self.numeric:
            values = (np.asarray(numeric, np.float32).reshape(-1) - self._mean) / self._scale
            values[np.isnan(values)] = 0.0  # missing = the training mean
            x[s["numeric"]] = values
        if self.categorical:
            rows = np.fromiter(map(self._profile.get, categorical, repeat(OOV_INDEX)), np.intp, len(self.categorical))
            x[s["profile"]] = self._profile_table.take(rows, axis=0).reshape(-1)
        if self._threadpools is None:
            return self._dense(x)
        with self._threadpools.limit(limits=self._blas_threads, user_api="blas"):
            return self._dense(x)

    def embed(self, user_ids: Sequence[str], histories: Sequence[Sequence[str]], numeric: np.ndarray,
              categorical: np.ndarray) -> np.ndarray:
        """:meth:`embed_one` for each row: ``[n, d]``."""
        return np.stack([self.embed_one(u, h, numeric[i], categorical[i])
                         for i, (u, h) in enumerate(zip(user_ids, histories, strict=True))]) \
            if len(user_ids) else np.zeros((0, self.dim), np.float32)

    def _history_mean(self, history: Sequence[str]) -> np.ndarray:
        ids = [str(h) for h in list(history)[: self.history_length]]
        rows = [self._history_row.get(h, self._oov_history_row) for h in ids if h != PAD]
        if not rows:
            return np.zeros(self._history_table.shape[1], np.float32)
        return self._history_table.take(rows, axis=0).sum(axis=0) / np.float32(len(rows))

    def _dense(self, x: np.ndarray) -> np.ndarray:
        for layer in self._mlp:
            x = layer(x)
        return (x / np.sqrt(max(float(x @ x), L2_EPSILON))).astype(np.float32)


class UserRows:
    """user id -> row of the user table, read from the sorted, memory-mapped ids (no dict of every user)."""

    def __init__(self, ids: np.ndarray, rows: np.ndarray) -> None:
        if ids.shape != rows.shape:
            raise ValueError(f"{ids.shape[0]} user ids for {rows.shape[0]} rows")
        self._ids, self._rows = ids, rows

    @classmethod
    def load(cls, path: Path) -> UserRows:
        return cls(np.load(path / USER_IDS_FILE, mmap_mode="r", allow_pickle=False),
                   np.load(path / USER_ROWS_FILE, mmap_mode="r", allow_pickle=False))

    def __len__(self) -> int:
        return int(self._ids.shape[0])

    def __iter__(self) -> Iterator[str]:
        return (str(user) for user in self._ids)

    def get(self, user_id: str, default: int) -> int:
        at = int(np.searchsorted(self._ids, user_id))
        return int(self._rows[at]) if at < len(self) and self._ids[at] == user_id else default

    def sample(self, rng: np.random.Generator, n: int) -> list[str]:
        return [str(self._ids[i]) for i in rng.integers(0, len(self), n)] if len(self) else []


def _index(tokens: Sequence[str]) -> dict[str, int]:
    """StringLookup's mapping: the i-th token -> i + 1 (0 stays the OOV bucket)."""
    return {token: i + 1 for i, token in enumerate(tokens)}


def _history_table(meta: Mapping[str, Any], w: Mapping[str, np.ndarray]) -> tuple[dict[str, int], np.ndarray]:
    """Per known history id, its id embedding plus its taxonomy prefixes' embeddings, added in the
    tower's order (bit-identical float32 sums), and a last row for every unknown id: ``(row of id, table)``.

    An id is known to the tower through the item vocabulary, the taxonomy table or both; anything else
    gets the OOV id embedding plus the embeddings of the empty prefix (itself out of vocabulary)."""
    items = _index(meta["items"])
    levels = [_index(tokens) for tokens in meta["levels"]]
    taxonomy = meta["taxonomy"]
    prefixes = {item: [values[j] for values in taxonomy["levels"]] for j, item in enumerate(taxonomy["item_ids"])}
    if len(taxonomy["levels"]) != len(levels):
        raise ValueError(f"{len(taxonomy['levels'])} taxonomy levels for {len(levels)} level vocabularies")
    ids = list(dict.fromkeys([*meta["items"], *taxonomy["item_ids"]]))
    item_rows = np.array([items.get(i, OOV_INDEX) for i in ids] + [OOV_INDEX], np.intp)
    table = w["history_embedding"].take(item_rows, axis=0)
    for level, (lookup, embedding) in enumerate(zip(levels, (w[f"level_embedding.{i}"] for i in range(len(levels))),
                                                    strict=True)):
        values = [prefixes[i][level] if i in prefixes else PAD for i in ids] + [PAD]
        table += embedding.take(np.fromiter(map(lookup.get, values, repeat(OOV_INDEX)), np.intp, len(values)), axis=0)
    return {item: row for row, item in enumerate(ids)}, table


def _concat_layout(id_dim: int, numeric: int, profile: int) -> dict[str, Any]:
    """Where each part sits in the tower's concatenated input: user, history mean, numeric, profile."""
    edges = np.cumsum([0, id_dim, id_dim, numeric, profile])
    names = ("user", "history", "numeric", "profile")
    return {**{n: slice(int(a), int(b)) for n, a, b in zip(names, edges[:-1], edges[1:], strict=True)},
            "end": int(edges[-1])}


# ---- parity with the SavedModel -------------------------------------------------------------------


def parity_probes(fast: FastQueryTower, seed: int = 0) -> list[tuple[str, list[str], np.ndarray, list[str]]]:
    """Inputs that reach every path of the tower: known and unknown users; full, over-long, partial and
    empty histories with known and unknown items and padding; NaN and far-out numerics; known, missing
    and unknown profile tokens. Drawn from the export's own vocabularies (deterministic for ``seed``)."""
    rng = np.random.default_rng(seed)
    items, tokens = list(fast._history_row), list(fast._profile)
    k, length = len(fast.numeric), fast.history_length
    mean = fast._mean if k else np.zeros(0, np.float32)
    scale = fast._scale if k else np.ones(0, np.float32)

    def pick(values: list[str], n: int) -> list[str]:
        return [values[i] for i in rng.integers(0, len(values), n)] if values else ["__none__"] * n

    def pick_users(n: int) -> list[str]:
        if isinstance(fast._users, UserRows):
            return fast._users.sample(rng, n) or ["__none__"] * n
        return pick(list(fast._users), n)

    def known_profile() -> list[str]:
        options = [[t for t in tokens if t.startswith(f"{col}=")] or [f"{col}="] for col in fast.categorical]
        return [pick(column, 1)[0] for column in options]

    def numbers(spread: float) -> np.ndarray:
        return (mean + scale * rng.normal(0.0, spread, k)).astype(np.float32)

    some_nan = np.where(np.arange(k) % 2 == 0, np.nan, mean + 10 * scale).astype(np.float32)
    return [
        *[(user, pick(items, length), numbers(1.5), known_profile()) for user in pick_users(3)],
        (pick_users(1)[0], pick(items, length + 3), numbers(1.0), known_profile()),
        ("__unknown_user__", pick(items, max(length // 3, 1)), numbers(1.0), known_profile()),
        ("__unknown_user__", [], np.full(k, np.nan, np.float32), [f"{col}=" for col in fast.categorical]),
        (pick_users(1)[0], [*pick(items, 2), "__unknown_item__", PAD, *pick(items, 1)], some_nan,
         [f"{col}=__unseen__" for col in fast.categorical]),
        ("", ["__unknown_item__"], np.zeros(k, np.float32), known_profile()[:-1] + [f"{c}=__unseen__"
                                                                                  for c in fast.categorical[-1:]]),
    ]


def check_parity(reference: QueryEmbedder, fast: FastQueryTower, tolerance: float = PARITY_TOLERANCE) -> dict[str, Any]:
    """Compare ``fast`` with ``reference`` (the SavedModel) on :func:`parity_probes`; raises
    :class:`FastQueryError` beyond ``tolerance``, returns the figures otherwise."""
    probes = parity_probes(fast)
    worst = 0.0
    for user, history, numeric, categorical in probes:
        expected = reference.embed_one(user, history, numeric, categorical)
        got = fast.embed_one(user, history, numeric, categorical)
        diff = float(np.max(np.abs(np.asarray(expected, np.float64) - got))) if got.shape == expected.shape else np.inf
        worst = max(worst, diff if np.isfinite(diff) else np.inf)
    result = {"probes": len(probes), "max_abs_diff": worst, "tolerance": tolerance}
    if not worst <= tolerance:
        raise FastQueryError(f"{fast.path}: fast query tower disagrees with the SavedModel: {result}")
    return result
