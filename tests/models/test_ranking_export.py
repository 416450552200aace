"""Ranker exports: SavedModel and fast NumPy parity, no position input, broken exports refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from models.keras2 import tf
from models.ranking.config import POSITION, RankerConfig
from models.ranking.data import feature_arrays
from models.ranking.export import SIGNATURE, export_ranker, load_scorer
from models.ranking.fast_export import WEIGHTS_FILE
from models.ranking.scoring import META_FILE, PARITY_TOLERANCE, ExportError, compare_scores, write_meta
from models.ranking.synthetic import log_impressions, make_world

VARIANTS = {
    "stacked-full-rank": {"structure": "stacked"},
    "parallel-low-rank-conversion": {"structure": "parallel", "projection_dim": 4, "conversion_head": True,
                                     "rank_by": "conversion"},
}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def exported(request, tmp_path_factory):
    """(trained ranker, export dir, 120 fixed candidates with unknown tokens and missing values)."""
    from models.ranking.train import train_ranker

    world = make_world(120, n_numeric=6, n_categorical=3, seed=7)
    train, valid = log_impressions(world, 300, seed=8), log_impressions(world, 80, seed=9)
    config = RankerConfig(numeric=world.numeric, categorical=world.categorical, log1p=["num_3"],
                          deep_layers=(16, 8), epochs=2, batch_size=256, learning_rate=0.01,
                          **VARIANTS[request.param])
    trained = train_ranker(train, valid, config, verbose=False)
    out = tmp_path_factory.mktemp(request.param) / "ranker"
    export_ranker(trained, out)
    candidates = world.items.copy()
    candidates.loc[:4, "cat_1"] = "never-seen-token"
    candidates.loc[5:9, "num_0"] = np.nan
    return trained, out, candidates


def test_saved_model_signature_has_no_position_input(exported):
    trained, out, _ = exported
    loaded = tf.saved_model.load(str(out / "saved_model"))
    inputs = loaded.signatures[SIGNATURE].structured_input_signature[1]
    assert set(inputs) == set(trained.config.features)
    assert POSITION not in inputs
    assert {inputs[n].dtype for n in trained.config.numeric} == {tf.float32}
    assert {inputs[n].dtype for n in trained.config.categorical} == {tf.string}
    # training had the position tower on top of the serving tower; the export holds the serving tower only
    scorer_vars, position_vars = trained.model.scorer.variables, trained.model.position_tower.variables
    assert [tuple(v.shape) for v in position_vars] == [(trained.config.max_position + 1, 1)]
    assert {id(v) for v in trained.model.trainable_variables} == {id(v) for v in [*scorer_vars, *position_vars]}
    assert sorted(tuple(v.shape) for v in loaded.scorer.variables) == sorted(tuple(v.shape) for v in scorer_vars)
    with np.load(out / "fast" / WEIGHTS_FILE) as npz:
        assert not [k for k in npz.files if "position" in k]


def test_saved_model_and_fast_export_agree_with_the_trained_model(exported):
    trained, out, candidates = exported
    features = feature_arrays(candidates, trained.config)
    reference = trained.predict(candidates)
    saved, fast = load_scorer(out, "saved_model"), load_scorer(out, "fast")
    for scorer in (saved, fast):
        outputs = scorer.predict(features)
        assert set(outputs) == set(reference)
        for key, values in outputs.items():
            assert values.dtype == np.float32 and values.shape == (len(candidates),)
            np.testing.assert_allclose(values, reference[key], atol=1e-5)
    parity = compare_scores(saved.score(features), fast.score(features))
    assert parity["agree"] and parity["max_abs_diff"] <= 1e-5
    assert len(np.unique(np.round(reference["score"], 4))) > 50  # a real ranking, not a constant


def test_compare_scores_on_a_hand_computed_case():
    parity = compare_scores(np.array([0.1, 0.9, 0.5]), np.array([0.1, 0.5, 0.9]), k=2)
    assert parity == {"max_abs_diff": pytest.approx(0.4), "spread": pytest.approx(0.8),
                      "tolerance": pytest.approx(0.8 * PARITY_TOLERANCE), "top2_identical": False, "agree": False}
    assert compare_scores(np.array([0.3, 0.2]), np.array([0.31, 0.2]), k=2)["top2_identical"] is True
    # exact ties in the reference, ~1e-7 apart in the candidate: an arbitrary order, not a disagreement
    tied = compare_scores(np.array([0.5, 0.5, 0.1]), np.array([0.5, 0.5000001, 0.1]), k=2)
    assert tied["top2_identical"] is True
    assert compare_scores(np.array([0.5, 0.49, 0.1]), np.array([0.49, 0.5, 0.1]), k=1)["top1_identical"] is False


def test_scorers_check_their_inputs(exported):
    trained, out, candidates = exported
    features = feature_arrays(candidates.head(3), trained.config)
    for kind in ("saved_model", "fast"):
        scorer = load_scorer(out, kind)
        empty = scorer.score({n: v[:0] for n, v in features.items()})
        assert empty.shape == (0,)
        np.testing.assert_allclose(scorer.score({**features, "unused": np.zeros(3)}), scorer.score(features))
        with pytest.raises(KeyError, match="num_1"):
            scorer.score({n: v for n, v in features.items() if n != "num_1"})
        with pytest.raises(ValueError, match="differ in length"):
            scorer.score({**features, "num_1": features["num_1"][:2]})


def _broken_copy(out: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    return copy


def _rewrite_meta(export: Path, fmt: str, config: RankerConfig) -> None:
    """Re-sign the export, as a buggy exporter would: only the deeper checks can catch it."""
    (export / META_FILE).unlink()
    write_meta(export, fmt, config)


def test_damaged_files_are_refused(exported, tmp_path):
    _, out, _ = exported
    copy = _broken_copy(out, tmp_path)
    weights = copy / "fast" / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(ExportError, match="changed since export"):
        load_scorer(copy, "fast")
    variables = next((copy / "saved_model" / "variables").glob("variables.data-*"))
    data = bytearray(variables.read_bytes())
    data[len(data) // 2] ^= 0xFF
    variables.write_bytes(bytes(data))
    with pytest.raises(ExportError, match="changed since export"):
        load_scorer(copy, "saved_model")


def test_missing_or_garbled_metadata_is_refused(exported, tmp_path):
    _, out, _ = exported
    copy = _broken_copy(out, tmp_path)
    (copy / "fast" / META_FILE).unlink()
    with pytest.raises(ExportError, match="missing"):
        load_scorer(copy, "fast")
    (copy / "saved_model" / META_FILE).write_text("{not json")
    with pytest.raises(ExportError, match="corrupt"):
        load_scorer(copy, "saved_model")
    shutil.copy(out / "saved_model" / META_FILE, copy / "fast" / META_FILE)  # another format's metadata
    with pytest.raises(ExportError, match="holds format 'saved_model'"):
        load_scorer(copy, "fast")


def test_inconsistent_exports_are_refused_even_with_valid_checksums(exported, tmp_path):
    trained, out, _ = exported
    copy = _broken_copy(out, tmp_path)
    fast = copy / "fast"
    with np.load(fast / WEIGHTS_FILE) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["emb.cat_0"] = arrays["emb.cat_0"][:-1]  # one row short of its vocabulary
    np.savez(fast / WEIGHTS_FILE, **arrays)
    _rewrite_meta(fast, "numpy", trained.config)
    with pytest.raises(ExportError, match="inconsistent"):
        load_scorer(copy, "fast")
    arrays["emb.cat_0"] = np.zeros((arrays["emb.cat_0"].shape[0] + 1, 3), np.float32)  # wrong width
    np.savez(fast / WEIGHTS_FILE, **arrays)
    _rewrite_meta(fast, "numpy", trained.config)
    with pytest.raises(ExportError, match="inconsistent"):
        load_scorer(copy, "fast")
    saved = copy / "saved_model"
    (saved / "saved_model.pb").write_bytes(b"\x08\x01garbage")
    _rewrite_meta(saved, "saved_model", trained.config)
    with pytest.raises(ExportError, match="cannot be loaded"):
        load_scorer(copy, "saved_model")


def test_an_export_without_its_layer_list_scores_the_same(exported, tmp_path):
    """Fast exports written before ``ranker.json`` listed the layers load with the layers they had."""
    trained, out, candidates = exported
    copy = _broken_copy(out, tmp_path)
    _rewrite_meta(copy / "fast", "numpy", trained.config)  # no "layers" key
    features = feature_arrays(candidates, trained.config)
    np.testing.assert_array_equal(load_scorer(copy, "fast").score(features), load_scorer(out, "fast").score(features))


def test_a_changed_deep_stack_needs_no_change_to_the_fast_export(exported, tmp_path):
    """The NumPy layers are generated from the Keras ones: other activations export and score as they are."""
    from models.ranking.fast_export import export_numpy

    trained, _, candidates = exported
    scorer, original = trained.model.scorer, trained.model.scorer.deep
    widths = trained.config.deep_layers  # the heads keep their input width
    scorer.deep = [tf.keras.layers.Dense(widths[0], activation="tanh"), tf.keras.layers.Dense(widths[1], activation="swish")]
    try:
        reference = trained.predict(candidates)  # builds the new layers
        fast = load_scorer(export_numpy(trained, tmp_path / "fast").parent, "fast")
    finally:
        scorer.deep = original
    np.testing.assert_allclose(fast.predict(feature_arrays(candidates, trained.config))["score"], reference["score"],
                               atol=1e-5)
