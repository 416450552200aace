"""Ranker exports stay in agreement when a feature is constant or nearly so (issue 14).

A time feature that barely varies -- log1p of epoch seconds, ~1.7e9 +- 1000 -- used to get a
normalisation scale of ~1e-5: the float32 rounding differences between the SavedModel and the NumPy
export (one ulp of log1p) were multiplied by 1e5 and the release was refused ("ranker exports
disagree: max_abs_diff 0.02..."). The scale is now floored, and parity is judged relative to the
spread of the scores.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.ranking.config import RankerConfig
from models.ranking.synthetic import log_impressions, make_world

WINDOW = (date(2025, 3, 1), date(2025, 3, 7))


def _ranking_set(seed: int = 8) -> tuple[pd.DataFrame, list[str], list[str]]:
    world = make_world(120, n_numeric=4, n_categorical=2, seed=7)
    frame = log_impressions(world, 400, seed=seed)
    rng = np.random.default_rng(seed)
    frame["constant"] = 3.0
    frame["epoch_like"] = 1.7e9 + rng.uniform(-1000.0, 1000.0, len(frame))
    frame["event_timestamp"] = pd.Timestamp("2025-03-01", tz="UTC") + pd.to_timedelta(np.arange(len(frame)) * 60, "s")
    return frame, [*world.numeric, "constant", "epoch_like"], world.categorical


def _config(numeric: list[str], categorical: list[str]) -> RankerConfig:
    return RankerConfig(numeric=numeric, categorical=categorical, log1p=["num_3", "epoch_like"], deep_layers=(16, 8),
                        epochs=2, batch_size=256, learning_rate=0.01, structure="stacked")


def test_a_constant_and_a_near_constant_feature_leave_the_exports_in_agreement(tmp_path: Path) -> None:
    from common.registry import RANKER_DIR
    from models.release import train_ranker_into

    frame, numeric, categorical = _ranking_set()
    summary = train_ranker_into(tmp_path, frame, WINDOW, _config(numeric, categorical), verbose=False)
    from models.ranking.encoder import SCALE_FLOOR_ABSOLUTE, SCALE_FLOOR_RELATIVE
    parity = summary["parity"]
    assert parity["agree"] and parity["top10_identical"]
    assert parity["max_abs_diff"] <= 1e-4  # was 0.02: one float32 ulp of log1p now moves the input by <1e-4
    with np.load(tmp_path / RANKER_DIR / "fast" / "weights.npz") as npz:
        mean, scale = npz["mean"], npz["scale"]
    column = {name: i for i, name in enumerate(summary["features"]["numeric"])}
    # floored at 0.1% of the magnitude: log1p(1.7e9) = 21.25 -> 0.02125; 3.0 -> max(0.003, 0.01)
    assert scale[column["epoch_like"]] == pytest.approx(SCALE_FLOOR_RELATIVE * mean[column["epoch_like"]], rel=1e-3)
    assert scale[column["constant"]] == pytest.approx(SCALE_FLOOR_ABSOLUTE, rel=1e-3)
    assert scale[column["num_0"]] == pytest.approx(frame["num_0"].std(), rel=0.2)  # a real feature keeps its std


def test_fit_preprocessing_floors_the_scale_of_constant_features() -> None:
    from models.keras2 import tf
    from models.ranking.encoder import fit_preprocessing, floored_variance

    values = {"zero": np.zeros(64, np.float32), "big": np.full(64, 5000.0, np.float32),
              "normal": np.random.default_rng(0).normal(0.0, 2.0, 64).astype(np.float32),
              "colour": np.array(["red"] * 64, dtype=object)}
    config = RankerConfig(numeric=["zero", "big", "normal"], categorical=["colour"], log1p=[])
    stats = fit_preprocessing(tf.data.Dataset.from_tensor_slices(values).batch(16), config)
    np.testing.assert_allclose(np.sqrt(stats.variance[:2]), [0.01, 5.0], rtol=1e-5)
    assert np.sqrt(stats.variance[2]) == pytest.approx(values["normal"].std(), rel=1e-3)
    np.testing.assert_allclose(floored_variance(np.array([0.0, -200.0, 1.0]), np.array([0.0, 0.0, 4.0])),
                               [1e-4, 0.04, 4.0], rtol=1e-6)


def test_an_export_with_old_unfloored_statistics_still_loads_and_scores(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Releases trained before the floor carry their tiny scales; they load and score as before."""
    from dataclasses import replace

    from models.ranking import train as train_module
    from models.ranking.data import feature_arrays
    from models.ranking.export import export_ranker, load_scorer

    frame, numeric, categorical = _ranking_set()
    config = replace(_config(numeric, categorical), epochs=1)
    real_fit = train_module.fit_preprocessing

    def unfloored(ds, cfg):  # the statistics as fitted before the floor: variance ~1e-10 for the constant
        stats = real_fit(ds, cfg)
        return replace(stats, variance=np.where(np.arange(len(stats.variance)) == cfg.numeric.index("constant"),
                                                np.float32(1e-12), stats.variance).astype(np.float32))

    monkeypatch.setattr(train_module, "fit_preprocessing", unfloored)
    trained = train_module.train_ranker(frame.iloc[:3000], frame.iloc[3000:], config, verbose=False)
    export_ranker(trained, tmp_path / "ranker")
    features = feature_arrays(frame.head(100), trained.config)
    with np.load(tmp_path / "ranker" / "fast" / "weights.npz") as npz:
        assert npz["scale"][numeric.index("constant")] < 1e-5
    for kind in ("saved_model", "fast"):
        scores = load_scorer(tmp_path / "ranker", kind).score(features)
        assert scores.shape == (100,) and np.isfinite(scores).all()


def test_parity_is_judged_relative_to_the_spread_of_the_scores() -> None:
    from models.ranking.scoring import (
        PARITY_ABSOLUTE_TOLERANCE,
        PARITY_TOLERANCE,
        compare_scores,
        parity_tolerance,
    )

    reference = np.linspace(0.2, 0.6, 50)  # spread 0.4 -> tolerance 0.4 * PARITY_TOLERANCE
    assert parity_tolerance(reference) == pytest.approx(0.4 * PARITY_TOLERANCE)
    assert parity_tolerance(np.full(5, 0.3)) == PARITY_ABSOLUTE_TOLERANCE  # no spread: the absolute floor
    close = compare_scores(reference, reference + 0.3 * PARITY_TOLERANCE)
    assert close["agree"] and close["top10_identical"] and close["tolerance"] == pytest.approx(0.4 * PARITY_TOLERANCE)
    far = compare_scores(reference, reference + 0.5 * PARITY_TOLERANCE)
    assert far["top10_identical"] and not far["agree"]  # same order, but off by more than the tolerance
    # the same absolute difference on scores spread 100x wider is within tolerance
    assert compare_scores(100 * reference, 100 * reference + 0.5 * PARITY_TOLERANCE)["agree"]
    # near-ties (within the tolerance) may swap; a real reordering may not
    swapped = reference.copy()
    swapped[[-1, -2]] = swapped[[-2, -1]]
    assert not compare_scores(reference, swapped)["top10_identical"]
    tied = np.array([0.5, 0.5 - 1e-5, 0.1])
    assert compare_scores(tied, tied[[1, 0, 2]], k=2)["top2_identical"]
