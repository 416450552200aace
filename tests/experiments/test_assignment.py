"""Deterministic hash assignment: stable, balanced, independent across salts, fast; config validation."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from pydantic import ValidationError
from scipy.stats import chisquare

from common.paths import REPO_ROOT
from experiments.assignment import (
    Experiment,
    ExperimentSpec,
    bucket,
    experiment_for,
    load_experiments,
    parse_experiments,
)

SALT = "test-salt-0001"
N_USERS = 100_000


def spec(shares: dict[str, float], salt: str = SALT, control: str | None = None) -> ExperimentSpec:
    return ExperimentSpec.model_validate({
        "name": "t", "salt": salt, "control": control or next(iter(shares)),
        "arms": [{"name": n, "share": s, "variant": "full_pipeline"} for n, s in shares.items()],
    })


def user_ids(n: int = N_USERS) -> list[str]:
    return [f"r_u{i:06d}" for i in range(n)]


def test_bucket_is_a_fixed_function_of_user_and_salt() -> None:
    # golden values: a change of the hash (or of its input encoding) would silently re-shuffle live users
    assert bucket("r_u1", SALT) == 4180391359121204132
    assert bucket("r_u2", SALT) == 3690877557561741314
    assert bucket("b_u42", SALT) == 2655867048821132234
    assert bucket("r_u1", "another-salt") != bucket("r_u1", SALT)


def test_assignment_follows_the_cumulative_share_intervals() -> None:
    experiment = Experiment.build("retail", spec({"a": 0.2, "b": 0.3, "c": 0.5}))
    # r_u1 sits at 4180391359121204132 / 2**64 = 0.2266..., inside b's interval [0.2, 0.5)
    assert experiment.assign("r_u1") == "b"
    assert [experiment.assign(f"r_u{i}") for i in range(12)] == list("bbbccbbbcaac")
    for user in user_ids(2000):
        u = bucket(user, SALT) / 2**64
        assert experiment.assign(user) == ("a" if u < 0.2 else "b" if u < 0.5 else "c")


def test_assignment_is_stable_across_processes() -> None:
    """Another interpreter (different PYTHONHASHSEED) assigns every user the same arm."""
    experiment = Experiment.build("retail", spec({"control": 0.5, "treatment": 0.5}))
    users = user_ids(500)
    code = (
        "import sys; from experiments.assignment import Experiment, ExperimentSpec; "
        f"e = Experiment.build('retail', ExperimentSpec.model_validate({spec({'control': 0.5, 'treatment': 0.5}).model_dump()!r})); "
        f"print(''.join(e.assign(f'r_u{{i:06d}}')[0] for i in range({len(users)})))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True, cwd=REPO_ROOT)
    assert out.stdout.strip() == "".join(experiment.assign(u)[0] for u in users)


@pytest.mark.parametrize("shares", [{"control": 0.5, "treatment": 0.5}, {"a": 0.2, "b": 0.3, "c": 0.5}])
def test_assignment_is_balanced_on_100k_users(shares: dict[str, float]) -> None:
    experiment = Experiment.build("retail", spec(shares))
    arms = [experiment.assign(u) for u in user_ids()]
    observed = np.array([arms.count(a) for a in shares])
    expected = np.array(list(shares.values())) * N_USERS
    assert chisquare(observed, expected).pvalue > 0.001
    assert np.all(np.abs(observed / N_USERS - np.array(list(shares.values()))) < 0.006)


def test_salts_randomise_independently() -> None:
    first = Experiment.build("retail", spec({"control": 0.5, "treatment": 0.5}, salt="salt-number-one"))
    second = Experiment.build("retail", spec({"control": 0.5, "treatment": 0.5}, salt="salt-number-two"))
    users = user_ids(20_000)
    agree = np.mean([first.assign(u) == second.assign(u) for u in users])
    assert abs(agree - 0.5) < 0.02  # independent 50/50 assignments agree half of the time


def test_assignment_takes_under_10_microseconds() -> None:
    experiment = experiment_for("retail")
    assert experiment is not None
    users = user_ids(20_000)
    started = time.perf_counter()
    for user in users:
        experiment.assign(user)
    assert (time.perf_counter() - started) / len(users) < 10e-6


def test_shipped_config_has_an_experiment_per_served_domain() -> None:
    experiments = load_experiments(REPO_ROOT / "config" / "experiments.yaml")
    assert set(experiments) == {"retail", "banking"}
    for experiment in experiments.values():
        assert experiment.control == "control" and experiment.treatments == ["treatment"]
        assert experiment.arms["control"].variant == "legacy_segment"
        assert experiment.arms["treatment"].variant == "full_pipeline"
        assert sum(experiment.shares.values()) == pytest.approx(1.0)
    assert experiments["retail"].spec.salt != experiments["banking"].spec.salt


@pytest.mark.parametrize(
    ("arms", "control", "message"),
    [
        ([("a", 0.5), ("b", 0.4)], "a", "sum to 1"),
        ([("a", 0.5), ("a", 0.5)], "a", "distinct"),
        ([("a", 0.5), ("b", 0.5)], "z", "control arm"),
        ([("a", 1.0)], "a", "at least 2"),
    ],
)
def test_invalid_experiments_are_refused(arms: list[tuple[str, float]], control: str, message: str) -> None:
    raw = {"name": "t", "salt": SALT, "control": control,
           "arms": [{"name": n, "share": s, "variant": "v"} for n, s in arms]}
    with pytest.raises(ValidationError, match=message):
        ExperimentSpec.model_validate(raw)


def test_unknown_domain_is_refused(tmp_path: Path) -> None:
    raw = {"experiments": {"groceries": spec({"a": 0.5, "b": 0.5}).model_dump()}}
    with pytest.raises(KeyError, match="groceries"):
        parse_experiments(raw)
    path = tmp_path / "experiments.yaml"
    path.write_text(yaml.safe_dump({"experiments": {"banking": spec({"a": 0.5, "b": 0.5}).model_dump()}}))
    assert list(load_experiments(path)) == ["banking"]
    assert experiment_for("retail", path) is None
