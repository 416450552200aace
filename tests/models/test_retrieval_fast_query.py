"""The fast (NumPy) query tower against the SavedModel it replaces on the request path.

A tiny two-tower is trained for real (one epoch: parity does not depend on quality) on a catalog with
shallow and deep taxonomy paths and users with numeric (some missing) and categorical profiles, then
exported as a retrieval bundle. Every case compares the fast tower with the SavedModel signature and
with the in-memory Keras tower; the bundle loader must use the fast tower, fall back to the SavedModel
for bundles written before it existed, and refuse a bundle whose fast tower disagrees or is broken.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.retrieval.content import ContentConfig, train_content_tower
from models.retrieval.export import (
    BUNDLE_FILE,
    FAST_QUERY_DIR,
    QUERY_TOWER_DIR,
    SavedModelQueryTower,
    export_retrieval,
    load_retrievers,
)
from models.retrieval.fast_query import (
    LAYERS_BEFORE_SPECS,
    PARITY_TOLERANCE,
    VOCABULARIES_FILE,
    WEIGHTS_FILE,
    FastQueryError,
    FastQueryTower,
    check_parity,
    export_fast_query,
    parity_probes,
)
from models.retrieval.popularity import PopularityTable
from models.retrieval.two_tower import TwoTower, TwoTowerConfig, train_two_tower

MAX_DIFF = 1e-5
PATHS = ["Shoes>Sport>Trail", "Shoes>City", "Bags", "Hats>Sport>Cap", "Hats>City>Cap"]  # 1-3 levels deep


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[TwoTower, Path, pd.DataFrame]:
    """A trained two-tower, its exported bundle and the user profiles it was trained with."""
    rng = np.random.default_rng(3)
    catalog = pd.DataFrame({
        "item_id": [f"r_i{i}" for i in range(40)], "domain": "retail",
        "title": [f"item {i}" for i in range(40)], "description": [f"word{i % 7} thing" for i in range(40)],
        "category": [PATHS[i % len(PATHS)] for i in range(40)], "price": rng.uniform(5, 90, 40),
        "margin": 0.2, "inventory": 3, "launched_at": pd.Timestamp("2024-01-01", tz="UTC"),
    })
    users = pd.DataFrame({
        "user_id": [f"r_u{u}" for u in range(30)],
        "age": np.where(np.arange(30) % 5 == 0, np.nan, rng.integers(18, 80, 30)).astype(float),
        "income": rng.uniform(1e4, 1e5, 30),
        "country": [["DE", "FR", None][u % 3] for u in range(30)],
    })
    start = pd.Timestamp("2024-03-01", tz="UTC")
    interactions = pd.DataFrame([
        {"user_id": f"r_u{u}", "item_id": f"r_i{(u * 7 + j * 3) % 36}", "event_type": "view", "weight": 1.0,
         "timestamp": start + pd.Timedelta(hours=u + 5 * j)}
        for u in range(26) for j in range(8)  # r_u26..29 and r_i36..39 are never seen in training
    ])
    two_tower = train_two_tower(interactions, catalog, users,
                                TwoTowerConfig(embedding_dim=16, id_dim=8, hidden=16, epochs=1, batch_size=64),
                                verbose=0)
    content = train_content_tower(interactions, catalog, ContentConfig(embedding_dim=8, hidden=16, epochs=1,
                                                                       batch_size=64), verbose=0)
    popularity = PopularityTable.build(interactions, interactions["timestamp"].max(), None, None)
    bundle = tmp_path_factory.mktemp("fast_query") / "bundle"
    export_retrieval(bundle, two_tower, content, popularity, catalog)
    return two_tower, bundle, users


def _cases(two_tower: TwoTower) -> dict[str, tuple[str, list[str], dict]]:
    length = two_tower.config.history_length
    return {
        "known user": ("r_u1", ["r_i7", "r_i10", "r_i13"], {"age": 31.0, "income": 4e4, "country": "DE"}),
        "unknown user": ("r_u_brand_new", ["r_i2", "r_i5"], {"age": 50.0, "income": 2e4, "country": "FR"}),
        "user seen only in profiles": ("r_u28", ["r_i1"], {"age": 22.0, "income": 9e4, "country": "DE"}),
        "empty history": ("r_u3", [], {"age": 40.0, "income": 5e4, "country": "FR"}),
        "unknown history items": ("r_u4", ["r_i_unknown", "r_i38", "r_i8", "nope"], {"age": 40.0, "income": 5e4}),
        "padding inside the history": ("r_u5", ["r_i1", "", "r_i2"], {"country": "DE"}),
        "history longer than the tower reads": ("r_u6", [f"r_i{i % 40}" for i in range(length + 5)], {}),
        "NaN numerics": ("r_u7", ["r_i3"], {"age": float("nan"), "income": None, "country": "DE"}),
        "unknown categorical value": ("r_u8", ["r_i3"], {"age": 30.0, "income": 3e4, "country": "ZZ"}),
        "nothing known at all": ("", [], {}),
    }


def test_fast_tower_matches_the_saved_model_and_the_keras_tower(trained) -> None:
    two_tower, bundle, _ = trained
    fast = FastQueryTower(bundle / FAST_QUERY_DIR)
    saved = SavedModelQueryTower(bundle / QUERY_TOWER_DIR, two_tower.config.history_length)
    spec = two_tower.user_spec
    assert spec.numeric == ("age", "income") and spec.categorical == ("country",)
    for name, (user_id, history, profile) in _cases(two_tower).items():
        numeric, categorical = spec.encode_one(profile)
        got = fast.embed_one(user_id, history, numeric[0], categorical[0])
        reference = saved.embed_one(user_id, history, numeric[0], categorical[0])
        frame = pd.DataFrame([{"user_id": user_id, **{c: profile.get(c) for c in (*spec.numeric, *spec.categorical)}}])
        keras = two_tower.query_embeddings([user_id], [history], frame.astype({c: float for c in spec.numeric}))[0]
        assert got.shape == (two_tower.config.embedding_dim,) and got.dtype == np.float32, name
        assert np.max(np.abs(got - reference)) <= MAX_DIFF, name
        assert np.max(np.abs(got - keras)) <= MAX_DIFF, name
        assert abs(float(np.linalg.norm(got)) - 1.0) < 1e-5, name


def test_the_cases_differ_so_parity_is_not_trivial(trained) -> None:
    """Each input the tower reads moves the vector: a fast tower ignoring one would fail the parity test."""
    two_tower, bundle, _ = trained
    fast = FastQueryTower(bundle / FAST_QUERY_DIR)
    base = ("r_u1", ["r_i7", "r_i10"], np.array([31.0, 4e4], np.float32), ["country=DE"])
    changed = [("r_u2", *base[1:]), (base[0], ["r_i7", "r_i11"], *base[2:]),
               (*base[:2], np.array([60.0, 4e4], np.float32), base[3]), (*base[:3], ["country=FR"])]
    reference = fast.embed_one(*base)
    for variant in changed:
        assert np.max(np.abs(fast.embed_one(*variant) - reference)) > 1e-4, variant


def test_bundle_serves_the_fast_tower_and_records_its_parity(trained) -> None:
    two_tower, bundle, users = trained
    description = json.loads((bundle / BUNDLE_FILE).read_text())
    assert description["query_tower_fast"]["path"] == FAST_QUERY_DIR
    assert description["query_tower_fast"]["parity"]["max_abs_diff"] <= MAX_DIFF
    retrievers = load_retrievers(bundle)
    assert isinstance(retrievers.query_tower, FastQueryTower)
    assert retrievers.query_parity is not None and retrievers.query_parity["tolerance"] == PARITY_TOLERANCE
    profile = users.set_index("user_id").loc["r_u1"].to_dict()
    expected = two_tower.query_embeddings(["r_u1"], [["r_i7", "r_i10"]], users)[0]
    np.testing.assert_allclose(retrievers.query_embedding("r_u1", profile, ["r_i7", "r_i10"]), expected, atol=MAX_DIFF)
    ids, scores = retrievers.collaborative("r_u1", profile, ["r_i7"], k=5)
    assert len(ids) == 5 and "r_i7" not in ids and np.all(np.diff(scores) <= 1e-6)


def test_a_bundle_without_the_fast_tower_loads_with_the_saved_model(trained, tmp_path: Path) -> None:
    """Bundles written before the fast tower existed still load (and give the same vectors)."""
    two_tower, bundle, _ = trained
    old = tmp_path / "old"
    shutil.copytree(bundle, old)
    shutil.rmtree(old / FAST_QUERY_DIR)
    description = json.loads((old / BUNDLE_FILE).read_text())
    del description["query_tower_fast"]
    (old / BUNDLE_FILE).write_text(json.dumps(description))
    retrievers = load_retrievers(old)
    assert isinstance(retrievers.query_tower, SavedModelQueryTower) and retrievers.query_parity is None
    fast = load_retrievers(bundle)
    for user_id, history, profile in _cases(two_tower).values():
        np.testing.assert_allclose(retrievers.query_embedding(user_id, profile, history),
                                   fast.query_embedding(user_id, profile, history), atol=MAX_DIFF)


def _rewrite_weights(bundle: Path, change) -> None:
    _rewrite_weights_at(bundle / FAST_QUERY_DIR / WEIGHTS_FILE, change)


def _rewrite_weights_at(path: Path, change) -> None:
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    change(arrays)
    np.savez(path, **arrays)


def test_a_fast_tower_that_disagrees_with_the_saved_model_is_refused(trained, tmp_path: Path) -> None:
    two_tower, bundle, _ = trained
    drifted = tmp_path / "drifted"
    shutil.copytree(bundle, drifted)

    def nudge(arrays: dict[str, np.ndarray]) -> None:  # a subtly wrong export: one layer off by 1%
        arrays["mlp.0.w"] = arrays["mlp.0.w"] * np.float32(1.01)

    _rewrite_weights(drifted, nudge)
    with pytest.raises(FastQueryError, match="disagrees with the SavedModel"):
        load_retrievers(drifted)
    saved = SavedModelQueryTower(bundle / QUERY_TOWER_DIR, two_tower.config.history_length)
    assert check_parity(saved, FastQueryTower(bundle / FAST_QUERY_DIR))["max_abs_diff"] <= MAX_DIFF
    with pytest.raises(FastQueryError):
        check_parity(saved, FastQueryTower(drifted / FAST_QUERY_DIR))


@pytest.mark.parametrize("damage", ["truncated", "missing_array", "wrong_shape", "no_vocabularies"])
def test_a_broken_fast_tower_does_not_load(trained, tmp_path: Path, damage: str) -> None:
    _, bundle, _ = trained
    broken = tmp_path / damage
    shutil.copytree(bundle, broken)
    weights = broken / FAST_QUERY_DIR / WEIGHTS_FILE
    if damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:200])
    elif damage == "missing_array":
        _rewrite_weights(broken, lambda arrays: arrays.pop("mlp.1.b"))
    elif damage == "wrong_shape":
        _rewrite_weights(broken, lambda arrays: arrays.update({"mlp.0.w": arrays["mlp.0.w"][:-1]}))
    else:
        (broken / FAST_QUERY_DIR / "vocabularies.json").unlink()
    with pytest.raises(FastQueryError):
        load_retrievers(broken)


def test_a_changed_trunk_needs_no_change_to_the_fast_tower(trained, tmp_path: Path) -> None:
    """The NumPy trunk is generated from the Keras layers: a deeper trunk with other activations exports
    and serves as it is, without a line of the fast tower changed."""
    from models.keras2 import tf

    two_tower, _, _ = trained
    tower, original = two_tower.query_tower, two_tower.query_tower.mlp
    dim = two_tower.config.embedding_dim
    tower.mlp = [tf.keras.layers.Dense(24, activation="tanh"), tf.keras.layers.Dense(12, activation="swish"),
                 tf.keras.layers.Dense(dim, use_bias=False)]
    spec, cases = two_tower.user_spec, _cases(two_tower)
    columns = (*spec.numeric, *spec.categorical)
    try:
        keras = {name: two_tower.query_embeddings([u], [h], pd.DataFrame([{"user_id": u, **{c: p.get(c) for c in columns}}])
                                                  .astype({c: float for c in spec.numeric}))[0]
                 for name, (u, h, p) in cases.items()}  # also builds the new layers
        fast = FastQueryTower(export_fast_query(tower, two_tower.user_spec, two_tower.config.history_length,
                                                tmp_path / "fast"))
    finally:
        tower.mlp = original
    for name, (user_id, history, profile) in cases.items():
        numeric, categorical = spec.encode_one(profile)
        assert np.max(np.abs(fast.embed_one(user_id, history, numeric[0], categorical[0]) - keras[name])) <= MAX_DIFF, name


def test_a_fast_tower_exported_before_its_layer_list_still_loads(trained, tmp_path: Path) -> None:
    """Exports written before ``vocabularies.json`` listed the trunk named its two layers hidden/out."""
    two_tower, bundle, _ = trained
    old = tmp_path / "old"
    shutil.copytree(bundle / FAST_QUERY_DIR, old)
    renamed = {"mlp.0": LAYERS_BEFORE_SPECS[0]["key"], "mlp.1": LAYERS_BEFORE_SPECS[1]["key"]}
    _rewrite_weights_at(old / WEIGHTS_FILE, lambda arrays: arrays.update(
        {renamed[k.rsplit(".", 1)[0]] + "." + k.rsplit(".", 1)[1]: arrays.pop(k) for k in list(arrays) if k.startswith("mlp.")}))
    meta = json.loads((old / VOCABULARIES_FILE).read_text())
    del meta["layers"]
    (old / VOCABULARIES_FILE).write_text(json.dumps(meta))
    saved = SavedModelQueryTower(bundle / QUERY_TOWER_DIR, two_tower.config.history_length)
    assert check_parity(saved, FastQueryTower(old))["max_abs_diff"] <= MAX_DIFF


def test_parity_probes_cover_every_input_path(trained) -> None:
    two_tower, bundle, _ = trained
    fast = FastQueryTower(bundle / FAST_QUERY_DIR)
    probes = parity_probes(fast)
    users = {p[0] for p in probes}
    histories = [p[1] for p in probes]
    numerics = np.stack([p[2] for p in probes])
    tokens = {t for p in probes for t in p[3]}
    assert users & set(fast._users) and users - set(fast._users)  # known and unknown users
    assert [] in histories and any(len(h) > two_tower.config.history_length for h in histories)
    assert any("" in h for h in histories) and any(h and not set(h) <= set(fast._history_row) for h in histories)
    assert np.isnan(numerics).any() and np.isfinite(numerics).any()
    assert tokens & set(fast._profile) and tokens - set(fast._profile)


def test_the_user_table_is_memory_mapped_not_read(trained) -> None:
    """A serving process keeps the pages of the users it served, not the user base (and no dict of it)."""
    _, bundle, _ = trained
    fast = FastQueryTower(bundle / FAST_QUERY_DIR)
    assert isinstance(fast._user_table, np.memmap)
    users = list(fast._users)
    assert users == sorted(users) and len(users) + 1 == fast._user_table.shape[0]
    rows = {fast._users.get(u, 0) for u in users}
    assert rows == set(range(1, len(users) + 1)) and fast._users.get("__nobody__", 0) == 0
